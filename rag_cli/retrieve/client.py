"""The warm path: search through a running ``rag serve`` instead of loading models in this process.

``server`` (``--server URL``, env ``RAG_SERVER``) chooses: a URL uses that server; ``auto`` (the
default) uses the server that ``rag serve`` registered for this index under ``RAG_HOME/run``
(a file with its URL and pid, removed when it stops); ``off`` never uses one. When the server
is not reachable, or serves another index, ``rag search``/``ask``/``chat`` fall back to
in-process retrieval (with a note on stderr if the server was asked for explicitly).

:class:`ServerRetrieval` has the interface of :class:`~.service.Retrieval` that the answer
pipeline uses: ``search``, ``further``, ``prepare``, ``http``. When the server's reader settings are this
process's (:meth:`~rag_cli.config.Settings.reader_key`), ``rag ask`` and ``rag chat`` send it the
whole question (:meth:`ServerRetrieval.ask`): its model is loaded and warm.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import AllSourcesFailed, RagError
from ..types import Degradation, Hit
from .fanout import SearchResult


class ServerUnavailable(Exception):
    pass


def _run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def register_server(settings: Settings, url: str, token: str = "") -> Path:
    """Called by ``rag serve`` once it listens: lets ``server = auto`` clients find it. The file is
    the user's own (mode 0600, in a 0700 folder): it carries the server's token, so that local
    clients of the same user can use a server started with ``--token``."""
    from ..store.layout import atomic_write

    run = _run_dir(settings)
    run.mkdir(parents=True, exist_ok=True)
    os.chmod(run, 0o700)
    path = run / f"serve-{settings.index}-{os.getpid()}.json"
    old = os.umask(0o077)
    try:
        body = {"url": url, "pid": os.getpid(), "index": settings.index, **({"token": token} if token else {})}
        atomic_write(path, json.dumps(body).encode())
    finally:
        os.umask(old)
    return path


def registered_token(settings: Settings, url: str) -> str:
    """The token a server registered for ``url`` (empty if none, or the file is not only ours)."""
    for path in _run_dir(settings).glob(f"serve-{settings.index}-*.json"):
        try:
            st = path.stat()
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                continue
            info = json.loads(path.read_text())
            if str(info.get("url", "")).rstrip("/") == url.rstrip("/"):
                return str(info.get("token") or "")
        except (OSError, ValueError, AttributeError):
            continue
    return ""


def discover(settings: Settings) -> str | None:
    """The URL of the newest live ``rag serve`` registered for this index, if any (stale files are removed)."""
    found = []
    for path in _run_dir(settings).glob(f"serve-{settings.index}-*.json"):
        try:
            info = json.loads(path.read_text())
            pid, url = int(info["pid"]), str(info["url"])
            if info.get("index") != settings.index:
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass  # alive, another user's
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append((path.stat().st_mtime, url))
    return max(found)[1] if found else None


EMBED_BATCH = 256  # texts per /embed request (the server takes up to 512)


def _fit(texts: list[str], room: int, most: int) -> list[list[str]]:
    """``texts`` in batches whose JSON fits ``room`` bytes, at most ``most`` each; a text too long for a
    request of its own is cut (the encoder reads only its first 256 tokens anyway)."""
    batches: list[list[str]] = [[]]
    used = 0
    for text in texts:
        size = len(json.dumps(text)) + 2
        while size > room and len(text) > 16:
            text = text[: len(text) * 3 // 4]
            size = len(json.dumps(text)) + 2
        if batches[-1] and (used + size > room or len(batches[-1]) >= most):
            batches.append([])
            used = 0
        batches[-1].append(text)
        used += size
    return [b for b in batches if b]


def _connection(url: str, timeout: float) -> tuple[Any, str]:
    """A stdlib HTTP(S) connection to a server at ``url`` (not yet connected) and the path its routes hang
    under: importing http.client costs nothing, where aiohttp costs ~130 ms of a ~0.4 s warm `rag search`."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    return cls(u.hostname or "127.0.0.1", u.port, timeout=timeout), u.path.rstrip("/")


