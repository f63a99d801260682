"""Remote sources over HTTP: any JSON search API (``type = "http"``) and another ``rag serve`` (``type = "rag"``).

Each call runs inside the source's deadline. Transient failures (connection
errors, 5xx, 429) are retried with full-jitter exponential backoff while time
remains; a 429's ``Retry-After`` is honoured when it fits the deadline.
Responses are read with a size cap and parsed defensively: anything malformed
becomes a :class:`~rag_cli.errors.SourceError` with a clear reason, which the
fan-out reports as a degradation. Header values (``${ENV}`` references are
expanded at call time) are never put in a reason or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from .. import runtime
from ..config import Settings
from ..errors import ConfigError, SourceError
from ..resilience import backoff, retry_after
from ..store.base import collection_from, collection_json
from ..types import Hit
from .base import QueryContext, register

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
BIG_JSON = 256 * 1024  # parse bodies larger than this on the pool, not on the loop


def expand_env(value: str) -> str:
    """Replace ``${VAR}`` with the environment's value; a missing variable is a SourceError."""

    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var not in os.environ:
            raise SourceError(f"environment variable {var} is not set")
        return os.environ[var]

    return _ENV_REF.sub(sub, value)


def dotted(obj: Any, path: str) -> Any:
    """``dotted({"a": {"b": [1]}}, "a.b") == [1]``; integers index lists; "" is the object itself."""
    if not path:
        return obj
    for part in path.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.lstrip("-").isdigit() and -len(obj) <= int(part) < len(obj):
            obj = obj[int(part)]
        else:
            raise KeyError(path)
    return obj


def fill_template(tpl: Any, query: str, k: int) -> Any:
    """Fill ``{query}`` and ``{k}`` inside a JSON body template (a whole-string "{k}" becomes a number)."""
    if isinstance(tpl, str):
        if tpl == "{k}":
            return k
        return tpl.replace("{query}", query).replace("{k}", str(k))
    if isinstance(tpl, dict):
        return {key: fill_template(v, query, k) for key, v in tpl.items()}
    if isinstance(tpl, list):
        return [fill_template(v, query, k) for v in tpl]
    return tpl


