"""The fan-out: every source of a query starts at once; each has its own deadline.

Total retrieval time is the slowest source (capped by its deadline), not the
sum. A source that fails, is late, or whose circuit breaker is open becomes a
:class:`~rag_cli.types.Degradation`; the others still answer. When every source
fails, :class:`~rag_cli.errors.AllSourcesFailed` is raised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import runtime
from ..config import SEARCH_MODES
from ..errors import AllSourcesFailed, SourceError, UsageError
from ..resilience import CircuitBreaker, redact_urls
from ..types import Degradation, Hit
from .base import FeedbackLeader, FeedbackVoter, QueryContext, Source
from .fusion import BY_SCORE, by_document, collapse_twins, dedupe, fuse

MODES = SEARCH_MODES
Completer = Callable[[QueryContext, list[Hit]], Awaitable[None]]

LOCAL_KINDS = ("dense", "bm25")  # the index's own sources
# with one collection's idf (a federated search's shared statistics) BM25 scores pool across indexes as cosines do
POOLED = frozenset(LOCAL_KINDS)


@dataclass
class SearchResult:
    query: str
    mode: str
    hits: list[Hit]
    degraded: list[Degradation] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)  # each source's best raw score, before fusion

    def to_dict(self) -> dict[str, Any]:
        hits = []
        for rank, h in enumerate(self.hits, start=1):
            d = h.to_dict()
            d["rank"] = rank
            d["location"] = h.location  # path:line, path#page=N or the url, as `rag search` prints it
            hits.append(d)
        return {
            "query": self.query,
            "mode": self.mode,
            "hits": hits,
            "degraded": [d.to_dict() for d in self.degraded],
            "best": self.best,
        }


@dataclass
class _Outcome:
    source: Source
    hits: list[Hit] | None
    reason: str | None
    ms: float


class FanOut:
    def __init__(
        self,
        sources: Sequence[Source],
        *,
        default_timeout: float = 2.0,
        rrf_k: int = 60,
        breaker_failures: int = 3,
        breaker_cooldown: float = 30.0,
        observer: Callable[[str, float, str | None], None] | None = None,
        fusion: str = "zscore",
        complete: Completer | None = None,
        collapse: bool = True,
        document_bonus: float = 0.0,
    ) -> None:
        """``complete`` (the local index): fills in each local candidate's score by the other method
        before fusion, so every candidate is judged on both. ``collapse``: near-identical passages of
        different files take one result slot (fusion.collapse_twins). ``document_bonus``: fused results in
        document order (fusion.by_document)."""
        self.sources = list(sources)
        self.collapse = collapse
        self.document_bonus = document_bonus
        self.fusion = fusion
        self.complete = complete
        self.observer = observer  # called with (source, ms, failure reason or None) after every source call
        self.default_timeout = default_timeout
        self.rrf_k = rrf_k
        self.breakers = {s.name: CircuitBreaker(breaker_failures, breaker_cooldown) for s in self.sources}

    def select(self, mode: str) -> list[Source]:
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode == "hybrid":
            return self.sources
        return [s for s in self.sources if s.kind == mode]

    async def _one(self, src: Source, ctx: QueryContext, timeout: float | None) -> _Outcome:
        t0 = time.perf_counter()
        breaker = self.breakers[src.name]
        if not breaker.allow():
            if self.observer is not None:
                self.observer(src.name, 0.0, "circuit open")
            return _Outcome(
                src, None, f"circuit open after repeated failures (retry in {breaker.retry_in():.0f}s)", 0.0
            )
        limit = self._limit(src, timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit if limit else None
        reason: str | None = None
        hits: list[Hit] | None = None
        counts = True  # against the source's breaker, which every client shares
        try:
            async with asyncio.timeout_at(deadline):
                hits = await src.search(ctx, deadline)
        except TimeoutError:
            reason = f"timed out after {limit:g}s"
            # a late local search says this query was costly (a filter) or the machine busy, not that the index
            # is down; a deadline or filter the client chose is the client's: neither opens the circuit for all
            counts = not (src.kind in LOCAL_KINDS or ctx.filter or self._client_deadline(src, timeout))
        except SourceError as exc:
            reason = redact_urls(exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a source bug must not take the query down
            reason = redact_urls(f"{type(exc).__name__}: {exc}")[:300]
        ms = (time.perf_counter() - t0) * 1000
        runtime.timings.record(f"source.{src.name}", ms)
        if self.observer is not None:
            self.observer(src.name, ms, reason)
        if reason is None:
            breaker.success()
        elif counts:
            breaker.failure()
        return _Outcome(src, hits, reason, ms)

    async def _shared_feedback(self, ctx: QueryContext, chosen: list[Source], timeout: float | None) -> None:
        """A federated search's one feedback: for each local method, the local index and every ``rag`` peer
        give their first passages by the plain query (all concurrently), and the method's feedback is made
        from all of them (one Rocchio vector, one set of RM3 words); every index then searches with it
        (``ctx.vector``, ``ctx.expansion``), so cosines pooled across indexes stay comparable and no index's own
        first results are favoured. A peer that fails or is late here only gives no votes (its search proper
        then tells); a local method that cannot answer shares nothing, and nobody's feedback runs for it."""
        leaders = [s for s in chosen if s.kind in LOCAL_KINDS and isinstance(s, FeedbackLeader)]
        peers = [
            s
            for s in chosen
            if s.kind == "rag" and isinstance(s, FeedbackVoter) and self.breakers[s.name].state == CircuitBreaker.CLOSED
        ]
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()

        async def votes(src: Source, method: str, most: int) -> list[tuple[float, Any]] | None:
            if not isinstance(src, FeedbackVoter):
                return None
            limit = self._limit(src, timeout)
            deadline = loop.time() + limit if limit else None
            try:
                async with asyncio.timeout_at(deadline):
                    return await src.first_passages(ctx, method, most, deadline)
            except Exception:  # late, failed or a bug: no votes (its search proper reports it)
                return None

        asked = [(lead, voter) for lead in leaders for voter in [lead, *peers]]
        got = await asyncio.gather(*(votes(voter, lead.kind, lead.feedback_docs) for lead, voter in asked))
        for lead in leaders:
            lists = [g for (ld, _), g in zip(asked, got, strict=True) if ld is lead]
            if lists[0] is not None:  # the local method's own first passages
                await lead.share_feedback(ctx, [g for g in lists if g])
        ctx.feedback = False  # what is shared is given; no index runs a feedback of its own
        ctx.timings["shared_feedback"] = round((time.perf_counter() - t0) * 1000, 2)

    def _limit(self, src: Source, timeout: float | None) -> float | None:
        """``src``'s time limit for one call: its own (or the default), within the client's ``timeout``."""
        limit = src.timeout if src.timeout is not None else self.default_timeout
        if timeout is not None:
            limit = timeout if src.timeout is None else min(limit, timeout)
        return limit if limit and limit > 0 else None

    def _client_deadline(self, src: Source, timeout: float | None) -> bool:
        own = src.timeout if src.timeout is not None else self.default_timeout
        return timeout is not None and timeout < own

    async def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        timeout: float | None = None,
        candidates: int | None = None,
        filter: Any = None,
        feedback: bool | None = None,
        documents: bool | None = None,
        vector: Any = None,
        expansion: tuple[list[str], float] | None = None,
        collection: tuple[int, dict[str, int]] | None = None,
    ) -> SearchResult:
        """Search every source of ``mode`` concurrently and fuse the results. ``filter`` (a
        retrieve.filters.Filter) narrows the local index's dense and BM25 searches and is sent to remote
        ``rag`` sources; other remote sources cannot apply it and are left out (a degradation says so).
        ``feedback`` False: no pseudo-relevance feedback. ``vector``, ``expansion``, ``collection``: the dense
        search's query vector, BM25's feedback words and the idf BM25 scores with (store/base.Collection), used
        as they are (a federating index's). With ``rag`` peers the feedback, dense and BM25, and the BM25
        statistics are one for all indexes (:meth:`_shared_feedback`: a round of first passages before the
        search proper)."""
        t0 = time.perf_counter()
        chosen = self.select(mode)
        unfiltered: list[Degradation] = []
        if filter:  # a source that cannot narrow its results would slip hits past the filter: left out, said so
            unfiltered = [
                Degradation(s.name, "cannot apply --path/--type/--since; left out of this search")
                for s in chosen
                if not s.filters
            ]
            chosen = [s for s in chosen if s.filters]
        if not chosen:
            raise AllSourcesFailed(f"no source available for mode {mode!r}" + (" with a filter" if filter else ""))
        fetch = candidates or (max(k * 3, 30) if len(chosen) > 1 else k)
        ctx = QueryContext(
            query=query,
            k=fetch,
            filter=filter or None,
            feedback=feedback is not False,
            vector=vector,
            expansion=expansion,
            collection=collection,
        )
        timings: dict[str, float] = {}
        try:
            if vector is None and expansion is None and collection is None and any(s.kind == "rag" for s in chosen):
                await self._shared_feedback(ctx, chosen, timeout)
            outcomes = await asyncio.gather(*(self._one(s, ctx, timeout) for s in chosen))
            local = {o.source.kind: o.hits for o in outcomes if o.reason is None and o.source.kind in LOCAL_KINDS}
            if self.complete is not None and self.fusion == "zscore" and len(local) == 2:
                t1 = time.perf_counter()
                try:
                    async with asyncio.timeout(self.default_timeout):
                        await self.complete(ctx, [h for hits in local.values() for h in hits or []])
                except (TimeoutError, SourceError):
                    pass  # fusion counts a score it does not know as the lowest of its pool
                timings["complete"] = round((time.perf_counter() - t1) * 1000, 3)
        finally:
            ctx.cancel()
        degraded = unfiltered + [Degradation(o.source.name, o.reason) for o in outcomes if o.reason is not None]
        ok = [o for o in outcomes if o.reason is None]
        timings.update({f"source.{o.source.name}": round(o.ms, 2) for o in outcomes})
        timings.update(ctx.timings)
        if not ok:
            detail = "; ".join(f"{d.source}: {d.reason}" for d in degraded)
            raise AllSourcesFailed(
                f"every retrieval source failed ({detail})",
                hint="check `rag search --timings` and rag.toml",
                degraded=degraded,
            )
        t1 = time.perf_counter()
        if len(ok) == 1:
            hits = dedupe(ok[0].hits or [])
        else:
            weights = {o.source.name: o.source.weight for o in ok}
            kinds = {o.source.name: o.source.kind for o in ok}
            # BM25 scores pool only when every index that answered scored with the collection's idf (it gave its
            # counts: a peer of an older release ignores the collection and scores with its own)
            shared = ctx.collection is not None and all(
                o.source.name in ctx.counts for o in ok if o.source.kind in ("rag", "bm25")
            )
            hits = fuse(
                {o.source.name: o.hits or [] for o in ok},
                kinds,
                weights,
                k=self.rrf_k,
                limit=None,
                method=self.fusion,
                pooled=POOLED if shared else BY_SCORE,
            )
        # document order ranks the fused candidates (bench/fusion.py); otherwise only the first k are needed
        ordered = len(ok) > 1 and documents is not False and self.document_bonus > 0
        if ordered:  # the pool's passages rank their documents; the rest of the candidates add documents
            hits = collapse_twins(hits) if self.collapse else hits
            hits = by_document(hits, self.document_bonus, pool=max(fetch, k))[:k]
        else:
            hits = collapse_twins(hits, k) if self.collapse else hits[:k]
        timings["fuse"] = round((time.perf_counter() - t1) * 1000, 3)
        timings["total"] = round((time.perf_counter() - t0) * 1000, 2)
        runtime.timings.record("retrieve", timings["total"])
        best = {o.source.name: round(max(h.score for h in o.hits), 6) for o in ok if o.hits}
        return SearchResult(query=query, mode=mode, hits=hits, degraded=degraded, timings=timings, best=best)
