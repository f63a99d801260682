"""Local sources over the index: dense (embedding + FAISS) and BM25 (SQLite FTS5).

Both do their blocking work on the runtime pool. The query embedding is
computed once per query and shared through the :class:`QueryContext`.
"""

from __future__ import annotations

import time
from typing import Any

from .. import runtime
from ..embed.base import Embedder
from ..embed.batcher import QueryBatcher
from ..store.reader import IndexReader
from ..types import Hit
from .base import QueryContext


class DenseSource:
    kind = "dense"
    filters = True  # ctx.filter narrows the search inside the index

    def __init__(self, reader: IndexReader, embedder: Embedder, *, name: str = "dense", weight: float = 1.0,
                 timeout: float | None = None, cache_size: int = 1024, parallel: int = 1) -> None:  # fmt: skip
        self.reader, self.embedder = reader, embedder
        self.batcher = QueryBatcher(embedder, cache_size=cache_size, parallel=parallel)
        self.name, self.weight, self.timeout = name, weight, timeout

    async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
        t0 = time.perf_counter()
        vec: Any = await ctx.shared("embedding", lambda: self.batcher.embed(ctx.query))
        ctx.timings.setdefault("embed", round((time.perf_counter() - t0) * 1000, 2))

        def run() -> list[Hit]:
            with self.reader.snapshot():
                return self.reader.hits(self.reader.dense(vec, ctx.k, self.reader.allowed(ctx.filter)), self.name)

        return await runtime.run_blocking(run, stage="faiss")


class BM25Source:
    kind = "bm25"
    filters = True

    def __init__(self, reader: IndexReader, *, name: str = "bm25", weight: float = 1.0, timeout: float | None = None,
                 columns: tuple[float, float, float] = (2.0, 2.0, 1.0)) -> None:  # fmt: skip
        self.reader = reader
        self.columns = columns
        self.name, self.weight, self.timeout = name, weight, timeout

    async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
        def run() -> list[Hit]:
            with self.reader.snapshot():
                allowed = self.reader.allowed(ctx.filter)
                return self.reader.hits(self.reader.bm25(ctx.query, ctx.k, self.columns, allowed), self.name)

        return await runtime.run_blocking(run, stage="bm25")
