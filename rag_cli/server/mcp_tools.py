"""rag as a Model Context Protocol server, on the official ``mcp`` SDK (2.x, ``MCPServer``).

Tools: ``search``, ``ask``, ``get`` and ``indexes`` over the served indexes; each indexed document is
also a resource (``rag://INDEX/PATH``). ``rag mcp`` speaks it over stdio; ``rag serve`` mounts the
SDK's streamable-HTTP transport at ``/mcp`` (stateless, JSON responses) behind the server's own
bearer token, limits and metrics: an aiohttp handler hands each request to the SDK's ASGI app.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from .. import runtime
from ..errors import RagError, UsageError
from ..pipeline.answer import AnswerResult
from .http import HttpError, check_mode, count, filter_field, text_field, valid_unicode

INSTRUCTIONS = (
    "rag answers questions from local document indexes with numbered, checked citations. Use `search` to find "
    "passages, `ask` for a cited answer, `get` to read a document or a cited line range, `indexes` to list them."
)


RESOURCE_LIST_MAX = 1000  # documents listed per index by resources/list; any indexed one can be read


def resource_uri(index: str, path: str) -> str:
    """``rag://INDEX/PATH`` for an indexed document (the absolute path without its leading slash)."""
    from urllib.parse import quote

    return f"rag://{index}/{quote(path.lstrip('/'), safe='/')}"


def build(hub: Any) -> Any:
    """The MCPServer with rag's tools bound to ``hub`` (the served indexes), and every indexed
    document as a resource ``rag://INDEX/PATH`` (listed up to RESOURCE_LIST_MAX per index)."""
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.resources.templates import ResourceSecurity
    from mcp_types import Resource as MCPResource

    class Server(MCPServer):
        async def list_resources(self) -> list[MCPResource]:
            return await resources(hub, MCPResource)

    server = Server("rag", instructions=INSTRUCTIONS, log_level="WARNING")

    def pick(index: str | None) -> tuple[str, Any, Any]:
        return _pick(hub, index)

    @server.tool()
    async def search(
        query: str,
        k: int = 5,
        mode: str = "hybrid",
        path: str | list[str] | None = None,
        type: str | None = None,
        since: str | None = None,
        index: str | None = None,
    ) -> dict[str, Any]:
        """Search an index. `mode`: hybrid, dense or bm25. `path`: a glob on the document path, or a list
        (`docs/*.md`; `!GLOB` excludes); `type`: file types (`md,pdf`); `since`: files modified since a date
        (`2026-01-01`) or an age (`7d`). Returns ranked passages with path, lines and text."""
        return await search_tool(hub, query, k, mode, {"path": path, "type": type, "since": since}, index)

    async def ask(
        question: str,
        k: int | None = None,
        llm: str | None = None,
        path: str | list[str] | None = None,
        type: str | None = None,
        since: str | None = None,
        index: str | None = None,
        ctx: Any = None,
    ) -> dict[str, Any]:
        """Answer a question from an index. The answer cites numbered sources ([1], [2]); each sentence
        is checked against what it cites (`sentences[].verified`). `llm`: local, openai or none. `path`,
        `type`, `since`: answer from part of the index, as for `search`."""
        return await ask_tool(
            hub,
            question,
            {"question": question, "k": k, "llm": llm, "path": path, "type": type, "since": since},
            index,
            ctx,
        )

    ask.__annotations__["ctx"] = Context  # the SDK injects the request context into a parameter of this type
    server.tool()(ask)

    @server.tool()
    async def get(
        path: str | None = None,
        chunk_id: int | None = None,
        start_line: int | None = None,
        end_line: int | None = None,
        index: str | None = None,
    ) -> dict[str, Any]:
        """Read what the index holds of a document (by `path`, optionally a `start_line`-`end_line`
        range) or one chunk (by `chunk_id`, as `search` returns it)."""
        name, _, retrieval = pick(index)
        try:
            return {"index": name, **(await read(retrieval, path, chunk_id, start_line, end_line))}
        except UsageError as exc:
            raise _tool_error(exc.message) from None

    @server.tool()
    async def indexes() -> dict[str, Any]:
        """The indexes this server answers from: files, chunks, bytes, generation and the embedding fingerprint."""
        out = []
        for name, (_, retrieval) in hub.indexes.items():
            info = await runtime.run_blocking(retrieval.reader.stats) if retrieval.reader else {"name": name}
            out.append({k: v for k, v in info.items() if k != "path"})
        return {"default": hub.default, "indexes": out}

    # the path names an indexed document, looked up in the index only (never opened on disk), so the
    # SDK's path-traversal checks (absolute paths, '..') do not apply to it
    @server.resource(
        "rag://{index}/{+path}",
        name="document",
        mime_type="text/plain",
        description="An indexed document's text as the index holds it, chunk by chunk.",
        security=ResourceSecurity(exempt_params={"path"}),
    )
    async def document(index: str, path: str) -> str:
        from mcp.server.mcpserver.exceptions import ResourceError

        _, _, retrieval = pick(index)
        try:
            got = await read(retrieval, "/" + path.lstrip("/"), None, None, None)
        except Exception as exc:
            raise ResourceError(str(exc)) from None
        chunks = got["chunks"]
        title = chunks[0].get("title") or ""
        head = [title] if title and not chunks[0]["text"].startswith(title) else []  # chunks do not repeat it
        return "\n\n".join([*head, *(c["text"] for c in chunks)])

    return server


