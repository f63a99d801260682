"""An OpenAI-compatible endpoint, so chat UIs and any OpenAI SDK use rag with no glue.

``GET /v1/models`` lists one model per served index (``rag/NAME``). ``POST /v1/chat/completions``
answers the last user message with the RAG pipeline; earlier user messages condense a follow-up
into a standalone retrieval query as `rag chat` does. The reply's text ends with the sources it
cites; the same sources are machine-readable in ``citations`` (and the whole `rag ask --json`
result in ``rag``). ``stream: true`` sends ``chat.completion.chunk`` events and ``[DONE]``.
An extra body field ``llm`` (``extra_body={"llm": "none"}``) picks the backend.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from aiohttp import web

from ..errors import AllSourcesFailed, LLMError, NoRelevantPassages, UsageError
from ..pipeline.answer import AnswerResult
from ..pipeline.chat import condense
from .app import HUB
from .ask import STATUS, Framing, Watch, answer_events, answer_params, stream_answer
from .http import HttpError, json_response, read_json, sse_frame

PREFIX = "rag/"


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> web.Response:
    """An error in OpenAI's shape: the SDK raises its matching exception (NotFoundError, RateLimitError...)."""
    return json_response({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)


async def models_route(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    data = []
    for name, (_, retrieval) in hub.indexes.items():
        created = 0
        if retrieval.reader is not None:
            created = int(retrieval.reader.stats().get("updated_at") or 0)
        data.append({"id": PREFIX + name, "object": "model", "created": created, "owned_by": "rag"})
    return json_response({"object": "list", "data": data})


def _content(message: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if not all(isinstance(t, str) for t in parts):
            raise UsageError("a text content part's text must be a string")
        return "\n".join(parts)
    return ""


def _questions(messages: Any) -> list[str]:
    if not isinstance(messages, list) or not messages:
        raise UsageError("messages must be a non-empty list")
    users = [_content(m).strip() for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    users = [u for u in users if u]
    if not users or not (isinstance(messages[-1], dict) and messages[-1].get("role") == "user"):
        raise UsageError("the last message must be the user's question")
    return users


def sources_text(result: AnswerResult) -> str:
    cited = set(result.citations)
    lines = [
        f"[{s['n']}] {s['url'] or s['location']} — {s['title']}".rstrip(" —")
        for s in result.source_dicts()
        if s["n"] in cited
    ]
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


def _citations(result: AnswerResult) -> list[dict[str, Any]]:
    cited = set(result.citations)
    return [s for s in result.source_dicts() if s["n"] in cited]


async def chat_route(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    try:
        body = await read_json(request, hub.settings.serve_max_body_kb)
    except HttpError as exc:
        return _error(exc.status, exc.message, "invalid_body")
    model = body.get("model") or PREFIX + hub.default
    name = model[len(PREFIX) :] if isinstance(model, str) and model.startswith(PREFIX) else model
    if not isinstance(name, str) or name not in hub.indexes:
        return _error(
            404,
            f"model {model!r} does not exist (models: {', '.join(PREFIX + n for n in hub.indexes)})",
            "model_not_found",
        )
    try:
        name, settings, retrieval = hub.pick(name)
    except HttpError as exc:
        return _error(exc.status, exc.message, "index_unavailable", "server_error")
    request["index"] = name
    try:
        questions = _questions(body.get("messages"))
        params = answer_params(settings, {**body, "question": questions[-1]})
    except UsageError as exc:
        return _error(400, exc.message, "invalid_request")
    query = condense(questions)
    events = answer_events(hub, name, settings, retrieval, route="/v1/chat/completions", query=query, **params)
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    base = {"id": ident, "created": created, "model": PREFIX + name}
    if body.get("stream"):
        return await _stream(request, hub, events, base)
    result: AnswerResult | None = None
    async with Watch(request, hub.stopping) as watch, contextlib.aclosing(events):
        try:
            async for ev in events:
                if ev.kind == "done":
                    result = ev.data
        except HttpError as exc:
            return _rate_limited(exc)
        except (NoRelevantPassages, LLMError, AllSourcesFailed) as exc:
            if not isinstance(exc, NoRelevantPassages):
                return _error(STATUS[type(exc)], exc.message, "answer_failed", "server_error")
            text, extra = exc.message + ".", {"error": exc.message, "exit_code": exc.exit_code}
            return json_response(_completion(base, text, [], extra))
    if result is None:
        if watch.reason == "shutdown":
            return _error(503, "server shutting down", "shutting_down", "server_error")
        return json_response({"error": {"message": "cancelled"}}, 499)
    text = result.answer + sources_text(result)
    out = _completion(base, text, _citations(result), result.to_dict())
    out["usage"] = {
        "prompt_tokens": 0,
        "completion_tokens": int(result.timings.get("tokens", 0)),
        "total_tokens": int(result.timings.get("tokens", 0)),
    }
    return json_response(out)


def _completion(
    base: dict[str, Any], text: str, citations: list[dict[str, Any]], rag: dict[str, Any]
) -> dict[str, Any]:
    return {
        **base,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "citations": citations,
        "rag": rag,
    }


def _rate_limited(exc: HttpError) -> web.Response:
    resp = _error(
        exc.status,
        exc.message,
        "rate_limited" if exc.status == 429 else "unavailable",
        "rate_limit_error" if exc.status == 429 else "server_error",
    )
    if exc.retry_after is not None:
        resp.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return resp


def _chunk(base: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    obj = {
        **base,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return sse_frame(obj)


class _OpenAIFraming(Framing):
    """``chat.completion.chunk`` events: the role first, the answer's text as it streams, its sources and
    ``citations`` with the last chunk, then ``[DONE]``; errors before the stream in OpenAI's shape."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base

    def opening(self) -> list[bytes]:
        return [_chunk(self.base, {"role": "assistant", "content": ""})]

    def event(self, ev: Any) -> list[bytes]:
        if ev.kind == "token":
            return [_chunk(self.base, {"content": ev.data})]
        if ev.kind != "done":
            return []
        result: AnswerResult = ev.data
        tail = sources_text(result)
        last = _chunk(self.base, {}, "stop", citations=_citations(result), rag=result.to_dict())
        return [_chunk(self.base, {"content": tail}), last] if tail else [last]

    def refuse(self, exc: Exception) -> web.StreamResponse | None:
        if isinstance(exc, HttpError):
            return _rate_limited(exc)
        if isinstance(exc, LLMError | AllSourcesFailed):
            return _error(STATUS[type(exc)], exc.message, "answer_failed", "server_error")
        return None  # declined: said as the answer

    def failure(self, exc: Any) -> list[bytes]:
        return [
            _chunk(self.base, {"content": exc.message + "."}),
            _chunk(self.base, {}, "stop", citations=[], rag={"error": exc.message, "exit_code": exc.exit_code}),
        ]

    def shutdown(self) -> list[bytes]:
        return [_chunk(self.base, {}, "length", rag={"error": "server shutting down"})]

    def closing(self) -> list[bytes]:
        return [b"data: [DONE]\n\n"]

    def gone(self, shutting_down: bool) -> web.StreamResponse:
        if shutting_down:
            return _error(503, "server shutting down", "shutting_down", "server_error")
        return json_response({"error": {"message": "cancelled"}}, 499)


async def _stream(request: web.Request, hub: Any, events: Any, base: dict[str, Any]) -> web.StreamResponse:
    return await stream_answer(request, hub, events, _OpenAIFraming(base))
