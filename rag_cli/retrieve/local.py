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
from ..store.base import Reader
from ..types import Hit
from .base import QueryContext
from .feedback import BM25_DOCS, DENSE_DOCS, expansion_terms, rocchio


class DenseSource:
    kind = "dense"
    filters = True  # ctx.filter narrows the search inside the index

    def __init__(self, reader: Reader, embedder: Embedder, *, name: str = "dense", weight: float = 1.0,
                 timeout: float | None = None, cache_size: int = 1024, parallel: int = 1,
                 feedback: float = 0.0) -> None:  # fmt: skip
        """``feedback``: Rocchio's beta (retrieve/feedback.py); 0 searches with the query vector alone."""
        self.reader, self.embedder = reader, embedder
        self.feedback = feedback
        self.batcher = QueryBatcher(embedder, cache_size=cache_size, parallel=parallel)
        self.name, self.weight, self.timeout = name, weight, timeout

    async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
        t0 = time.perf_counter()
        vec: Any = await ctx.shared("embedding", lambda: self.batcher.embed(ctx.query))
        ctx.timings.setdefault("embed", round((time.perf_counter() - t0) * 1000, 2))

        def run() -> tuple[list[Hit], Any]:
            with self.reader.snapshot():
                allowed = self.reader.allowed(ctx.filter)
                # feedback reads the same first passages whatever k is asked
                beta = self.feedback if ctx.feedback else 0.0
                scored = self.reader.dense(vec, max(ctx.k, DENSE_DOCS) if beta > 0 else ctx.k, allowed)
                used = vec
                if beta > 0 and scored:
                    top = self.reader.vectors([i for i, _ in scored[:DENSE_DOCS]])
                    used = rocchio(vec, list(top.values()), beta)
                    scored = self.reader.dense(used, ctx.k, allowed)
                return self.reader.hits(scored, self.name), used

        hits, used = await runtime.run_blocking(run, stage="faiss")
        ctx.notes["dense_vector"] = used
        return hits


class BM25Source:
    kind = "bm25"
    filters = True

    def __init__(self, reader: Reader, *, name: str = "bm25", weight: float = 1.0, timeout: float | None = None,
                 columns: tuple[float, float, float] = (2.0, 2.0, 1.0), feedback: float = 0.0) -> None:  # fmt: skip
        """``feedback``: the weight of RM3's expansion words (retrieve/feedback.py); 0: the query alone."""
        self.reader = reader
        self.feedback = feedback
        self.columns = columns
        self.name, self.weight, self.timeout = name, weight, timeout

    async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
        def run() -> tuple[list[Hit], list[str]]:
            with self.reader.snapshot():
                allowed = self.reader.allowed(ctx.filter)
                lam = self.feedback if ctx.feedback else 0.0
                first = max(ctx.k, BM25_DOCS) if lam > 0 else ctx.k  # the same voters whatever k is
                scored = self.reader.bm25(ctx.query, first, self.columns, allowed)
                words: list[str] = []
                if lam > 0 and scored:
                    scored, words = self._expanded(ctx, scored, allowed)
                scored = scored[: ctx.k]
                return self.reader.hits(scored, self.name), words

        hits, words = await runtime.run_blocking(run, stage="bm25")
        if words:
            ctx.notes["bm25_expansion"] = (words, self.feedback)
        return hits

    def _expanded(self, ctx: QueryContext, scored: list[tuple[int, float]],
                  allowed: Any) -> tuple[list[tuple[int, float]], list[str]]:  # fmt: skip
        """RM3: the first list's best passages pick words; the query searched again with them added at the
        feedback's weight (the store scores every chunk either matches), best ``ctx.k``."""
        top = scored[:BM25_DOCS]
        got = self.reader.chunks([i for i, _ in top])
        held = [(got[i]["text"], s) for i, s in top if i in got]
        words = expansion_terms(ctx.query, [t for t, _ in held], [s for _, s in held])
        if not words:
            return scored, []
        return self.reader.bm25(ctx.query, ctx.k, self.columns, allowed, (words, self.feedback)), words
