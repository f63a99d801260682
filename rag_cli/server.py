"""``rag serve``: the retrieval pipeline over HTTP (aiohttp).

Routes::

    GET  /search?q=...&k=10&mode=hybrid     same JSON as `rag search --json`
    POST /search  {"query": ..., "k": ..., "mode": ..., "timeout": ..., "candidates": ...}
    GET  /healthz                           liveness and index summary (no auth)
    GET  /metrics                           Prometheus text format

With a token (``--token`` or ``RAG_SERVE_TOKEN``) every route but ``/healthz``
needs ``Authorization: Bearer TOKEN`` (compared in constant time), else 401.
Bodies over ``serve_max_body_kb`` get 413; over-long queries and out-of-range
k get 400; more than ``serve_max_inflight`` concurrent searches get 503 at
once instead of queueing without bound. Models and the index load once at
start; SIGTERM and SIGINT shut down gracefully. No CORS headers are sent unless
``serve_cors_origins`` lists the browser origins allowed to call it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
import sys
import time
from typing import Any

from aiohttp import web

from . import runtime
from .config import Settings
from .errors import AllSourcesFailed, RagError, UsageError
from .retrieve.fanout import MODES
from .retrieve.service import Retrieval


class Metrics:
    """Prometheus metrics of one server (own registry, so tests can run several)."""

    def __init__(self, retrieval: Retrieval) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.retrieval = retrieval
        buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        self.requests = Counter(
            "rag_http_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "rag_http_request_seconds", "HTTP latency", ["route"], buckets=buckets, registry=self.registry
        )
        self.source_latency = Histogram("rag_source_seconds", "Retrieval source latency", ["source"], buckets=buckets,
                                        registry=self.registry)  # fmt: skip
        self.source_failures = Counter("rag_source_failures", "Failed source calls", ["source"], registry=self.registry)
        self.breaker = Gauge(
            "rag_source_breaker_state", "0 closed, 1 half-open, 2 open", ["source"], registry=self.registry
        )
        self.loop_lag = Gauge("rag_event_loop_lag_seconds", "Event-loop lag", ["stat"], registry=self.registry)
        self.pool = Gauge("rag_pool_jobs", "Thread-pool jobs", ["state"], registry=self.registry)
        self.pool_workers = Gauge("rag_pool_workers", "Thread-pool size", registry=self.registry)
        self.inflight = Gauge("rag_inflight_searches", "Searches in progress", registry=self.registry)
        self.bm25_memory = Gauge("rag_bm25_memory_bytes", "BM25 postings held in memory (0: FTS5 answers)",
                                 registry=self.registry)  # fmt: skip

    def observe_source(self, name: str, ms: float, reason: str | None) -> None:
        if ms:
            self.source_latency.labels(name).observe(ms / 1000)
        if reason is not None:
            self.source_failures.labels(name).inc()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        lag = runtime.loop_lag
        self.loop_lag.labels("max").set(lag.max_ms / 1000)
        self.loop_lag.labels("p99").set(lag.percentile(99) / 1000)
        self.loop_lag.labels("p50").set(lag.percentile(50) / 1000)
        pool = runtime.pool()
        self.pool.labels("active").set(pool.active)
        self.pool.labels("queued").set(pool.queued)
        self.pool_workers.set(pool.workers)
        if self.retrieval.reader is not None:
            self.bm25_memory.set(self.retrieval.reader.bm25_memory_bytes())
        if self.retrieval.fanout is not None:
            codes = {"closed": 0, "half-open": 1, "open": 2}
            for name, b in self.retrieval.fanout.breakers.items():
                self.breaker.labels(name).set(codes[b.state])
        return generate_latest(self.registry)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, default=str), status=status, content_type="application/json"
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def create_app(settings: Settings, retrieval: Retrieval) -> web.Application:
    metrics = Metrics(retrieval)
    if retrieval.fanout is not None:
        retrieval.fanout.observer = metrics.observe_source
    token = settings.serve_token.encode()
    limit = asyncio.Semaphore(settings.serve_max_inflight)
    state = {"inflight": 0}

    cors = set(settings.serve_cors_origins)

    def allow_origin(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if origin and (origin in cors or "*" in cors):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
        return resp

    @web.middleware
    async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        t0 = time.perf_counter()
        status = 500
        try:
            if request.method == "OPTIONS" and cors:  # CORS preflight, only when origins are configured
                status = 204
                resp = allow_origin(request, web.Response(status=204))
                resp.headers["Access-Control-Allow-Methods"] = "GET, POST"
                resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
                return resp
            if token and request.path != "/healthz":
                auth = request.headers.get("Authorization", "")
                # aiohttp keeps undecodable header bytes as surrogates: compare the bytes as sent
                given = auth[7:].encode("utf-8", "surrogateescape") if auth.startswith("Bearer ") else b""
                if not hmac.compare_digest(given, token):
                    resp = _error(401, "missing or wrong bearer token")
                    resp.headers["WWW-Authenticate"] = "Bearer"
                    status = 401
                    return resp
            resp = await handler(request)
            status = resp.status
            return allow_origin(request, resp) if cors else resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.requests.labels(route, request.method, str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - t0)

    async def search(request: web.Request) -> web.Response:
        try:
            if request.method == "POST":
                body = await read_json(request, settings.serve_max_body_kb)
                query, k, mode, timeout = body.get("query"), body.get("k"), body.get("mode"), body.get("timeout")
                candidates = body.get("candidates")
            else:
                q = request.query
                query, k, mode, timeout = q.get("q") or q.get("query"), q.get("k"), q.get("mode"), q.get("timeout")
                candidates = q.get("candidates")
            query, k, mode, timeout = _validate(settings, query, k, mode, timeout)
            cand = None if candidates is None else _count(settings, "candidates", candidates)
        except UsageError as exc:
            return _error(400, exc.message)
        except _HttpError as exc:
            return _error(exc.status, exc.message)
        if not retrieval_alive():
            return _error(503, f"index {settings.index!r} is gone (dropped or moved) while serving")
        if limit.locked():
            return _error(503, "server busy, try again")
        async with limit:
            state["inflight"] += 1
            metrics.inflight.set(state["inflight"])
            try:
                result = await retrieval.search(query, k=k, mode=mode, timeout=timeout, candidates=cand)
            except AllSourcesFailed as exc:
                return _json({"query": query, "mode": mode, "hits": [], "error": exc.message,
                              "degraded": [d.to_dict() for d in getattr(exc, "degraded", [])]}, 503)  # fmt: skip
            except RagError as exc:
                return _error(500, str(exc))
            finally:
                state["inflight"] -= 1
                metrics.inflight.set(state["inflight"])
        out = result.to_dict()
        out["timings"] = result.timings
        return _json(out)

    def retrieval_alive() -> bool:
        """False once the served index is dropped (its CURRENT file gone): one stat per request."""
        return retrieval.reader is None or (settings.index_dir / "CURRENT").is_file()

    async def healthz(request: web.Request) -> web.Response:
        info: dict[str, Any] = {"status": "ok", "index": settings.index, "auth": bool(token)}
        if not retrieval_alive():
            return _json({**info, "status": "index gone", "error": f"index {settings.index!r} was dropped"}, 503)
        if retrieval.reader is not None:
            info["generation"] = retrieval.reader.generation
            info["chunks"] = retrieval.reader.count
            info["bm25"] = "memory" if retrieval.reader.bm25_memory_bytes() else "fts5"
            if retrieval.reader.bm25_memory_error:  # the postings failed to load: FTS5 answers
                info["bm25_error"] = retrieval.reader.bm25_memory_error
        info["sources"] = [s.name for s in retrieval.fanout.sources] if retrieval.fanout else []
        return _json(info)

    async def metrics_route(request: web.Request) -> web.Response:
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    app = web.Application(middlewares=[observe], client_max_size=settings.serve_max_body_kb * 1024)
    app.router.add_get("/search", search)
    app.router.add_post("/search", search)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_route)
    app["metrics"] = metrics
    return app


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: web.Request, max_kb: int) -> dict[str, Any]:
    """The request's JSON object body, or an _HttpError (413 too large, 400 anything malformed: a bad
    charset, a body that is not what its Content-Encoding says, NaN/Infinity, numbers past float)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _HttpError(413, f"body over {max_kb} KiB") from None
    except web.HTTPException:
        raise
    except Exception as exc:  # aiohttp's decompression and payload errors: a malformed request
        raise _HttpError(400, f"unreadable body ({type(exc).__name__})") from None
    charset = request.charset or "utf-8"
    try:
        text = raw.decode(charset)
    except LookupError:
        raise _HttpError(400, f"unknown charset {charset[:40]!r}") from None
    except UnicodeDecodeError:
        raise _HttpError(400, f"body is not valid {charset[:40]}") from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _HttpError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _HttpError(400, "body must be a JSON object")
    return body