def _pick(hub: Any, index: str | None) -> tuple[str, Any, Any]:
    try:
        picked: tuple[str, Any, Any] = hub.pick(index)
        return picked
    except HttpError as exc:
        raise _tool_error(exc.message) from None


async def resources(hub: Any, resource: Any) -> list[Any]:
    """Every indexed document as an MCP resource (up to RESOURCE_LIST_MAX per index)."""
    out: list[Any] = []
    for name, (_, retrieval) in hub.indexes.items():
        if retrieval.reader is None:
            continue
        docs = await runtime.run_blocking(retrieval.reader.documents, RESOURCE_LIST_MAX)
        out += [
            resource(
                uri=resource_uri(name, d["path"]),
                name=d["path"].rsplit("/", 1)[-1],
                title=d["title"] or None,
                mime_type="text/plain",
                size=d["size"],
                description=f"{d['kind']} in index {name}",
            )
            for d in docs
        ]
    return out


async def search_tool(
    hub: Any, query: str, k: int, mode: str, filters: dict[str, Any], index: str | None
) -> dict[str, Any]:
    """The ``search`` tool: ranked passages with path, lines and text."""
    name, settings, retrieval = _pick(hub, index)
    try:
        text_field(settings, "query", query)
        k = count(settings, "k", k)
        mode = check_mode(settings, mode)
        flt = filter_field(filters)
    except UsageError as exc:
        raise _tool_error(exc.message) from None
    res = await retrieval.search(query, k=k, mode=mode, filter=flt)
    hits = res.hits[:k]
    return {
        "index": name,
        "query": query,
        "mode": mode,
        "hits": [
            {
                "rank": i,
                "path": h.path,
                "location": h.location,
                "title": h.title,
                "start_line": h.start_line,
                "end_line": h.end_line,
                "page": h.page,
                "chunk_id": h.chunk_id,
                "score": round(h.score, 6),
                "text": h.text,
            }
            for i, h in enumerate(hits, start=1)
        ],
        "degraded": [d.to_dict() for d in res.degraded],
    }


async def ask_tool(hub: Any, question: str, body: dict[str, Any], index: str | None, ctx: Any) -> dict[str, Any]:
    """The ``ask`` tool: a cited, verified answer, or the error object `rag ask --json` prints."""
    from .ask import Watch, answer_events, answer_params

    name, settings, retrieval = _pick(hub, index)
    try:
        params = answer_params(settings, body)
    except UsageError as exc:
        raise _tool_error(exc.message) from None
    result: AnswerResult | None = None
    try:
        # aiohttp does not cancel a handler whose client left, and the SDK runs the tool in its own task:
        # watch the HTTP request (None over stdio) so an abandoned call frees its generation slot at once
        async with Watch(_http_request(ctx), hub.stopping) as watch:
            async for ev in answer_events(hub, name, settings, retrieval, route="mcp", **params):
                if ev.kind == "done":
                    result = ev.data
        if watch.reason is not None:
            return {"question": question, "answer": None, "error": f"stopped: {watch.reason}"}
    except HttpError as exc:
        raise _tool_error(f"{exc.message}; retry in {exc.retry_after or 5:.0f} s") from None
    except RagError as exc:
        return {"question": question, "answer": None, "error": exc.message, "exit_code": exc.exit_code}
    assert result is not None
    d = result.to_dict()
    return {
        k: d[k] for k in ("question", "answer", "citations", "sources", "verified", "sentences", "degraded", "backend")
    }


def _tool_error(message: str) -> Exception:
    """A failure the caller can act on: the SDK passes its message to the model (others it masks)."""
    from mcp.server.mcpserver.exceptions import ToolError

    return ToolError(message)


