"""Running ``rag serve`` and ``rag mcp``: load every served index once, serve until SIGTERM/SIGINT, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import replace
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from .. import logs, runtime
from ..config import Settings
from ..errors import UsageError
from ..retrieve.service import Retrieval
from .app import Hub, create_app
from .gate import Gate

SWITCH_INTERVAL = 0.001  # seconds; Python's default is 0.005


@contextlib.asynccontextmanager
async def open_hub(settings: Settings, names: list[str] | None = None) -> Any:
    """A Hub over ``names`` (default: ``settings.index``), each index's models and data loaded and warm."""
    names = list(dict.fromkeys(names or [settings.index]))
    stopping = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        indexes: dict[str, tuple[Settings, Retrieval]] = {}
        for name in names:
            s = replace(settings, index=name)
            r = await stack.enter_async_context(Retrieval(s, concurrent_queries=runtime.cpu_count(), long_lived=True))
            await r.prepare()
            await r.warm()
            indexes[name] = (s, r)
        gate = Gate(settings.serve_ask_concurrency, settings.serve_ask_queue, stopping)
        yield Hub(indexes, indexes[names[0]][0], gate, stopping=stopping)


async def serve(settings: Settings, names: list[str] | None = None, *, ready: Any = None, log: Any = None) -> None:
    """Load everything, serve until SIGTERM/SIGINT, then shut down gracefully."""
    # the loop thread takes the GIL back from pool threads running Python code after 1 ms instead
    # of the default 5 ms: the loop's wake-up lag under load (bench/loop_lag.py)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    server_log = logging.getLogger("aiohttp.server")
    server_log.propagate = False
    handler = _OneLine(log or (lambda line: print(line, file=sys.stderr)))
    server_log.addHandler(handler)
    try:
        async with open_hub(settings, names) as hub:
            await _serve_app(hub, ready=ready, log=log)
    finally:
        server_log.removeHandler(handler)
        sys.setswitchinterval(switch)


async def serve_mcp_stdio(settings: Settings, names: list[str] | None = None) -> None:
    from .mcp_tools import run_stdio

    async with open_hub(settings, names) as hub:
        await run_stdio(hub)


class _OneLine(logging.Handler):
    """aiohttp's server log (a client's malformed body, a handler's exception) as one line a record
    on ``log``: the log of a service is read by people and by log shippers, not by a debugger."""

    def __init__(self, log: Any) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        cause = f": {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}" if exc else ""
        try:
            self.log(f"rag serve: {record.getMessage()}{cause}"[:500])
        except Exception:  # pragma: no cover - logging must never raise
            pass


class AccessLog(AbstractAccessLogger):
    """``rag serve --access-log``: one logfmt record a request on the ``rag.serve.access`` logger (method, path
    without its query string, which may hold a user's question, status, milliseconds, bytes, client address)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        fields = {
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "ms": round(time * 1000, 1),
            "bytes": response.body_length,
            "remote": request.remote or "-",
        }
        self.logger.info("", extra={"fields": fields})


async def _serve_app(hub: Hub, *, ready: Any, log: Any) -> None:
    settings = hub.settings
    app = create_app(hub)
    # in-flight requests get serve_shutdown_timeout seconds to finish; a connection that is open
    # but has sent nothing would otherwise hold the shutdown for aiohttp's default 60 s
    access: dict[str, Any] = {"access_log": None}
    if settings.serve_access_log:
        log_access = logs.get("serve.access")
        log_access.setLevel(logging.INFO)  # asked for: shown whatever RAG_LOG_LEVEL says
        access = {"access_log": log_access, "access_log_class": AccessLog}
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=settings.serve_shutdown_timeout, **access)
    await runner.setup()
    site = web.TCPSite(runner, settings.serve_host, settings.serve_port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:  # port in use, an address this machine does not have, a port out of range
        await runner.cleanup()
        raise UsageError(
            f"cannot listen on {settings.serve_host}:{settings.serve_port}: {exc.strerror or exc}",
            hint="choose another --port (0 picks a free one) or --host",
        ) from None
    except OverflowError:
        await runner.cleanup()
        raise UsageError(f"port {settings.serve_port} is out of range (0-65535)") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread
            pass
    port = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else settings.serve_port  # type: ignore[attr-defined]
    names = ", ".join(repr(n) for n in hub.indexes)
    if log:
        log(f"rag serve: listening on http://{settings.serve_host}:{port} (index {names})")
    if ready is not None:
        ready(port)
    from ..retrieve.client import register_server

    host = "127.0.0.1" if settings.serve_host in ("0.0.0.0", "::", "") else settings.serve_host
    regs = [
        await runtime.run_blocking(register_server, s, f"http://{host}:{port}", settings.serve_token)
        for s, _ in hub.indexes.values()
    ]
    try:
        await stop.wait()
    finally:
        if log:
            log("rag serve: shutting down")
        for reg in regs:
            reg.unlink(missing_ok=True)
        hub.stopping.set()  # answers in progress end their streams cleanly; queued ones get 503
        await hub.gate.wake_all()
        await runner.cleanup()
