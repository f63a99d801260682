"""Answers over HTTP: ``POST /ask`` and the run every answering route shares (OpenAI, MCP).

One answer holds a generation slot of the server's :class:`~rag_cli.server.gate.Gate` while the
local model writes (other backends do not queue). A client that goes away, or a server told to
stop, cancels the answer: the backend stops at its next token and the slot is free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from ..config import Settings
from ..errors import AllSourcesFailed, LLMError, NoRelevantPassages, RagError, UsageError
from ..pipeline.answer import Event, answer, chain, jsonl_event
from ..pipeline.chat import condense
from ..retrieve.service import Retrieval
from .app import HUB
from .http import (
    HttpError,
    check_mode,
    count,
    filter_field,
    json_response,
    read_json,
    sse_frame,
    start_sse,
    text_field,
    wants_sse,
)

# how a declined or failed answer maps to HTTP (the CLI's exit codes 7, 8, 6 ride along in the body)
STATUS = {NoRelevantPassages: 200, LLMError: 502, AllSourcesFailed: 503}


def answer_params(settings: Settings, body: dict[str, Any], question_key: str = "question") -> dict[str, Any]:
    """question, k, mode and llm from a request body, checked (UsageError for the client's mistakes)."""
    from ..llm.base import names

    question = text_field(settings, question_key, body.get(question_key))
    k = body.get("k")
    llm = body.get("llm")
    if llm is not None and (not isinstance(llm, str) or llm not in names()):
        raise UsageError(f"llm must be one of {', '.join(names())}")
    return {
        "question": question,
        "k": None if k is None else count(settings, "k", k),
        "mode": check_mode(settings, body.get("mode")),
        "llm": llm,
        "filter": filter_field(body),
    }


HISTORY_MAX = 20  # earlier questions a request may send


def history_field(settings: Settings, value: Any) -> list[str]:
    """``history``: the conversation's earlier questions, earliest first (the web page keeps them)."""
    if not isinstance(value, list) or len(value) > HISTORY_MAX:
        raise UsageError(f"history must be a list of at most {HISTORY_MAX} earlier questions")
    return [text_field(settings, "history", q) for q in value]


def runs_here(backends: list[str], settings: Settings) -> bool:
    """Whether any backend of the chain generates on this machine's cores (``runs_here``: local, a
    plugin's model): those answers take a generation slot; remote APIs and quoting do not."""
    from ..llm import base as llm_base

    for name in backends:
        try:
            if llm_base.create(name, settings, {}).runs_here:
                return True
        except RagError:  # a backend that cannot be made here fails in answer(), with its fallbacks
            continue
    return False


def error_payload(question: str, exc: RagError) -> dict[str, Any]:
    """The object `rag ask --json` prints for an answer that could not be given."""
    return {
        "question": question,
        "answer": None,
        "error": exc.message,
        "exit_code": exc.exit_code,
        "citations": [],
        "sources": [],
    }


class Watch:
    """Cancels the current task when the client disconnects or the server begins to stop.

    aiohttp does not cancel a handler whose client went away; without this an abandoned answer would
    hold its generation slot to the last token. ``reason`` says why it fired ("disconnected",
    "shutdown") or is None; the cancellation it caused is swallowed on exit.
    """

    def __init__(self, request: web.Request | None, stopping: asyncio.Event, interval: float = 0.05) -> None:
        self.request, self.stopping, self.interval = request, stopping, interval
        self.reason: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self._task = asyncio.current_task()
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            transport = self.request.transport if self.request is not None else None
            if self.request is not None and (transport is None or transport.is_closing()):
                self.reason = "disconnected"
                break
            if self.stopping.is_set():
                self.reason = "shutdown"
                break
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(self, et: Any, exc: Any, tb: Any) -> bool:
        assert self._watcher is not None and self._task is not None
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        if self.reason is not None and et is not None and issubclass(et, asyncio.CancelledError):
            self._task.uncancel()
            return True
        return False


async def answer_events(
    hub: Any,
    name: str,
    settings: Settings,
    retrieval: Retrieval,
    *,
    route: str,
    question: str,
    k: int | None = None,
    mode: str | None = None,
    llm: str | None = None,
    query: str | None = None,
    filter: Any = None,
) -> AsyncGenerator[Event, None]:
    """The answer's events, holding a generation slot when the local model may write. Metrics per route."""
    m = hub.metrics
    backends = list(dict.fromkeys([llm, *settings.llm_fallback])) if llm else chain(settings)
    slot = hub.gate.slot() if runs_here(backends, settings) else contextlib.nullcontext(0)
    t0 = time.perf_counter()
    outcome = "error"
    try:
        try:
            cm = await slot.__aenter__()
        except HttpError:
            outcome = "rejected"
            m.rejections.labels(route, "queue full").inc()
            raise
        try:
            async for ev in answer(
                question,
                retrieval,
                settings,
                k=k,
                mode=mode,
                backends=backends,
                query=query,
                services={"replica": cm},
                filter=filter,
            ):
                if ev.kind == "done":
                    t = ev.data.timings
                    m.tokens.labels(route, name).inc(t.get("tokens", 0))
                    if "first_text_ms" in t:
                        m.first_token.labels(route, name).observe(t["first_text_ms"] / 1000)
                    outcome = "ok"
                yield ev
        finally:
            await slot.__aexit__(None, None, None)
    except (asyncio.CancelledError, GeneratorExit):
        outcome = "cancelled"
        raise
    except NoRelevantPassages:
        outcome = "declined"
        raise
    finally:
        m.answers.labels(route, outcome, name).inc()
        m.answer_seconds.labels(route, name).observe(time.perf_counter() - t0)


async def ask_route(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    body = await read_json(request, hub.settings.serve_max_body_kb)
    name, settings, retrieval = hub.pick(body.get("index"))
    request["index"] = name
    try:
        params = answer_params(settings, body)
        if body.get("query") is not None:  # what to search for: a follow-up condensed by `rag chat`
            params["query"] = text_field(settings, "query", body["query"])
        elif body.get("history") is not None:  # the conversation's earlier questions: condensed here
            params["query"] = condense([*history_field(settings, body["history"]), params["question"]])
    except UsageError as exc:
        raise HttpError(400, exc.message) from None
    events = answer_events(hub, name, settings, retrieval, route="/ask", **params)
    if wants_sse(request):
        return await stream_sse(request, hub, events, params["question"])
    result = None
    async with Watch(request, hub.stopping) as watch, contextlib.aclosing(events):
        try:
            async for ev in events:
                if ev.kind == "done":
                    result = ev.data
        except (NoRelevantPassages, LLMError, AllSourcesFailed) as exc:
            return json_response(error_payload(params["question"], exc), STATUS[type(exc)])
    if watch.reason == "shutdown":
        raise HttpError(503, "server shutting down", retry_after=5)
    if result is None:  # the client went away; nobody reads this
        return json_response({"error": "cancelled"}, 499)
    return json_response(result.to_dict())


class Framing:
    """How one streamed answer is written: the frames of each part of the stream. The skeleton that
    drives it (:func:`stream_answer`) is the same for ``/ask`` and ``/v1/chat/completions``."""

    def opening(self) -> list[bytes]:
        """Frames right after the stream starts (with the first event)."""
        return []

    def event(self, ev: Event) -> list[bytes]:
        raise NotImplementedError

    def refuse(self, exc: Exception) -> web.StreamResponse | None:
        """An error before the stream started: a plain HTTP response instead of a stream, or None to
        stream :meth:`failure` (may raise ``exc``: the server's middleware answers it)."""
        return None

    def failure(self, exc: RagError) -> list[bytes]:
        raise NotImplementedError

    def shutdown(self) -> list[bytes]:
        """Frames that end a stream the server's shutdown cut short."""
        return []

    def closing(self) -> list[bytes]:
        return []

    def gone(self, shutting_down: bool) -> web.StreamResponse:
        """The answer ended before its first event: the server is stopping or the client left."""
        if shutting_down:
            raise HttpError(503, "server shutting down", retry_after=5)
        return json_response({"error": "cancelled"}, 499)


ANSWER_ERRORS = (HttpError, NoRelevantPassages, LLMError, AllSourcesFailed)


async def stream_answer(
    request: web.Request, hub: Any, events: AsyncGenerator[Event, None], framing: Framing
) -> web.StreamResponse:
    """Stream ``events`` as server-sent events framed by ``framing``. The response starts with the first
    event, so a full queue is still a plain 429 and not a stream that fails; a client that goes away or a
    server that stops cancels the answer (:class:`Watch`)."""
    resp: web.StreamResponse | None = None

    async def write(frames: list[bytes]) -> None:
        nonlocal resp
        if resp is None:
            resp = await start_sse(request)
            frames = framing.opening() + frames
        for frame in frames:
            await resp.write(frame)

    async with Watch(request, hub.stopping) as watch, contextlib.aclosing(events):
        try:
            async for ev in events:
                await write(framing.event(ev))
        except ANSWER_ERRORS as exc:
            early = framing.refuse(exc) if resp is None else None
            if early is not None:
                return early
            if not isinstance(exc, HttpError):
                await write(framing.failure(exc))
        except ConnectionError:  # the client went away between two writes
            watch.reason = watch.reason or "disconnected"
    if resp is None:
        return framing.gone(watch.reason == "shutdown")
    with contextlib.suppress(ConnectionError):
        for frame in (framing.shutdown() if watch.reason == "shutdown" else []) + framing.closing():
            await resp.write(frame)
        await resp.write_eof()
    return resp


class _AskFraming(Framing):
    """``/ask``: the `rag ask --jsonl` events, ``event: KIND``; a declined or failed answer is a ``done``
    event with the CLI's error object."""

    def __init__(self, question: str) -> None:
        self.question = question

    def event(self, ev: Event) -> list[bytes]:
        line = jsonl_event(ev)
        return [sse_frame(line, line["event"])]

    def refuse(self, exc: Exception) -> web.StreamResponse | None:
        if isinstance(exc, HttpError):
            raise exc
        return None

    def failure(self, exc: RagError) -> list[bytes]:
        return [sse_frame({"event": "done", **error_payload(self.question, exc)}, "done")]

    def shutdown(self) -> list[bytes]:
        return [sse_frame({"event": "error", "message": "server shutting down"}, "error")]


async def stream_sse(
    request: web.Request, hub: Any, events: AsyncGenerator[Event, None], question: str
) -> web.StreamResponse:
    """The events of ``/ask`` as SSE (``event: KIND``, ``data:`` the JSON Lines object)."""
    return await stream_answer(request, hub, events, _AskFraming(question))