def _number(source: str, key: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> float:
    """A source's numeric setting, range-checked: a ConfigError names the source and the key."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not lo <= value <= hi or (integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"source {source!r}: {key} must be {kind} from {lo:g} to {hi:g}, not {value!r}")
    return float(value)


class HttpSource:
    """A JSON search API described in ``[[sources]]`` (see docs/reference.md: url, method, body, results, fields)."""

    kind = "http"
    filters = False  # a search API knows nothing of this index's paths, types and times

    def __init__(self, spec: dict[str, Any], settings: Settings, services: Any) -> None:
        self.name = str(spec["name"])
        self.spec = spec
        self.services = services
        self.url = str(spec.get("url") or "")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"source {self.name!r}: url must start with http:// or https://")
        netloc = urllib.parse.urlsplit(self.url).netloc
        if "{query}" in netloc or "{k}" in netloc:
            raise ConfigError(f"source {self.name!r}: {{query}} and {{k}} may appear in the url's path or query only")
        follow = str(spec.get("follow_redirects", "same-origin"))
        if follow not in ("none", "same-origin", "any"):
            raise ConfigError(f"source {self.name!r}: follow_redirects must be none, same-origin or any")
        self.follow_redirects = follow
        self.method = str(spec.get("method", "GET")).upper()
        if self.method not in ("GET", "POST"):
            raise ConfigError(f"source {self.name!r}: method must be GET or POST")
        self.body = spec.get("body")
        self.results_path = str(spec.get("results", ""))
        fields = spec.get("fields") or {}
        if not isinstance(fields, dict):
            raise ConfigError(f"source {self.name!r}: fields must be a table")
        self.fields = {"text": "text", "title": "title", "url": "url", "score": "score", **fields}
        self.headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
        self.timeout = _number(self.name, "timeout", spec.get("timeout"), 0.001, 3600.0) if "timeout" in spec else None
        self.weight = _number(self.name, "weight", spec.get("weight", 1.0), 0.0, 1000.0)
        self.retries = int(_number(self.name, "retries", spec.get("retries", 2), 0, 10, integer=True))
        max_mb = _number(self.name, "max_body_mb", spec.get("max_body_mb", settings.retrieve_max_body_mb), 0.001, 4096)
        self.max_bytes = int(max_mb * 1024 * 1024)

    # -- request -------------------------------------------------------------------------
    def request(self, query: str, k: int, flt: Any = None) -> tuple[str, str, dict[str, str], Any]:
        """Method, URL, headers and body of a search (``flt``, the search's filter: only a source that
        applies filters uses it)."""
        q = urllib.parse.quote(query, safe="")
        url = expand_env(self.url).replace("{query}", q).replace("{k}", str(k))
        headers = {key: expand_env(v) for key, v in self.headers.items()}
        body = fill_template(self.body, query, k) if self.body is not None else None
        if self.method == "POST" and body is None:
            body = {"query": query, "k": k}
        return self.method, url, headers, body

    async def _fetch(self, query: str, k: int, deadline: float | None, flt: Any = None) -> Any:
        method, url, headers, body = self.request(query, k, flt)
        return await self._parse(await self._call(method, url, headers, body, deadline))

    async def _call(self, method: str, url: str, headers: dict[str, str], body: Any, deadline: float | None) -> bytes:
        """One idempotent request with this source's retries (full-jitter backoff, Retry-After) within
        ``deadline``; the body read within the size cap."""
        import aiohttp

        session = await self.services.http()
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError
            timeout = aiohttp.ClientTimeout(total=left, connect=min(left, 5.0) if left else 5.0)
            try:
                async with self._request(session, method, url, body, headers, timeout) as resp:
                    if resp.status == 429 or resp.status >= 500:
                        raise SourceError(
                            f"HTTP {resp.status}",
                            transient=True,
                            retry_after=retry_after(resp.headers.get("Retry-After")),
                        )
                    if resp.status >= 400:
                        raise SourceError(f"HTTP {resp.status}")
                    return await self._read_capped(resp)
            except SourceError as exc:
                err = exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                err = SourceError(f"connection failed: {type(exc).__name__}", transient=True)
            except aiohttp.ClientResponseError as exc:
                err = SourceError(f"bad response: HTTP {exc.status}")
            except (aiohttp.InvalidURL, ValueError) as exc:  # yarl's message holds the URL: never show it
                err = SourceError(f"invalid url after expanding the source's template ({type(exc).__name__})")
            if not err.transient or attempt >= self.retries:
                if attempt:
                    raise SourceError(f"{err.reason} (after {attempt + 1} attempts)")
                raise err
            wait = backoff(attempt)
            if err.retry_after is not None:
                wait = max(wait, err.retry_after)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and wait >= left:
                raise SourceError(f"{err.reason}; retry in {wait:.1f}s would pass the deadline")
            attempt += 1
            await asyncio.sleep(wait)

    @contextlib.asynccontextmanager
    async def _request(
        self, session: Any, method: str, url: str, body: Any, headers: dict[str, str], timeout: Any
    ) -> AsyncIterator[Any]:
        """One request, following redirects by ``follow_redirects``: ``same-origin`` (the default)
        follows a redirect to the same scheme, host and port only; ``any`` follows others too but
        without the configured headers (they may carry API keys); ``none`` follows none."""
        from yarl import URL

        origin = URL(url).origin()
        for _ in range(5):
            resp = await session.request(
                method, url, json=body, headers=headers, timeout=timeout, allow_redirects=False
            )
            location = resp.headers.get("Location") if resp.status in (301, 302, 303, 307, 308) else None
            if location is None:
                try:
                    yield resp
                finally:
                    resp.release()
                return
            resp.release()
            target = URL(url).join(URL(location))
            same = target.origin() == origin
            if self.follow_redirects == "none" or (not same and self.follow_redirects != "any"):
                where = "the same origin" if same else f"another origin ({target.scheme}://{target.host})"
                raise SourceError(
                    f"HTTP {resp.status} redirect to {where} not followed (follow_redirects = "
                    f"{self.follow_redirects!r})"
                )
            if not same:
                headers = {}
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, body = "GET", None
            url = str(target)
        raise SourceError("too many redirects")

    async def _read_capped(self, resp: Any) -> bytes:
        length = resp.content_length
        if length is not None and length > self.max_bytes:
            raise SourceError(f"response body of {length} bytes is over the {self.max_bytes} byte cap")
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(65536):
            buf += chunk
            if len(buf) > self.max_bytes:
                raise SourceError(f"response body over the {self.max_bytes} byte cap")
        return bytes(buf)

    async def _parse(self, raw: bytes) -> Any:
        try:
            if len(raw) > BIG_JSON:
                return await runtime.run_blocking(json.loads, raw, stage="json")
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise SourceError("response is not valid JSON") from None

    # -- mapping -------------------------------------------------------------------------
    def to_hits(self, data: Any) -> list[Hit]:
        try:
            items = dotted(data, self.results_path)
        except (KeyError, TypeError):
            raise SourceError(f"response has no {self.results_path!r}") from None
        if not isinstance(items, list):
            raise SourceError(f"{self.results_path or 'response'!r} is not a list")
        hits: list[Hit] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            hit = self._hit(item)
            if hit is not None:
                hits.append(hit)
        if items and not hits:
            raise SourceError(f"no result has the text field {self.fields['text']!r}")
        return hits

    def _field(self, item: dict[str, Any], name: str) -> Any:
        try:
            return dotted(item, self.fields[name])
        except (KeyError, TypeError):
            return None

    def _hit(self, item: dict[str, Any]) -> Hit | None:
        text = self._field(item, "text")
        if not isinstance(text, str) or not text.strip():
            return None
        score = self._field(item, "score")
        try:
            score = float(score) if score is not None else 0.0
        except (TypeError, ValueError):
            score = 0.0
        url = self._field(item, "url")
        title = self._field(item, "title")
        return Hit(text=text, score=score, source=self.name, title=str(title or ""), url=str(url) if url else None)

    async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
        data = await self._fetch(ctx.query, ctx.k, deadline, ctx.filter)
        return self.to_hits(data)


RAG_MAX_K = 100  # `rag serve`'s default [serve] max_k


class RagSource(HttpSource):
    """Another ``rag serve``: POST /search with a bearer token; hits keep their paths and lines; a filter
    (``--path``, ``--type``, ``--since``) is sent along and applied by the other index."""

    kind = "rag"
    filters = True

    def __init__(self, spec: dict[str, Any], settings: Settings, services: Any) -> None:
        base = str(spec.get("url", "")).rstrip("/")
        full = {**spec, "url": f"{base}/search", "method": "POST", "results": "hits"}
        token = spec.get("token")
        if token:
            full["headers"] = {**(spec.get("headers") or {}), "Authorization": f"Bearer {token}"}
        full["body"] = {"query": "{query}", "k": "{k}", **({"mode": spec["mode"]} if "mode" in spec else {})}
        super().__init__(full, settings, services)

    def request(self, query: str, k: int, flt: Any = None) -> tuple[str, str, dict[str, str], Any]:
        """As many candidates a method as we take ourselves (``k``), so its standardised scores are on our
        footing, and all of them back (up to twice ``k``, within the usual 100 of a server), as a local
        index gives all of its own to fusion; the filter as /search takes it (``path``, ``type``, ``since``)."""
        method, url, headers, body = super().request(query, k)
        if isinstance(body, dict):
            # plain scores (no pseudo-relevance feedback): a cosine moved toward each index's own first results
            # is not comparable across indexes, and fusion pools the peers' cosines with ours
            body = {**body, "k": min(2 * k, RAG_MAX_K), "candidates": min(k, RAG_MAX_K), "feedback": False}
            if flt:
                body.update(
                    {
                        **({"path": list(flt.paths)} if flt.paths else {}),
                        **({"type": list(flt.types)} if flt.types else {}),
                        **({"since": flt.since} if flt.since is not None else {}),
                    }
                )
        return method, url, headers, body

    async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
        """The other index searched with the feedback the federated search shares (``ctx.vector``: one query
        vector for every index's dense search, so that its cosines and ours are to one vector; ``ctx.expansion``:
        one set of BM25 words), and no feedback of its own. Without a vector: its own plain embedding."""
        method, url, headers, body = self.request(ctx.query, ctx.k, ctx.filter)
        if isinstance(body, dict):
            if ctx.vector is not None:
                body = {**body, "vector": [round(float(x), 6) for x in ctx.vector], "vector_model": ctx.vector_model}
            if ctx.expansion is not None:
                body = {**body, "expansion": list(ctx.expansion[0]), "expansion_weight": ctx.expansion[1]}
            if ctx.collection is not None:
                body = {**body, "collection": collection_json(ctx.collection)}
        return self.to_hits(await self._parse(await self._call(method, url, headers, body, deadline)))

    async def first_passages(
        self, ctx: QueryContext, method: str, most: int, deadline: float | None
    ) -> list[tuple[float, Any]]:
        """The other index's best ``most`` passages of ``method`` by the plain query (``/search`` without
        feedback): ``(cosine, stored vector)`` for dense (``"vectors": true``), ``(BM25 score, text)`` for bm25:
        its votes in the federated search's shared feedback (FeedbackVoter); for bm25 its word counts as well
        (``"counts": true``) into ``ctx.counts``, for the collection statistics every index then scores with."""
        verb, url, headers, body = self.request(ctx.query, most, ctx.filter)
        if not isinstance(body, dict):
            return []
        body = {
            **body,
            "k": most,
            "candidates": most,
            "mode": method,
            "feedback": False,
            "vectors": method == "dense",
            "counts": method == "bm25",
        }
        data = await self._parse(await self._call(verb, url, headers, body, deadline))
        if method == "bm25" and isinstance(data, dict) and (counts := collection_from(data.get("collection"))):
            ctx.counts[self.name] = counts
        out: list[tuple[float, Any]] = []
        for item in (data.get("hits") or []) if isinstance(data, dict) else []:
            got, score = item.get("vector" if method == "dense" else "text"), item.get("score")
            if got and isinstance(score, int | float) and math.isfinite(score):
                out.append((float(score), got))
        return out

    async def document(self, path: str, start: int | None, end: int | None, deadline: float | None) -> dict[str, Any]:
        """What the other index holds of ``path`` (its ``GET /get``): ``{"path", "chunks"}``; SourceError
        when it does not hold it (HTTP 404) or cannot be asked."""
        params = {
            "path": path,
            **({"start_line": str(start)} if start else {}),
            **({"end_line": str(end)} if end else {}),
        }
        base = expand_env(self.url).rsplit("/search", 1)[0]
        headers = {key: expand_env(v) for key, v in self.headers.items()}
        raw = await self._call("GET", f"{base}/get?{urllib.parse.urlencode(params)}", headers, None, deadline)
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("chunks"), list):
            raise SourceError("unexpected answer to /get")
        return data

    def _hit(self, item: dict[str, Any]) -> Hit | None:
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            return None
        hit = Hit.from_dict(item, source=self.name, keep_extra=False)
        for key in ("source_scores", "standard_scores"):  # the other index's per-method scores: fusion
            per = item.get(key)  # pools them with ours
            if isinstance(per, dict):
                hit.extra[key] = {
                    str(m): float(v)
                    for m, v in per.items()
                    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                }
        return hit


register("http", HttpSource)
register("rag", RagSource)