def _request(url: str, method: str, path: str, body: Any, headers: dict[str, str], timeout: float) -> tuple[int, Any]:
    """One blocking HTTP exchange with the stdlib client (on the pool). Returns (status, parsed JSON, or None
    for an error that is not JSON)."""
    conn, base = _connection(url, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {**headers, **({"Content-Type": "application/json"} if data is not None else {})}
        conn.request(method, base + path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read(64 * 1024 * 1024 + 1)
        if len(raw) > 64 * 1024 * 1024:
            raise ValueError("answer over 64 MiB")
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            if resp.status < 400:
                raise
            return resp.status, None  # an error page that is not JSON (a route this server does not have)
    finally:
        conn.close()


class ServerRetrieval:
    """Retrieval answered by a running ``rag serve`` over HTTP, with timeouts."""

    reader = None
    embedder = None
    fanout = None
    answers = False  # the server answers whole questions for us (set by open)

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.can_embed = False
        self._sentences: Any = None  # embed/batcher.RememberedTexts over /embed
        self.max_body = 64 * 1024
        self.url = url.rstrip("/")
        self._session: Any = None
        token = settings.serve_token or registered_token(settings, self.url)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def http(self) -> Any:
        """An aiohttp session for the LLM backends of `rag ask` (made on first use)."""
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=5.0, sock_connect=5.0, sock_read=30.0)
            )
        return self._session

    async def _call(self, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
        from .. import runtime

        return await runtime.run_blocking(_request, self.url, method, path, body, self._headers, timeout)

    async def open(self) -> ServerRetrieval:
        try:
            status, info = await self._call("GET", "/healthz", None, self.settings.server_connect_timeout)
        except (OSError, ValueError) as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        if status != 200 or not isinstance(info, dict) or info.get("status") != "ok":
            raise ServerUnavailable("unexpected /healthz answer")
        self.can_embed = bool(info.get("embed"))  # a server before /embed: evidence and verification use words
        self.max_body = int(info.get("max_body_kb") or 64) * 1024
        served = info.get("indexes") or {info.get("index"): info}
        if self.settings.index not in served:
            raise ServerUnavailable(f"it serves index {info.get('index')!r}, not {self.settings.index!r}")
        # it answers whole questions for us when it would give the answer we would (see Settings.reader_key)
        self.answers = served[self.settings.index].get("reader") == self.settings.reader_key()
        if info.get("auth"):
            if not self._headers:
                raise ServerUnavailable("it needs a token: set RAG_SERVE_TOKEN to use it")
            try:  # /metrics needs the token too: a wrong one is found here, not in the middle of a search
                status, _ = await self._call("GET", "/metrics", None, self.settings.server_connect_timeout)
            except ValueError:  # a 200 carries Prometheus text, not JSON
                status = 200
            except OSError as exc:
                raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from None
            if status == 401:
                raise ServerUnavailable("it refused the token (check RAG_SERVE_TOKEN)")
        return self

    async def ask(
        self,
        question: str,
        *,
        query: str | None = None,
        k: int | None = None,
        mode: str | None = None,
        llm: str | None = None,
        filter: Any = None,
    ) -> AsyncGenerator[Any, None]:
        """The answer's events from the server's ``/ask`` (SSE) as (kind, data), the `rag ask --jsonl` objects:
        the model stays loaded there and its prompt prefix cached. A declined or failed answer raises
        the error the in-process answer would. :class:`ServerUnavailable` before the first event means
        nothing was shown and the caller may answer in-process; closing the iterator closes the
        connection, which stops the server's model."""
        body: dict[str, Any] = {
            "question": question,
            "index": self.settings.index,
            **(filter.to_dict() if filter else {}),
        }
        for key, value in (("query", query), ("k", k), ("mode", mode), ("llm", llm)):
            if value is not None:
                body[key] = value
        import http.client

        from .. import runtime

        stream = _EventStream(self.url, body, self._headers, self.settings)
        try:
            try:
                await runtime.run_blocking(stream.open)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                raise ServerUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
            try:
                parse = _SseParser(_EventStream.MAX_LINE)
                while chunk := await runtime.run_blocking(stream.read):
                    for kind, data in parse.feed(chunk):
                        yield _checked(kind, data)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                raise RagError(
                    f"rag serve at {self.url} stopped mid-answer: {type(exc).__name__}: {exc}",
                    hint="ask again, or use --server off",
                ) from None
        finally:
            stream.close()

    def sentence_embedder(self) -> Any:
        """The server's query encoder through /embed (the vectors the in-process path computes), or None for
        a server without /embed."""
        if not self.can_embed:
            return None
        if self._sentences is None:  # a chat's follow-ups retrieve the same passages again: kept, not re-sent
            from ..embed.batcher import RememberedTexts

            self._sentences = RememberedTexts(self.embed_texts)
        return self._sentences

    def embed_texts(self, texts: list[str]) -> Any:
        """Unit vectors of ``texts`` from the server's query encoder (blocking: on the pool), the same the
        in-process path computes, so that evidence scores and verification agree between the two."""
        import numpy as np

        out: list[Any] = []
        for batch in _fit(list(texts), self.max_body - 1024, EMBED_BATCH):
            try:
                status, data = _request(
                    self.url,
                    "POST",
                    "/embed",
                    {"texts": batch, "index": self.settings.index},
                    self._headers,
                    self.settings.retrieve_timeout + 10.0,
                )
            except (OSError, ValueError) as exc:
                raise RagError(
                    f"rag serve at {self.url} failed: {type(exc).__name__}: {exc}", hint="stop it or use --server off"
                ) from None
            if status != 200 or not isinstance(data, dict) or not isinstance(data.get("vectors"), list):
                raise RagError(f"rag serve at {self.url} answered {status} to /embed")
            out.extend(data["vectors"])
        return np.asarray(out, dtype=np.float32)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def prepare(self, mode: str | None = None) -> None:
        return None

    async def further(
        self, query: str, hits: list[Hit], documents: int, *, mode: str | None = None, vector: Any = None
    ) -> list[Hit]:
        """The server index's further passages of ``hits``' first ``documents`` documents (``POST /further``; it
        embeds the query itself): the passages an in-process answer reads; [] when the server does not give them."""
        if documents <= 0 or not hits:
            return []
        body = {
            "query": query,
            "documents": documents,
            "mode": mode or self.settings.retrieve_mode,
            "index": self.settings.index,
            "hits": [further_ref(h) for h in hits],
        }
        try:
            status, data = await self._call("POST", "/further", body, self.settings.retrieve_timeout + 10.0)
        except (OSError, ValueError) as exc:
            raise RagError(
                f"rag serve at {self.url} failed: {type(exc).__name__}: {exc}", hint="stop it or use --server off"
            ) from None
        if status != 200:  # a server from before /further (404), busy (503) or with a smaller body limit (413):
            return []  # the answer reads the passages found, as it did before /further
        if not isinstance(data, dict) or not isinstance(data.get("hits"), list):
            raise RagError(f"rag serve at {self.url} sent an unexpected answer to /further")
        return [Hit.from_dict(h) for h in data["hits"] if isinstance(h, dict)]

    async def search(
        self,
        query: str,
        k: int | None = None,
        mode: str | None = None,
        timeout: float | None = None,
        filter: Any = None,
        documents: bool | None = None,
    ) -> SearchResult:
        s = self.settings
        per_source = timeout or s.retrieve_timeout
        body = {
            "query": query,
            "k": k or s.retrieve_k,
            "mode": mode or s.retrieve_mode,
            "timeout": per_source,
            "index": s.index,
            **(filter.to_dict() if filter else {}),
            **({"documents": documents} if documents is not None else {}),
        }
        try:
            status, data = await self._call("POST", "/search", body, per_source + 10.0)
        except (OSError, ValueError) as exc:
            raise RagError(
                f"rag serve at {self.url} failed: {type(exc).__name__}: {exc}", hint="stop it or use --server off"
            ) from None
        if not isinstance(data, dict):
            raise RagError(f"rag serve at {self.url} sent an unexpected answer")
        degraded = [Degradation(str(d.get("source")), str(d.get("reason"))) for d in data.get("degraded") or []]
        if status == 503 and "hits" in data:
            raise AllSourcesFailed(str(data.get("error") or "all sources failed"), degraded=degraded)
        if status == 503 and "gone" in str(data.get("error", "")):
            from ..errors import IndexNotFound

            raise IndexNotFound(f"{data.get('error')} (rag serve at {self.url})", hint="run `rag index PATH` again")
        if status != 200:
            raise RagError(f"rag serve at {self.url} answered {status}: {data.get('error', '')}")
        timings = {k: float(v) for k, v in (data.get("timings") or {}).items()}
        best = {str(k): float(v) for k, v in (data.get("best") or {}).items() if isinstance(v, int | float)}
        return SearchResult(
            data.get("query", query),
            data.get("mode", body["mode"]),
            [Hit.from_dict(h) for h in data.get("hits") or []],
            degraded,
            timings,
            best,
        )


def further_ref(hit: Hit) -> dict[str, Any]:
    """What ``/further`` needs of a passage already held (no text): which document and chunk it is, where."""
    return {
        "chunk_id": hit.chunk_id,
        "path": hit.path,
        "doc_id": hit.doc_id,
        "score": hit.score,
        "source": hit.source,
        "url": hit.url,
        "start_line": hit.start_line,
        "page": hit.page,
    }


class _EventStream:
    """One ``POST /ask`` read as server-sent events with the stdlib client, each blocking read on the pool:
    importing aiohttp would cost ~0.1 s of a warm answer's first words (its SSL contexts are made on import).
    ``close`` (from the loop, also mid-read) shuts the socket, which ends the server's answer."""

    MAX_LINE = 16 * 1024 * 1024  # one event's line (the last carries the whole answer)

    def __init__(self, url: str, body: dict[str, Any], headers: dict[str, str], settings: Settings) -> None:
        self.url = url
        self.body = json.dumps(body).encode()
        self.headers = {
            **headers,
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
        }
        self.connect_timeout = settings.server_connect_timeout
        self.read_timeout = settings.llm_first_token_timeout + 30
        self.conn: Any = None
        self.resp: Any = None

    def open(self) -> None:
        """Connect, send the question and read the answer's head (blocking); a refused one raises ValueError."""
        self.conn, base = _connection(self.url, self.connect_timeout)
        self.conn.connect()
        self.conn.sock.settimeout(self.read_timeout)
        self.conn.request("POST", base + "/ask", body=self.body, headers=self.headers)
        self.resp = self.conn.getresponse()
        kind = self.resp.getheader("Content-Type") or ""
        if self.resp.status != 200 or not kind.startswith("text/event-stream"):
            text = self.resp.read(300).decode("utf-8", "replace")
            raise ValueError(f"/ask answered {self.resp.status}: {text}")

    def read(self) -> bytes:
        """The next bytes of the answer as they come (blocking); empty at its end."""
        return bytes(self.resp.read1(64 * 1024))

    def close(self) -> None:
        import socket

        sock = self.conn.sock if self.conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read on the pool
        if self.conn is not None:
            self.conn.close()


class _SseParser:
    """Server-sent events from a byte stream fed in pieces: (event, JSON data) per complete event."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.pending = bytearray()  # the line not ended yet (grown in place: a long one comes in many reads)
        self.kind = "message"
        self.data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, dict[str, Any]]]:
        self.pending += chunk
        lines: list[bytes] = []
        if b"\n" in chunk:
            *lines, rest = bytes(self.pending).split(b"\n")
            self.pending = bytearray(rest)
        if len(self.pending) > self.max_line:
            raise ValueError(f"an event line over {self.max_line} bytes")
        out = []
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if not line:
                if self.data:
                    out.append((self.kind, json.loads("\n".join(self.data))))
                self.kind, self.data = "message", []
            elif line.startswith("event:"):
                self.kind = line[6:].strip()
            elif line.startswith("data:"):
                self.data.append(line[5:].lstrip(" "))
        return out


def _checked(kind: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One ``/ask`` event as (kind, data); a server's error, or a declined or failed answer, raised as the
    error the in-process answer raises (the CLI's exit codes 7, 8, 6)."""
    from ..errors import LLMError, NoRelevantPassages

    if kind == "error":
        raise RagError(f"rag serve: {data.get('message') or 'error'}")
    if kind == "done" and data.get("answer") is None and data.get("error"):
        code = data.get("exit_code")
        cls = {
            NoRelevantPassages.exit_code: NoRelevantPassages,
            LLMError.exit_code: LLMError,
            AllSourcesFailed.exit_code: AllSourcesFailed,
        }.get(code if isinstance(code, int) else -1, RagError)
        raise cls(str(data["error"]))
    return kind, {k: v for k, v in data.items() if k != "event"}


@contextlib.asynccontextmanager
async def open_retrieval(
    settings: Settings, note: Callable[[str], None] | None = None, *, long_lived: bool = False
) -> AsyncIterator[Any]:
    """A running server's retrieval when ``settings.server`` finds one, else in-process retrieval
    (``long_lived``: a process that answers many queries, see :class:`~.service.Retrieval`)."""
    choice = (settings.server or "off").strip()
    url = discover(settings) if choice == "auto" else None if choice in ("off", "none", "") else choice
    if url and settings.retrieve_k > settings.serve_max_k:
        # more than a server answers ([serve] max_k): the same search in-process, as with --server off
        if choice != "auto" and note is not None:
            note(
                f"-k {settings.retrieve_k} is more than a server answers ([serve] max_k {settings.serve_max_k}); "
                "searching in-process"
            )
        url = None
    if url:
        remote = ServerRetrieval(settings, url)
        try:
            await remote.open()
        except ServerUnavailable as exc:
            await remote.close()
            if (choice != "auto" or "token" in str(exc)) and note is not None:
                note(f"server {url} not usable ({exc}); searching in-process")
        else:
            try:
                yield remote
            finally:
                await remote.close()
            return
    from .service import Retrieval

    async with Retrieval(settings, long_lived=long_lived) as r:
        yield r