async def read(
    retrieval: Any, path: str | None, chunk_id: int | None, start: int | None, end: int | None
) -> dict[str, Any]:
    _check_read(path, chunk_id, start, end)
    reader = retrieval.reader
    if reader is None:
        raise _tool_error("this server has no local index to read from")
    if chunk_id is not None:
        rows = await runtime.run_blocking(reader.chunks, [int(chunk_id)])
        if not rows:
            raise _tool_error(f"no chunk {chunk_id} in the index (re-run search: ids change when files are re-indexed)")
        return {"chunks": list(rows.values())}
    if not path:
        raise _tool_error("give a path or a chunk_id")
    chunks = await runtime.run_blocking(reader.document, path, start, end)
    if not chunks:
        raise _tool_error(f"{path!r} is not in the index" + (f" at lines {start}-{end}" if start or end else ""))
    return {"path": chunks[0]["path"], "chunks": chunks}


_ROWID = 2**63 - 1  # SQLite's and PostgreSQL's largest id: a bigger number is no chunk, and no query to send


def _check_read(path: str | None, chunk_id: int | None, start: int | None, end: int | None) -> None:
    """A UsageError for what no index can hold: a path with NUL or lone surrogates, numbers past 64 bits."""
    if path is not None:
        if not isinstance(path, str) or "\x00" in path or len(path) > 4096:
            raise UsageError("path must be text without NUL bytes, at most 4096 characters")
        if not valid_unicode(path):
            raise UsageError("path is not valid Unicode")
    for label, n in (("chunk_id", chunk_id), ("start_line", start), ("end_line", end)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= _ROWID):
            raise UsageError(f"{label} must be a whole number from 0 to {_ROWID}")


# -- streamable HTTP inside aiohttp ---------------------------------------------------------------


def _http_request(ctx: Any) -> web.Request | None:
    """The aiohttp request an MCP tool call came in on (``asgi`` puts it in the scope), or None (stdio)."""
    try:
        request = ctx.request_context.request
    except (AttributeError, LookupError, ValueError):
        return None
    scope = request.scope if request is not None else {}
    found = scope.get("rag.request")
    return found if isinstance(found, web.Request) else None


def add_routes(app: web.Application, hub: Any) -> None:
    """``/mcp`` on ``app``: the SDK's session manager runs for the app's lifetime."""
    state: dict[str, Any] = {}

    async def start(app: web.Application) -> None:
        from mcp.server.transport_security import TransportSecuritySettings

        server = build(hub)
        host = hub.settings.serve_host
        loopback = host in ("127.0.0.1", "localhost", "::1")
        security = None if loopback else TransportSecuritySettings(enable_dns_rebinding_protection=False)
        server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            host=host,
            transport_security=security,
            max_request_body_size=hub.settings.serve_max_body_kb * 1024,
        )
        manager = server.session_manager
        ready = asyncio.Event()
        done = asyncio.Event()

        async def run() -> None:
            async with manager.run():
                ready.set()
                await done.wait()

        state["task"] = asyncio.create_task(run())
        state["done"] = done
        state["manager"] = manager
        await ready.wait()

    async def stop(app: web.Application) -> None:
        if "done" in state:
            state["done"].set()
            with contextlib.suppress(Exception):
                await state["task"]

    async def handle(request: web.Request) -> web.StreamResponse:
        from mcp.server.streamable_http_manager import StreamableHTTPASGIApp

        return await asgi(StreamableHTTPASGIApp(state["manager"]), request, hub.settings.serve_max_body_kb)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/mcp", handle)


async def asgi(app: Any, request: web.Request, max_kb: int) -> web.StreamResponse:
    """Run one request through an ASGI ``app`` and relay its response (streamed as it is sent)."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise HttpError(413, f"body over {max_kb} KiB") from None
    peer = request.transport.get_extra_info("peername") if request.transport else None
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?")[0].encode(),
        "query_string": request.query_string.encode(),
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.raw_headers],
        "client": tuple(peer[:2]) if peer else None,
        "server": tuple(sock[:2]) if sock else None,
        "rag.request": request,  # for a tool that must see its client leave (ask)
    }
    sent_body = False
    gone = asyncio.Event()
    resp: web.StreamResponse | None = None

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal resp
        if message["type"] == "http.response.start":
            resp = web.StreamResponse(status=message["status"])
            for k, v in message.get("headers", []):
                resp.headers.add(k.decode("latin-1"), v.decode("latin-1"))
            resp.headers.popall("Content-Length", None)  # aiohttp frames the body itself
            await resp.prepare(request)
        elif message["type"] == "http.response.body" and resp is not None:
            if message.get("body"):
                await resp.write(message["body"])
            if not message.get("more_body"):
                await resp.write_eof()

    try:
        await app(scope, receive, send)
    finally:
        gone.set()
    if resp is None:
        return web.Response(status=500, text="the MCP transport sent no response")
    return resp


async def run_stdio(hub: Any) -> None:
    """Serve MCP over this process's stdin and stdout (``rag mcp``)."""
    await build(hub).run_stdio_async()
