"""A real aiohttp server on 127.0.0.1, run in a background thread, with misbehaving routes for tests."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from typing import Any, ClassVar, Self

from aiohttp import ClientConnectionError, web


class LoopbackServer:
    """An aiohttp app (``_app``) on 127.0.0.1, on a free port, in a thread of its own: ``with Server() as s``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _app(self) -> web.Application:
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            # a hanging handler (/hang) is cancelled at once on the way out, not waited for
            runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.2)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.shutdown()
            await runner.cleanup()

        self.loop.run_until_complete(main())
        self.loop.close()

    def __enter__(self) -> Self:
        self.thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


class FakeSearchServer(LoopbackServer):
    """Routes (all answer the `results` shape `{"data": {"results": [{"snippet", "title", "link", "score"}]}}`):

    /ok?q=..            immediate results mentioning q
    /slow?delay=0.3     results after a delay
    /hang               never answers (until the server stops)
    /fail               HTTP 500 every time
    /flaky?fails=N      500 for the first N calls, then results
    /badjson            200 with invalid JSON
    /wrongshape         200 with JSON of the wrong shape
    /huge?mb=N          200 with an N MB body
    /drip               one byte a second
    /ratelimit?after=S  429 with Retry-After: S on the first call, then results
    /auth               results only with Authorization: Bearer s3cret-token, else 401
    /reset              closes the connection without a response
    /redirect?to=URL    302 to URL (the headers of each call are kept in ``headers``)
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @staticmethod
    def results(q: str, n: int = 3, tag: str = "fake") -> dict[str, Any]:
        return {
            "data": {
                "results": [
                    {
                        "snippet": f"{tag} result {i} about {q}",
                        "title": f"{tag} {i}",
                        "link": f"http://{tag}/{i}",
                        "score": 1.0 / (i + 1),
                    }
                    for i in range(n)
                ]
            }
        }

    async def _ok(self, request: web.Request) -> web.Response:
        self.calls["ok"] += 1
        self.headers.append(dict(request.headers))
        return web.json_response(self.results(request.query.get("q", ""), tag=request.query.get("tag", "fake")))

    async def _slow(self, request: web.Request) -> web.Response:
        self.calls["slow"] += 1
        await asyncio.sleep(float(request.query.get("delay", "0.3")))
        return web.json_response(self.results(request.query.get("q", ""), tag=request.query.get("tag", "slow")))

    async def _hang(self, request: web.Request) -> web.Response:
        self.calls["hang"] += 1
        await asyncio.sleep(3600)
        return web.json_response({})

    async def _fail(self, request: web.Request) -> web.Response:
        self.calls["fail"] += 1
        return web.Response(status=500, text="boom")

    async def _flaky(self, request: web.Request) -> web.Response:
        self.calls["flaky"] += 1
        if self.calls["flaky"] <= int(request.query.get("fails", "1")):
            return web.Response(status=503, text="busy")
        return web.json_response(self.results(request.query.get("q", ""), tag="flaky"))

    async def _badjson(self, request: web.Request) -> web.Response:
        self.calls["badjson"] += 1
        return web.Response(text="{not json", content_type="application/json")

    async def _wrongshape(self, request: web.Request) -> web.Response:
        self.calls["wrongshape"] += 1
        return web.json_response({"data": {"results": {"not": "a list"}}})

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        self.calls["huge"] += 1
        mb = int(request.query.get("mb", "100"))
        resp = web.StreamResponse()
        await resp.prepare(request)
        block = b" " * (1024 * 1024)
        try:
            for _ in range(mb):
                await resp.write(block)
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        self.calls["drip"] += 1
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            for ch in json.dumps(self.results("drip")).encode():
                await resp.write(bytes([ch]))
                await asyncio.sleep(1.0)
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    async def _ratelimit(self, request: web.Request) -> web.Response:
        self.calls["ratelimit"] += 1
        if self.calls["ratelimit"] == 1:
            return web.Response(status=429, headers={"Retry-After": request.query.get("after", "0.3")})
        return web.json_response(self.results(request.query.get("q", ""), tag="ratelimit"))

    async def _auth(self, request: web.Request) -> web.Response:
        self.calls["auth"] += 1
        if request.headers.get("Authorization") != "Bearer s3cret-token":
            return web.Response(status=401)
        return web.json_response(self.results(request.query.get("q", ""), tag="auth"))

    async def _reset(self, request: web.Request) -> web.Response:
        self.calls["reset"] += 1
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(0.1)
        return web.Response()

    async def _redirect(self, request: web.Request) -> web.Response:
        self.calls["redirect"] += 1
        self.headers.append(dict(request.headers))
        raise web.HTTPFound(request.query["to"])

    async def _post_search(self, request: web.Request) -> web.Response:
        self.calls["post"] += 1
        body = await request.json()
        return web.json_response(
            {"hits": {"hits": [{"_source": {"body": f"es hit for {body['query']['match']['body']}"}, "_score": 2.0}]}}
        )

    def _app(self) -> web.Application:
        app = web.Application()
        for path, fn in [
            ("/ok", self._ok),
            ("/slow", self._slow),
            ("/hang", self._hang),
            ("/fail", self._fail),
            ("/flaky", self._flaky),
            ("/badjson", self._badjson),
            ("/wrongshape", self._wrongshape),
            ("/huge", self._huge),
            ("/drip", self._drip),
            ("/ratelimit", self._ratelimit),
            ("/auth", self._auth),
            ("/reset", self._reset),
            ("/redirect", self._redirect),
        ]:
            app.router.add_get(path, fn)
        app.router.add_post("/es/_search", self._post_search)
        return app


class FakeOpenAI(LoopbackServer):
    """An OpenAI-compatible /v1/chat/completions server on 127.0.0.1 whose behaviour depends on the model name.

    model "ok": streams "Paris is the capital [1]." then [DONE]; "fail": HTTP 500; "hang": headers, then
    nothing; "cut": two tokens, then the connection drops; "drip": one token every 0.3 s for a long time;
    "badcite": cites [1] and [9].
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.closed_early = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def chunk(text: str) -> bytes:
        event = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        return f"data: {json.dumps(event)}\n\n".encode()

    def _app(self) -> web.Application:
        async def completions(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            model = body.get("model", "ok")
            self.calls[model] += 1
            self.bodies.append(body)
            if model == "fail":
                return web.Response(status=500, text="internal error")
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            try:
                if model == "hang":
                    await asyncio.sleep(3600)
                elif model == "cut":
                    await resp.write(self.chunk("Partial "))
                    await resp.write(self.chunk("answer "))
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                elif model == "drip":
                    for i in range(200):
                        await resp.write(self.chunk(f"word{i} "))
                        await asyncio.sleep(0.3)
                else:
                    words = (
                        ["Paris ", "is ", "the ", "capital ", "[1]", "."]
                        if model != "badcite"
                        else ["Yes ", "[1]", " and ", "[9]", "."]
                    )
                    for w in words:
                        await resp.write(self.chunk(w))
                    await resp.write(b"data: [DONE]\n\n")
            except (ConnectionResetError, asyncio.CancelledError, ClientConnectionError):
                self.closed_early += 1
                return resp
            return resp

        app = web.Application()
        app.router.add_post("/v1/chat/completions", completions)
        return app


class FakeRagServe(LoopbackServer):
    """A `rag serve` /ask stand-in on 127.0.0.1 for the client's side of the warm path: POST /MODE/ask.

    MODE "ok": three events, written in pieces that split lines and a UTF-8 character; "refuse": HTTP 503
    with a JSON error; "cut": one event, then the connection drops; "drip": an event every 0.2 s for a long
    time (``closed_early`` is set when the client hangs up)."""

    EVENTS: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("sources", {"sources": [{"n": 1, "location": "a.md"}]}),
        ("draft", {"text": "Café au lait [1]."}),
        ("done", {"answer": "Café au lait [1].", "citations": [1]}),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.closed_early = threading.Event()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}"

    @staticmethod
    def event(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\r\ndata: {json.dumps({'event': kind, **data}, ensure_ascii=False)}\r\n\r\n".encode()

    def _app(self) -> web.Application:
        async def ask(request: web.Request) -> web.StreamResponse:
            mode = request.match_info["mode"]
            if mode == "refuse":
                return web.json_response({"error": "busy"}, status=503)
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            try:
                if mode == "ok":
                    whole = b"".join(self.event(k, d) for k, d in self.EVENTS)
                    cut = whole.index("é".encode()) + 1  # inside the character
                    for piece in (whole[:7], whole[7:cut], whole[cut:]):
                        await resp.write(piece)
                        await asyncio.sleep(0.01)
                elif mode == "cut":
                    await resp.write(self.event(*self.EVENTS[0]))
                    assert request.transport is not None
                    request.transport.abort()
                elif mode == "drip":
                    for i in range(300):
                        await resp.write(self.event("token", {"text": f"word{i} "}))
                        await asyncio.sleep(0.2)
            except (ConnectionResetError, asyncio.CancelledError, ClientConnectionError):
                self.closed_early.set()
            return resp

        app = web.Application()
        app.router.add_post("/{mode}/ask", ask)
        return app
