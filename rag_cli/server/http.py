"""Request parsing, validation and responses shared by every route of ``rag serve``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..config import Settings
from ..errors import UsageError
from ..retrieve.fanout import MODES


class HttpError(Exception):
    """A request the server refuses: its status, message and (for 429/503) when to retry."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after

    def response(self) -> web.Response:
        resp = error(self.status, self.message)
        if self.retry_after is not None:
            resp.headers["Retry-After"] = str(max(1, round(self.retry_after)))
        return resp


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json")


def error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


def valid_unicode(text: str) -> bool:
    """False for text with lone surrogates (JSON's ``"\\ud800"``): no encoder or model takes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def host_name(value: str) -> str:
    """The host of a ``Host`` header or an origin's authority, lower-cased, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8008
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _ip_literal(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def trusted_host(host: str, bind: str, allowed: list[str]) -> bool:
    """Whether a request's ``Host`` may reach the server (DNS rebinding: a web page of ``evil.example``
    whose name now resolves to 127.0.0.1 sends ``Host: evil.example``). An IP literal cannot be rebound,
    ``localhost`` and the name the server was bound to are its own; other names only when ``[serve]
    allowed_hosts`` lists them (or ``*``)."""
    name = host_name(host).rstrip(".")
    if not name or "*" in allowed:  # no Host at all is no browser's request
        return True
    if _ip_literal(name) or name in ("localhost", host_name(bind)) or name.endswith(".localhost"):
        return True
    return name in {host_name(a) for a in allowed}


def trusted_origin(origin: str, host: str, cors: set[str]) -> bool:
    """Whether a browser's ``Origin`` may call: the server's own (same host and port as ``Host``), or one
    ``[serve] cors_origins`` lists. A page elsewhere gets no answer, simple requests (a form's ``text/plain``
    POST) included."""
    if not origin or origin in cors or "*" in cors:
        return True
    from urllib.parse import urlsplit

    try:
        authority = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(authority) and authority.lower() == host.strip().lower()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: web.Request, max_kb: int) -> dict[str, Any]:
    """The request's JSON object body, or an HttpError (413 too large, 400 anything malformed: a bad
    charset, a body that is not what its Content-Encoding says, NaN/Infinity, numbers past float)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise HttpError(413, f"body over {max_kb} KiB") from None
    except web.HTTPException:
        raise
    except Exception as exc:  # aiohttp's decompression and payload errors: a malformed request
        raise HttpError(400, f"unreadable body ({type(exc).__name__})") from None
    kind = request.content_type
    if kind != "application/json" and not kind.endswith("+json"):
        # a browser sends text/plain or a form across origins without asking first: JSON only, never that
        raise HttpError(415, f"the body must be JSON with Content-Type: application/json (got {kind[:60]!r})")
    charset = request.charset or "utf-8"
    try:
        text = raw.decode(charset)
    except LookupError:
        raise HttpError(400, f"unknown charset {charset[:40]!r}") from None
    except UnicodeDecodeError:
        raise HttpError(400, f"body is not valid {charset[:40]}") from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise HttpError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    return body


def text_field(settings: Settings, name: str, value: Any) -> str:
    """A query or question: a non-empty string within ``[serve] max_query_chars``, valid Unicode."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{name} is required")
    if len(value) > settings.serve_max_query_chars:
        raise UsageError(f"{name} longer than {settings.serve_max_query_chars} characters")
    if not valid_unicode(value):
        raise UsageError(f"{name} is not valid Unicode (a lone surrogate)")
    return value


def validate(settings: Settings, query: Any, k: Any, mode: Any, timeout: Any) -> tuple[str, int, str, float | None]:
    query = text_field(settings, "query", query)
    k_val = count(settings, "k", k if k is not None else settings.retrieve_k)
    mode_val = check_mode(settings, mode)
    try:
        t = float(timeout) if timeout is not None and not isinstance(timeout, bool) else None
    except (TypeError, ValueError, OverflowError):
        raise UsageError("timeout must be a number") from None
    if t is not None and not 0 < t <= 60:
        raise UsageError("timeout must be between 0 and 60 seconds")
    return query, k_val, mode_val, t


