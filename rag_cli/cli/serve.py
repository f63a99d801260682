"""`rag serve`: the retrieval API over HTTP for other processes and other machines."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app
from .common import ConfigOpt, IndexOpt, WorkersOpt, settings_from
from .output import get_env


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option("--host", help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=0, max=65535, help="Port (default 8008; 0 picks one).")
    ] = None,
    index: IndexOpt = None,
    token: Annotated[
        str | None, typer.Option("--token", help="Require this bearer token (env RAG_SERVE_TOKEN).")
    ] = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve /search, /healthz and /metrics over HTTP."""
    from .. import runtime
    from ..server import serve

    env = get_env()
    settings = settings_from(config, index=index, serve_host=host, serve_port=port, serve_token=token, workers=workers)
    if settings.serve_host not in ("127.0.0.1", "localhost", "::1") and not settings.serve_token:
        env.warn(f"serving on {settings.serve_host} without a token: anyone who can reach it can search the index")
    runtime.run(serve(settings, log=env.err), workers=settings.effective_workers())
