"""``rag serve``: the retrieval and answer pipeline over HTTP (aiohttp), for programs, agents and chat UIs.

Routes (``index`` picks one of the served indexes; the first one given is the default)::

    GET  /search?q=...&k=10&mode=hybrid&index=NAME   same JSON as `rag search --json`
    POST /search  {"query", "k", "mode", "timeout", "candidates", "index", "path", "type", "since", "feedback",
                   "documents", "vector", "vector_model", "expansion", "expansion_weight", "vectors",
                   "collection", "counts"}
    POST /ask     {"question", "k", "mode", "llm", "index", "history"}   `rag ask --json`, or with
                  `Accept: text/event-stream` the `rag ask --jsonl` events as server-sent events
    GET  /v1/models, POST /v1/chat/completions          OpenAI-compatible (server/openai_api.py)
    POST /mcp                                           Model Context Protocol, streamable HTTP
    POST /embed   {"texts", "index"}                    unit vectors of the index's query encoder (rag ask through
                  a warm server scores evidence and verifies sentences with them)
    GET  /healthz[?index=NAME]                          liveness and index summary (no auth)
    GET  /metrics                                       Prometheus text format, per-index labels
    GET  /                                              the web page (server/page.py; public, like /healthz)

With a token (``--token`` or ``RAG_SERVE_TOKEN``) every route but ``/healthz`` needs
``Authorization: Bearer TOKEN`` (compared in constant time), else 401. Bodies over
``serve_max_body_kb`` get 413; over-long queries and out-of-range k get 400; more than
``serve_max_inflight`` concurrent searches (and ``/embed`` requests) get 503 at once instead of queueing without bound;
answers wait for one of ``serve_ask_concurrency`` generation slots in a queue of at most
``serve_ask_queue``, past which they get 429 with ``Retry-After`` at once. No CORS headers are
sent unless ``serve_cors_origins`` lists the browser origins allowed to call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .. import runtime
from ..config import Settings
from ..errors import AllSourcesFailed, RagError, UsageError
from ..retrieve.service import Retrieval
from ..store.base import collection_json, word_counts
from ..types import Hit
from . import page
from .gate import Gate
from .http import (
    HttpError,
    check_mode,
    collection_field,
    count,
    error,
    expansion_field,
    filter_field,
    flag_field,
    host_name,
    json_response,
    read_json,
    text_field,
    trusted_host,
    trusted_origin,
    valid_unicode,
    validate,
    vector_field,
)
from .metrics import Metrics

EMBED_MAX = 512  # texts per /embed request
PUBLIC = frozenset({"/healthz", *page.PUBLIC})  # the routes a token does not guard: they hold no data


@dataclass
class Hub:
    """What one server serves: its indexes (name -> settings and retrieval), the first the default."""

    indexes: dict[str, tuple[Settings, Retrieval]]
    settings: Settings  # the server's own settings (those of the default index)
    gate: Gate
    metrics: Metrics = field(init=False)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.metrics = Metrics({name: r for name, (_, r) in self.indexes.items()})
        for name, (_, r) in self.indexes.items():
            if r.fanout is not None:
                r.fanout.observer = self.metrics.source_observer(name)

    @property
    def default(self) -> str:
        return next(iter(self.indexes))

    def pick(self, name: Any) -> tuple[str, Settings, Retrieval]:
        """The served index ``name`` (None: the default), or 404."""
        if name is None or name == "":
            name = self.default
        if not isinstance(name, str) or name not in self.indexes:
            raise HttpError(404, f"index {name!r} is not served here (served: {', '.join(self.indexes)})")
        settings, retrieval = self.indexes[name]
        if self.gone(name):
            raise HttpError(503, f"index {name!r} is gone (dropped or moved) while serving")
        return name, settings, retrieval

    def gone(self, name: str) -> bool:
        """True once the served index is dropped (its CURRENT file gone): one stat per request."""
        settings, retrieval = self.indexes[name]
        if settings.store_url:  # a database's index is there while its schema is (a dropped one fails reads)
            return False
        return retrieval.reader is not None and not (settings.index_dir / "CURRENT").is_file()

    def summary(self, name: str) -> dict[str, Any]:
        _, retrieval = self.indexes[name]
        info: dict[str, Any] = {"index": name}
        if self.gone(name):
            return {**info, "status": "index gone", "error": f"index {name!r} was dropped"}
        info["status"] = "ok"
        reader = retrieval.reader
        if reader is not None:
            info["generation"] = reader.generation
            info["chunks"] = reader.count
            info["bm25"] = reader.keyword or ("memory" if reader.bm25_memory_bytes() else "fts5")
            if reader.bm25_memory_error:  # the postings failed to load: FTS5 answers
                info["bm25_error"] = reader.bm25_memory_error
        info["sources"] = [s.name for s in retrieval.fanout.sources] if retrieval.fanout else []
        info["reader"] = self.indexes[name][0].reader_key()  # a client whose key matches sends its whole question
        return info


class Guard:
    """Who may call the server and how many searches run at once: Host and Origin checks, the bearer token,
    CORS for the configured origins, and the ``serve_max_inflight`` slots with their gauge."""

    def __init__(self, hub: Hub) -> None:
        self.hub, self.settings = hub, hub.settings
        self.token = hub.settings.serve_token.encode()
        self.limit = asyncio.Semaphore(hub.settings.serve_max_inflight)
        self.inflight = 0
        self.cors = set(hub.settings.serve_cors_origins)

    def allow_origin(self, request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if origin and (origin in self.cors or "*" in self.cors) and not resp.prepared:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
        return resp

    def preflight(self, request: web.Request) -> web.Response | None:
        """The answer to a CORS preflight, only when origins are configured."""
        if request.method != "OPTIONS" or not self.cors:
            return None
        resp = web.Response(status=204)
        self.allow_origin(request, resp)
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST"
        resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Accept"
        return resp

    def strange_caller(self, request: web.Request) -> web.Response | None:
        """421 for a Host that is not this server's (DNS rebinding), 403 for a browser page of another
        origin: on every route, before anything is read or answered."""
        host = request.headers.get("Host", "")
        if not trusted_host(host, self.settings.serve_host, self.settings.serve_allowed_hosts):
            return error(421, f"host {host_name(host)[:80]!r} is not this server's; add it to [serve] allowed_hosts")
        if not trusted_origin(request.headers.get("Origin", ""), host, self.cors):
            return error(403, "requests from that origin are not allowed; add it to [serve] cors_origins")
        return None

    def unauthorized(self, request: web.Request) -> web.Response | None:
        """401 without the server's bearer token (every route but the :data:`PUBLIC` ones, when it has one)."""
        if not self.token or request.path in PUBLIC:
            return None
        auth = request.headers.get("Authorization", "")
        # aiohttp keeps undecodable header bytes as surrogates: compare the bytes as sent
        given = auth[7:].encode("utf-8", "surrogateescape") if auth.startswith("Bearer ") else b""
        if hmac.compare_digest(given, self.token):
            return None
        resp = error(401, "missing or wrong bearer token")
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    def refused(self, route: str) -> web.Response | None:
        """503 at once when ``serve_max_inflight`` searches and embeddings are running (counted per route)."""
        if not self.limit.locked():
            return None
        self.hub.metrics.rejections.labels(route, "inflight").inc()
        return error(503, "server busy, try again")

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the ``serve_max_inflight`` slots, counted in the in-flight gauge while held."""
        async with self.limit:
            self.inflight += 1
            self.hub.metrics.inflight.set(self.inflight)
            try:
                yield
            finally:
                self.inflight -= 1
                self.hub.metrics.inflight.set(self.inflight)


# the application's state, typed (aiohttp warns on string keys)
HUB = web.AppKey("hub", Hub)
GUARD = web.AppKey("guard", Guard)


@web.middleware
async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every request: the guard's checks first, then the route; its count and latency in the metrics."""
    guard: Guard = request.app[GUARD]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    t0 = time.perf_counter()
    status = 500
    try:
        early = guard.preflight(request) or guard.strange_caller(request) or guard.unauthorized(request)
        if early is not None:
            status = early.status
            return early
        try:
            resp = await handler(request)
        except HttpError as exc:
            resp = exc.response()
        status = resp.status
        return guard.allow_origin(request, resp) if guard.cors else resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        index = str(request.get("index", ""))
        guard.hub.metrics.requests.labels(route, request.method, str(status), index).inc()
        guard.hub.metrics.latency.labels(route, index).observe(time.perf_counter() - t0)