def _validate(settings: Settings, query: Any, k: Any, mode: Any, timeout: Any) -> tuple[str, int, str, float | None]:
    if not isinstance(query, str) or not query.strip():
        raise UsageError("query is required")
    if len(query) > settings.serve_max_query_chars:
        raise UsageError(f"query longer than {settings.serve_max_query_chars} characters")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("query is not valid Unicode (a lone surrogate)") from None
    k_val = _count(settings, "k", k if k is not None else settings.retrieve_k)
    mode_val = mode or settings.retrieve_mode
    if mode_val not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}")
    try:
        t = float(timeout) if timeout is not None and not isinstance(timeout, bool) else None
    except (TypeError, ValueError, OverflowError):
        raise UsageError("timeout must be a number") from None
    if t is not None and not 0 < t <= 60:
        raise UsageError("timeout must be between 0 and 60 seconds")
    return query, k_val, mode_val, t


def _count(settings: Settings, name: str, value: Any) -> int:
    """``k`` or ``candidates``: an integer from 1 to ``[serve] max_k``."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise UsageError(f"{name} must be an integer")
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{name} must be an integer") from None
    if not 1 <= n <= settings.serve_max_k:
        raise UsageError(f"{name} must be between 1 and {settings.serve_max_k}")
    return n


SWITCH_INTERVAL = 0.001  # seconds; Python's default is 0.005


async def serve(settings: Settings, *, ready: Any = None, log: Any = None) -> None:
    """Load everything, serve until SIGTERM/SIGINT, then shut down gracefully."""
    # the loop thread takes the GIL back from pool threads running Python code after 1 ms instead
    # of the default 5 ms: the loop's wake-up lag under load (bench/loop_lag.py)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        await _serve(settings, ready=ready, log=log)
    finally:
        sys.setswitchinterval(switch)


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


async def _serve(settings: Settings, *, ready: Any, log: Any) -> None:
    server_log = logging.getLogger("aiohttp.server")
    server_log.propagate = False
    handler = _OneLine(log or (lambda line: print(line, file=sys.stderr)))
    server_log.addHandler(handler)
    try:
        await _serve_app(settings, ready=ready, log=log)
    finally:
        server_log.removeHandler(handler)


async def _serve_app(settings: Settings, *, ready: Any, log: Any) -> None:
    async with Retrieval(settings, concurrent_queries=runtime.cpu_count(), long_lived=True) as retrieval:
        await retrieval.prepare()
        await retrieval.warm()
        app = create_app(settings, retrieval)
        # in-flight requests get serve_shutdown_timeout seconds to finish; a connection that is open
        # but has sent nothing would otherwise hold the shutdown for aiohttp's default 60 s
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=settings.serve_shutdown_timeout)  # fmt: skip
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
        port = (
            site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else settings.serve_port
        )  # type: ignore[union-attr]
        if log:
            log(f"rag serve: listening on http://{settings.serve_host}:{port} (index {settings.index!r})")
        if ready is not None:
            ready(port)
        from .retrieve.client import register_server

        host = "127.0.0.1" if settings.serve_host in ("0.0.0.0", "::", "") else settings.serve_host
        reg = await runtime.run_blocking(register_server, settings, f"http://{host}:{port}", settings.serve_token)
        try:
            await stop.wait()
        finally:
            if log:
                log("rag serve: shutting down")
            reg.unlink(missing_ok=True)
            await runner.cleanup()
