"""`rag serve` (the API over HTTP for programs, agents and chat UIs) and `rag mcp` (MCP over stdio)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .app import app
from .common import ConfigOpt, StoreOpt, WorkersOpt, settings_from
from .output import get_env

IndexesOpt = Annotated[
    list[str] | None,
    typer.Option("--index", "-i", help="Index to serve; repeat for several (the first is the default)."),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Serve every index in RAG_HOME.")]


def _names(settings: object, index: list[str] | None, all_: bool) -> list[str]:
    from ..errors import IndexNotFound
    from ..store.layout import list_indexes

    home = settings.home  # type: ignore[attr-defined]
    if all_:
        names = list_indexes(home)
        if not names:
            raise IndexNotFound(f"no indexes in {home}", hint="create one with `rag index PATH`")
        return sorted(names, key=lambda n: (n != settings.index, n))  # type: ignore[attr-defined]
    return list(dict.fromkeys(index or [settings.index]))  # type: ignore[attr-defined]


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option("--host", help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=0, max=65535, help="Port (default 8008; 0 picks one).")
    ] = None,
    index: IndexesOpt = None,
    all_: AllOpt = False,
    token: Annotated[
        str | None, typer.Option("--token", help="Require this bearer token (env RAG_SERVE_TOKEN).")
    ] = None,
    workers: WorkersOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the web page in a browser once serving.")] = False,
    access_log: Annotated[
        bool | None,
        typer.Option("--access-log/--no-access-log", help="One logfmt line a request on stderr ([serve] access_log)."),
    ] = None,
) -> None:
    """Serve a web page (/), /search, /ask, /v1 (OpenAI-compatible), /mcp, /healthz and /metrics over HTTP."""
    from .. import runtime
    from ..server import serve

    env = get_env()
    first = index[0] if index else None
    settings = settings_from(
        config,
        store_url=store,
        index=first,
        serve_host=host,
        serve_port=port,
        serve_token=token,
        workers=workers,
        serve_access_log=access_log,
    )
    if settings.serve_host not in ("127.0.0.1", "localhost", "::1") and not settings.serve_token:
        env.warn(f"serving on {settings.serve_host} without a token: anyone who can reach it can search the index")
    names = _names(settings, index, all_)
    ready = _opener(settings.serve_host) if open_page else None
    runtime.run(serve(settings, names, log=env.err, ready=ready), workers=settings.effective_workers())


def _opener(host: str) -> Any:
    """Opens the page once the server listens (in a thread: a browser may take its time to start)."""
    import threading
    import webbrowser

    def opened(port: int) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        shown = f"[{shown}]" if ":" in shown else shown
        threading.Thread(target=webbrowser.open, args=(f"http://{shown}:{port}/",), daemon=True).start()

    return opened


@app.command("mcp")
def mcp_cmd(
    index: IndexesOpt = None,
    all_: AllOpt = False,
    workers: WorkersOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Speak the Model Context Protocol over stdio (tools: search, ask, get, indexes), for agents."""
    from .. import runtime
    from ..server import serve_mcp_stdio

    first = index[0] if index else None
    settings = settings_from(config, store_url=store, index=first, workers=workers)
    runtime.run(serve_mcp_stdio(settings, _names(settings, index, all_)), workers=settings.effective_workers())
