"""Query embeddings for a busy process: an LRU cache and natural micro-batching.

Under concurrent load (``rag serve``) every search needs one query embedding.
:class:`QueryBatcher` runs up to ``parallel`` encode calls at once on the runtime pool (one
per core, each single-threaded: bench/serve_load.py measured that this costs less CPU per
query than one call on all cores); queries that arrive while all are busy wait and go
together in the next call, at most ``max_batch`` of them (no timer: a lone query is encoded
at once). A call saves pool hand-offs, not model work: queries differ in length, and padding
them to the longest one cost more CPU than one model run per query (the embedder runs them
one by one). Identical queries in flight share one computation, and recent vectors are kept
in a small LRU cache. The event loop only queues and resolves futures.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import runtime
from .base import Embedder

if TYPE_CHECKING:
    import numpy as np


SENTENCES_KEPT = 8192  # sentence vectors a process keeps (all-MiniLM-L6-v2: 384 floats, ~12.6 MB in all)


class RememberedTexts:
    """``embed`` (texts -> unit vectors, blocking) that keeps the vectors of the last ``size`` distinct texts it
    was given: the evidence sentences of an answer, scored again when a follow-up or another question retrieves
    the same passages (`rag chat`, a long-running `rag serve`). Thread-safe; each text is embedded once per
    call, new texts in one call; ``hits`` and ``misses`` count texts."""

    def __init__(self, embed: Any, size: int = SENTENCES_KEPT) -> None:
        import threading

        self.embed, self.size = embed, max(0, size)
        self._kept: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        wanted = list(dict.fromkeys(texts))
        with self._lock:
            got = {t: self._kept[t] for t in wanted if t in self._kept}
            for t in got:
                self._kept.move_to_end(t)
        new = [t for t in wanted if t not in got]
        if new:
            got.update(zip(new, self.embed(new), strict=True))
            with self._lock:
                for t in new:
                    self._kept[t] = got[t]
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        with self._lock:
            self.hits += len(wanted) - len(new)
            self.misses += len(new)
        return np.stack([got[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)


def embed_queries(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Several query vectors in one call when the embedder can batch them (blocking)."""
    many = getattr(embedder, "embed_queries", None)
    if callable(many):
        vecs: np.ndarray = many(texts)
        return vecs
    import numpy as np

    return np.stack([embedder.embed_query(t) for t in texts])


class QueryBatcher:
    def __init__(self, embedder: Embedder, *, max_batch: int = 4, cache_size: int = 1024, parallel: int = 1) -> None:
        self.embedder = embedder
        self.max_batch = max(1, max_batch)
        self.cache_size = max(0, cache_size)
        self.parallel = max(1, parallel)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._queue: list[str] = []
        self._workers: set[asyncio.Task[None]] = set()
        self.hits = 0

    async def embed(self, text: str) -> Any:
        vec = self._cache.get(text)
        if vec is not None:
            self._cache.move_to_end(text)
            self.hits += 1
            return vec
        fut = self._pending.get(text)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._pending[text] = fut
            self._queue.append(text)
            if len(self._workers) < self.parallel:
                task = asyncio.create_task(self._drain())
                self._workers.add(task)
                task.add_done_callback(self._workers.discard)
        # shield: one caller timing out must not cancel the others waiting on the same query
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                vecs = await runtime.run_blocking(embed_queries, self.embedder, batch, stage="embed")
            except Exception as exc:  # handed to every waiter of this batch
                for text in batch:
                    fut = self._pending.pop(text)
                    if not fut.done():
                        fut.set_exception(exc)
                        fut.exception()  # mark retrieved: a waiter that timed out is gone
                continue
            except BaseException:  # cancelled with the loop: nobody is left to answer
                for text in batch:
                    self._pending.pop(text).cancel()
                raise
            for text, vec in zip(batch, vecs, strict=True):
                self._remember(text, vec)
                fut = self._pending.pop(text)
                if not fut.done():
                    fut.set_result(vec)

    def _remember(self, text: str, vec: Any) -> None:
        if not self.cache_size:
            return
        self._cache[text] = vec
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
