"""Local sources over the index: dense (embedding + FAISS) and BM25 (SQLite FTS5).

Both do their blocking work on the runtime pool. The query embedding is
computed once per query and shared through the :class:`QueryContext`.
"""

from __future__ import annotations

import time
from typing import Any

from .. import runtime
from ..embed.base import Embedder, model_id
from ..embed.batcher import QueryBatcher
from ..store.base import Reader, summed, word_counts
from ..types import Hit
from .base import QueryContext
from .feedback import BM25_DOCS, DENSE_DOCS, expansion_terms, rocchio


class DenseSource:
    kind = "dense"
    filters = True  # ctx.filter narrows the search inside the index

    def __init__(
        self,
        reader: Reader,
        embedder: Embedder,
        *,
        name: str = "dense",
        weight: float = 1.0,
        timeout: float | None = None,
        cache_size: int = 1024,
        parallel: int = 1,
        feedback: float = 0.0,
    ) -> None:
        """``feedback``: Rocchio's beta (retrieve/feedback.py); 0 searches with the query vector alone."""
        self.reader, self.embedder = reader, embedder
        self.feedback = feedback
        self.batcher = QueryBatcher(embedder, cache_size=cache_size, parallel=parallel)
        self.name, self.weight, self.timeout = name, weight, timeout

    async def _query_vector(self, ctx: QueryContext) -> Any:
        t0 = time.perf_counter()
        vec = await ctx.shared("embedding", lambda: self.batcher.embed(ctx.query))
        ctx.timings.setdefault("embed", round((time.perf_counter() - t0) * 1000, 2))
        return vec

    feedback_docs = DENSE_DOCS

    async def first_passages(
        self, ctx: QueryContext, method: str, most: int, deadline: float | None
    ) -> list[tuple[float, Any]]:
        """The best ``most`` passages by the plain query vector, as ``(cosine, stored vector)`` (FeedbackVoter)."""
        vec = await self._query_vector(ctx)

        def run() -> list[tuple[float, Any]]:
            with self.reader.snapshot():
                scored = self.reader.dense(vec, most, self.reader.allowed(ctx.filter))
                stored = self.reader.vectors([i for i, _ in scored])
            return [(s, stored[i]) for i, s in scored if i in stored]

        return await runtime.run_blocking(run, stage="faiss")

    async def share_feedback(self, ctx: QueryContext, votes: list[list[tuple[float, Any]]]) -> None:
        """The query vector moved toward the best :data:`DENSE_DOCS` passages of every index's first ones
        (cosines of one model are comparable across indexes), as one index's feedback moves it toward its own:
        the vector all the indexes of a federated search use. The plain query vector when feedback is off."""
        vec = await self._query_vector(ctx)
        ctx.vector, ctx.vector_model = vec, model_id(self.embedder)
        if self.feedback > 0 and ctx.feedback:
            pooled = [v for vs in votes for v in vs if len(v[1]) == len(vec)]
            best = sorted(pooled, key=lambda v: -v[0])[:DENSE_DOCS]
            ctx.vector = rocchio(vec, [v for _, v in best], self.feedback)

    async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
        given = ctx.vector is not None  # shared by a federated search's indexes, moved by its feedback already
        vec: Any = ctx.vector if given else await self._query_vector(ctx)

        def run() -> tuple[list[Hit], Any]:
            with self.reader.snapshot():
                allowed = self.reader.allowed(ctx.filter)
                # feedback reads the same first passages whatever k is asked
                beta = self.feedback if ctx.feedback and not given else 0.0
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

    def __init__(
        self,
        reader: Reader,
        *,
        name: str = "bm25",
        weight: float = 1.0,
        timeout: float | None = None,
        columns: tuple[float, float, float] = (2.0, 2.0, 1.0),
        feedback: float = 0.0,
    ) -> None:
        """``feedback``: the weight of RM3's expansion words (retrieve/feedback.py); 0: the query alone."""
        self.reader = reader
        self.feedback = feedback
        self.columns = columns
        self.name, self.weight, self.timeout = name, weight, timeout

    feedback_docs = BM25_DOCS

    async def first_passages(
        self, ctx: QueryContext, method: str, most: int, deadline: float | None
    ) -> list[tuple[float, Any]]:
        """The best ``most`` passages by the plain query, as ``(BM25 score, text)`` (FeedbackVoter); this index's
        word counts into ``ctx.counts`` (store/base.word_counts)."""

        def run() -> tuple[list[tuple[float, Any]], Any]:
            with self.reader.snapshot():
                scored = self.reader.bm25(ctx.query, most, self.columns, self.reader.allowed(ctx.filter))
                got = self.reader.chunks([i for i, _ in scored])
                counts = word_counts(self.reader, ctx.query)
            return [(s, got[i]["text"]) for i, s in scored if i in got], counts

        votes, ctx.counts[self.name] = await runtime.run_blocking(run, stage="bm25")
        return votes

    async def share_feedback(self, ctx: QueryContext, votes: list[list[tuple[float, Any]]]) -> None:
        """The words all the indexes of a federated search add to their BM25 query, with their weight
        (``ctx.expansion``): RM3 over every index's first passages, each list's scores min-max normalised on
        its own (BM25 scores are each index's own scale), so the words come from all of them alike. And the
        collection statistics every index then scores BM25 with (``ctx.collection``: the word counts of the
        indexes that gave theirs, summed)."""
        ctx.collection = summed(list(ctx.counts.values()))
        if self.feedback <= 0 or not ctx.feedback:
            return
        texts: list[str] = []
        weights: list[float] = []
        for vs in votes:
            lo, hi = min((s for s, _ in vs), default=0.0), max((s for s, _ in vs), default=0.0)
            texts += [str(t) for _, t in vs]
            weights += [(s - lo) / ((hi - lo) or 1.0) for s, _ in vs]
        words = expansion_terms(ctx.query, texts, weights)
        ctx.expansion = (words, self.feedback) if words else None

    async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
        if ctx.expansion is not None:  # shared by a federated search's indexes
            return await self._search_expanded(ctx)

        def run() -> tuple[list[Hit], list[str]]:
            with self.reader.snapshot():
                allowed = self.reader.allowed(ctx.filter)
                lam = self.feedback if ctx.feedback else 0.0
                first = max(ctx.k, BM25_DOCS) if lam > 0 else ctx.k  # the same voters whatever k is
                scored = self.reader.bm25(ctx.query, first, self.columns, allowed, collection=ctx.collection)
                words: list[str] = []
                if lam > 0 and scored:
                    scored, words = self._expanded(ctx, scored, allowed)
                scored = scored[: ctx.k]
                return self.reader.hits(scored, self.name), words

        hits, words = await runtime.run_blocking(run, stage="bm25")
        if words:
            ctx.notes["bm25_expansion"] = (words, self.feedback)
        return hits

    async def _search_expanded(self, ctx: QueryContext) -> list[Hit]:
        """The query with the given words at the given weight (``ctx.expansion``), in one search."""
        words, weight = ctx.expansion or ([], 0.0)

        def run() -> list[Hit]:
            with self.reader.snapshot():
                allowed = self.reader.allowed(ctx.filter)
                scored = self.reader.bm25(
                    ctx.query, ctx.k, self.columns, allowed, (words, weight) if words else None, ctx.collection
                )
                return self.reader.hits(scored, self.name)

        hits = await runtime.run_blocking(run, stage="bm25")
        if words:
            ctx.notes["bm25_expansion"] = (words, weight)
        return hits

    def _expanded(
        self, ctx: QueryContext, scored: list[tuple[int, float]], allowed: Any
    ) -> tuple[list[tuple[int, float]], list[str]]:
        """RM3: the first list's best passages pick words; the query searched again with them added at the
        feedback's weight (the store scores every chunk either matches), best ``ctx.k``."""
        top = scored[:BM25_DOCS]
        got = self.reader.chunks([i for i, _ in top])
        held = [(got[i]["text"], s) for i, s in top if i in got]
        words = expansion_terms(ctx.query, [t for t, _ in held], [s for _, s in held])
        if not words:
            return scored, []
        return self.reader.bm25(ctx.query, ctx.k, self.columns, allowed, (words, self.feedback), ctx.collection), words