def _search_request(hub: Hub, request: web.Request, body: dict[str, Any]) -> tuple[Retrieval, dict[str, Any]]:
    """The served index's retrieval and the search arguments of a /search request (UsageError if bad)."""
    name, s, retrieval = hub.pick(body.get("index"))
    request["index"] = name
    query, k, mode, timeout = validate(s, body.get("query"), body.get("k"), body.get("mode"), body.get("timeout"))
    candidates = body.get("candidates")
    cand = None if candidates is None else count(s, "candidates", candidates)
    args = {
        "query": query,
        "k": k,
        "mode": mode,
        "timeout": timeout,
        "candidates": cand,
        "filter": filter_field(body),
        "feedback": flag_field(body, "feedback"),
        "documents": flag_field(body, "documents"),
        "vector": vector_field(body),
        "expansion": expansion_field(body, s.retrieve_feedback_bm25),
        "collection": collection_field(body),
        "vectors": flag_field(body, "vectors"),
        "counts": flag_field(body, "counts"),
    }
    return retrieval, args


async def search_route(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    guard: Guard = request.app[GUARD]
    try:
        if request.method == "POST":
            body = await read_json(request, hub.settings.serve_max_body_kb)
        else:
            body = dict(request.query)
            body.setdefault("query", body.get("q"))
            if len(request.query.getall("path", [])) > 1:  # ?path=a&path=!b
                body["path"] = request.query.getall("path")
        retrieval, args = _search_request(hub, request, body)
    except UsageError as exc:
        return error(400, exc.message)
    if (busy := guard.refused("/search")) is not None:
        return busy
    async with guard.slot():
        query, vectors, counts = args.pop("query"), args.pop("vectors"), args.pop("counts")
        try:
            result = await retrieval.search(query, **args)
        except AllSourcesFailed as exc:
            return json_response(
                {
                    "query": query,
                    "mode": args["mode"],
                    "hits": [],
                    "error": exc.message,
                    "degraded": [d.to_dict() for d in exc.degraded],
                },
                503,
            )
        except RagError as exc:
            return error(500, str(exc))
    out = result.to_dict()
    out["timings"] = result.timings
    if vectors:  # a federating index's votes in its shared feedback: each hit's stored vector
        await _with_vectors(retrieval, out["hits"])
    if counts and retrieval.reader is not None:  # a federating index's collection statistics: this index's share
        out["collection"] = await _counts(retrieval.reader, query)
    return json_response(out)


async def _counts(reader: Any, query: str) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with reader.snapshot():
            return collection_json(word_counts(reader, query))

    return await runtime.run_blocking(run, stage="counts")


async def _with_vectors(retrieval: Retrieval, hits: list[dict[str, Any]]) -> None:
    reader = retrieval.reader
    ids = [
        h["chunk_id"]
        for h in hits  # this index's own chunks (a peer's hit has its own index's ids)
        if isinstance(h.get("chunk_id"), int) and set(str(h.get("source")).split("+")) <= {"dense", "bm25"}
    ]
    if reader is None or not ids:
        return

    def run() -> dict[int, list[float]]:
        with reader.snapshot():
            return {i: [round(float(x), 6) for x in v] for i, v in reader.vectors(ids).items()}

    found = await runtime.run_blocking(run, stage="vectors")
    for h in hits:
        if h.get("chunk_id") in found:
            h["vector"] = found[h["chunk_id"]]


async def get_route(request: web.Request) -> web.Response:
    """``GET /get?path=...&start_line=&end_line=`` or ``?chunk_id=``: what the index holds (rag get)."""
    from .mcp_tools import read

    q = request.query
    name, _, retrieval = request.app[HUB].pick(q.get("index"))
    request["index"] = name
    try:
        nums = {key: int(q[key]) if q.get(key) else None for key in ("start_line", "end_line", "chunk_id")}
    except ValueError:
        return error(400, "start_line, end_line and chunk_id must be integers")
    try:
        out = await read(retrieval, q.get("path"), nums["chunk_id"], nums["start_line"], nums["end_line"])
    except UsageError as exc:
        return error(400, exc.message)
    except Exception as exc:  # the reader's "not in the index" (an MCP ToolError): the client's miss
        if type(exc).__name__ != "ToolError":
            raise
        return error(404, str(exc))
    return json_response({"index": name, **out})


def _texts(body: dict[str, Any]) -> list[str]:
    texts = body.get("texts")
    if not isinstance(texts, list) or not 1 <= len(texts) <= EMBED_MAX or not all(isinstance(t, str) for t in texts):
        raise UsageError(f"texts: a list of 1 to {EMBED_MAX} strings")
    if not all(valid_unicode(t) for t in texts):
        raise UsageError("texts: a lone surrogate is not text")
    return texts


async def _indexed_body(hub: Hub, request: web.Request) -> tuple[dict[str, Any], Settings, Retrieval]:
    """A POST's JSON body and the served index it names (``index``, else the default), noted on the request for
    the access log and metrics; HttpError for a bad body (400, 413) or an index not served (404, 503 if gone)."""
    body = await read_json(request, hub.settings.serve_max_body_kb)
    name, settings, retrieval = hub.pick(body.get("index"))
    request["index"] = name
    return body, settings, retrieval


async def embed_route(request: web.Request) -> web.Response:
    """``POST /embed {"texts": [...], "index"}``: the texts' unit vectors from the index's query encoder."""
    hub: Hub = request.app[HUB]
    guard: Guard = request.app[GUARD]
    try:
        body, _, retrieval = await _indexed_body(hub, request)
        texts = _texts(body)
    except UsageError as exc:
        return error(400, exc.message)
    if (busy := guard.refused("/embed")) is not None:
        return busy
    async with guard.slot():
        await retrieval.prepare()
        embed = retrieval.sentence_embedder()
        if embed is None:
            return error(503, "the embedding model is not loaded")
        vectors = await runtime.run_blocking(lambda: embed(texts).round(6).tolist(), stage="embed")
    return json_response({"vectors": vectors})


FURTHER_HITS = 100  # passages a /further request may name
FURTHER_DOCUMENTS = 20  # documents it may read further into


async def further_route(request: web.Request) -> web.Response:
    """``POST /further {"query", "hits": [{"chunk_id", "path", "doc_id", "score", "source", ...}], "documents",
    "mode", "index"}``: the index's further passages of the first ``documents`` documents of ``hits`` (the
    passages an answer holds, in its order; no text needed), as /search's hits: what `rag ask` answering
    in-process against this server's search reads, as it would from its own index (retrieve/within.py)."""
    hub: Hub = request.app[HUB]
    guard: Guard = request.app[GUARD]
    try:
        body, s, retrieval = await _indexed_body(hub, request)
        query, mode = text_field(s, "query", body.get("query")), check_mode(s, body.get("mode"))
        documents = body.get("documents")
        if not isinstance(documents, int) or isinstance(documents, bool) or not 0 <= documents <= FURTHER_DOCUMENTS:
            raise UsageError(f"documents: a whole number from 0 to {FURTHER_DOCUMENTS}")
        held = body.get("hits")
        if not isinstance(held, list) or len(held) > FURTHER_HITS or not all(isinstance(h, dict) for h in held):
            raise UsageError(f"hits: a list of at most {FURTHER_HITS} objects")
    except UsageError as exc:
        return error(400, exc.message)
    if (busy := guard.refused("/further")) is not None:
        return busy
    async with guard.slot():
        await retrieval.prepare(mode)
        more = await retrieval.further(query, [Hit.from_dict(h) for h in held], documents, mode=mode)
    return json_response({"hits": [h.to_dict() for h in more]})


async def healthz_route(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    wanted = request.query.get("index")
    if wanted is not None and wanted not in hub.indexes:
        return error(404, f"index {wanted!r} is not served here")
    name = wanted or hub.default
    info = {
        **hub.summary(name),
        "auth": bool(request.app[GUARD].token),
        "embed": True,
        "max_body_kb": hub.settings.serve_max_body_kb,
    }
    if wanted is None:
        info["indexes"] = {n: hub.summary(n) for n in hub.indexes}
    if info["status"] != "ok":
        return json_response(info, 503)
    return json_response(info)


async def metrics_route(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    body = hub.metrics.render(hub.gate)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def create_app(hub: Hub) -> web.Application:
    from . import ask, mcp_tools, openai_api

    app = web.Application(middlewares=[observe], client_max_size=hub.settings.serve_max_body_kb * 1024)
    app[HUB] = hub
    app[GUARD] = Guard(hub)
    app.router.add_get("/search", search_route)
    app.router.add_post("/search", search_route)
    app.router.add_get("/get", get_route)
    app.router.add_post("/embed", embed_route)
    app.router.add_post("/further", further_route)
    app.router.add_post("/ask", ask.ask_route)
    app.router.add_get("/v1/models", openai_api.models_route)
    app.router.add_post("/v1/chat/completions", openai_api.chat_route)
    mcp_tools.add_routes(app, hub)
    app.router.add_get("/healthz", healthz_route)
    app.router.add_get("/metrics", metrics_route)
    page.add_routes(app)
    return app