def check_mode(settings: Settings, mode: Any) -> str:
    mode_val = mode or settings.retrieve_mode
    if mode_val not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}")
    return str(mode_val)


def filter_field(body: dict[str, Any]) -> Any:
    """The retrieval filter of a request (``path``: a glob or a list of globs, ``!`` excludes; ``type``:
    ``md,pdf`` or a list; ``since``: a date, an age such as ``7d``, or epoch seconds), or None."""
    from ..retrieve.filters import make_filter

    paths, types, since = body.get("path"), body.get("type"), body.get("since")
    if paths is None and types is None and since is None:
        return None
    if paths is not None and not isinstance(paths, str | list):
        raise UsageError("path must be a glob or a list of globs")
    if types is not None and not isinstance(types, str | list):
        raise UsageError("type must be a string such as 'md,pdf' or a list")
    if since is not None and (isinstance(since, bool) or not isinstance(since, str | int | float)):
        raise UsageError("since must be a date, an age such as '7d', or epoch seconds")
    return make_filter(paths, types, since) or None


VECTOR_MAX = 4096  # dimensions of a query vector a request may send


def vector_field(body: dict[str, Any]) -> tuple[list[float], str] | None:
    """A federating index's query vector (``vector``: a list of numbers) with its model (``vector_model``,
    as ``MODEL/DIM``), or None when absent."""
    import math

    values, model = body.get("vector"), body.get("vector_model")
    if values is None:
        return None
    if (
        not isinstance(values, list)
        or not 1 <= len(values) <= VECTOR_MAX
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    ):
        raise UsageError(f"vector: a list of 1 to {VECTOR_MAX} finite numbers")
    if not isinstance(model, str) or not model:
        raise UsageError("vector_model: the model that made the vector, as MODEL/DIM")
    return [float(v) for v in values], model


EXPANSION_MAX = 32  # feedback words a request may send


def expansion_field(body: dict[str, Any], weight_default: float) -> tuple[list[str], float] | None:
    """A federating index's BM25 feedback words (``expansion``: a list of words) with their weight
    (``expansion_weight``, 0 to 100; default ``weight_default``, the index's own), or None when absent."""
    words, weight = body.get("expansion"), body.get("expansion_weight", weight_default)
    if words is None:
        return None
    if (
        not isinstance(words, list)
        or len(words) > EXPANSION_MAX
        or not all(isinstance(w, str) and 0 < len(w) <= 64 and valid_unicode(w) for w in words)
    ):
        raise UsageError(f"expansion: a list of at most {EXPANSION_MAX} words of 1 to 64 characters")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
        raise UsageError("expansion_weight: a number from 0 to 100")
    return list(words), float(weight)


def collection_field(body: dict[str, Any]) -> tuple[int, dict[str, int]] | None:
    """A federating index's collection statistics (``collection``: ``{"rows": N, "words": {word: n}}``, the
    chunks of all its indexes and per query word those holding it), or None when absent."""
    from ..store.base import COLLECTION_WORDS, collection_from

    value = body.get("collection")
    if value is None:
        return None
    got = collection_from(value)
    if got is None:
        raise UsageError(
            'collection: {"rows": N, "words": {WORD: N, ...}} with whole numbers and at most '
            f"{COLLECTION_WORDS} words"
        )
    return got


def flag_field(body: dict[str, Any], name: str) -> bool | None:
    """A true/false field of a request (JSON ``true``/``false``, or ``"true"``/``"false"`` from a query
    string), or None when absent."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise UsageError(f"{name} must be true or false")


def count(settings: Settings, name: str, value: Any) -> int:
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


def wants_sse(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


async def start_sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    return resp


def sse_frame(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is sent as JSON on one line (a string as given)."""
    text = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return (head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n").encode("utf-8")
