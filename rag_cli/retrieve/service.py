"""Retrieval as a service object: the index reader, embedder, sources and fan-out of a process.

Built once per process (``rag search``, ``ask``, ``chat``, ``serve``) from settings;
models and the index load once, on the pool. One ``aiohttp.ClientSession`` (with
a connection pool and explicit timeouts) is shared by every remote source.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from .. import runtime
from ..config import Settings
from ..embed import base as embed_base
from ..errors import ConfigError, StoreUnavailable
from ..store import base as store_base
from ..types import Hit
from .base import QueryContext, Source, create
from .fanout import FanOut, SearchResult
from .local import BM25Source, DenseSource


class Retrieval:
    def __init__(
        self, settings: Settings, *, use_index: bool = True, concurrent_queries: int = 1, long_lived: bool = False
    ) -> None:
        """``concurrent_queries`` > 1 (``rag serve``): that many query embeddings run at once, each on
        its share of the cores, instead of one at a time on all of them. ``long_lived`` (serve, chat):
        BM25 is answered from memory once loaded (``[retrieve] bm25_memory_chunks``)."""
        self.settings = settings
        self.use_index = use_index
        self.concurrent_queries = max(1, concurrent_queries)
        self.bm25_memory_max = settings.retrieve_bm25_memory_chunks if long_lived else 0
        cols = settings.retrieve_bm25_columns
        self.bm25_columns = (float(cols[0]), float(cols[1]), float(cols[2]))  # BM25 column weights
        self.embedder: Any = None
        self.reader: store_base.Reader | None = None
        self.fanout: FanOut | None = None
        self._session: Any = None
        self._session_lock = asyncio.Lock()
        self._model_loaded = False
        self._sentences: Any = None  # embed/batcher.RememberedTexts over the query encoder, once it is loaded

    def sentence_embedder(self) -> Any:
        """Sentence embeddings with the query encoder (ONNX when cached: no PyTorch import) once the model is
        loaded, the last :data:`~rag_cli.embed.batcher.SENTENCES_KEPT` sentences' kept for the next answers;
        None before (evidence and verification then use words only)."""
        from ..embed.batcher import RememberedTexts, embed_queries

        embedder = self.embedder
        if embedder is None or not self._model_loaded:
            return None
        if self._sentences is None:
            self._sentences = RememberedTexts(lambda texts: embed_queries(embedder, texts))
        return self._sentences

    # -- shared HTTP session ---------------------------------------------------------
    async def http(self) -> Any:
        """The process's one aiohttp session (created on first use)."""
        async with self._session_lock:
            if self._session is None or self._session.closed:
                import aiohttp

                connector = aiohttp.TCPConnector(limit=100, limit_per_host=20, ttl_dns_cache=300)
                self._session = aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(total=None, connect=5.0, sock_connect=5.0, sock_read=30.0),
                    raise_for_status=False,
                )
            return self._session

    # -- lifecycle --------------------------------------------------------------------
    async def open(self) -> Retrieval:
        s = self.settings
        sources: list[Source] = []
        weights = s.retrieve_weights
        if self.use_index:
            self.embedder = embed_base.create(s)
            if self.concurrent_queries > 1:
                self.embedder.concurrent_queries(self.concurrent_queries)
            wanted = {"embedder": self.embedder.fingerprint()}
            self.reader = await runtime.run_blocking(
                functools.partial(store_base.open_reader, s, wanted, bm25_memory_max=self.bm25_memory_max),
                stage="open_index",
            )
            sources.append(
                DenseSource(
                    self.reader,
                    self.embedder,
                    weight=weights.get("dense", 1.0),
                    cache_size=s.embed_query_cache,
                    parallel=self.concurrent_queries,
                    feedback=s.retrieve_feedback_dense,
                )
            )
            sources.append(
                BM25Source(
                    self.reader,
                    weight=weights.get("bm25", 1.0),
                    columns=self.bm25_columns,
                    feedback=s.retrieve_feedback_bm25,
                )
            )
        names = {src.name for src in sources}
        for spec in s.sources:
            if not isinstance(spec, dict) or not spec.get("name"):
                raise ConfigError("every [[sources]] entry needs a name")
            if spec["name"] in names:
                raise ConfigError(f"two sources are named {spec['name']!r}")
            src = create(spec, s, self)
            names.add(src.name)
            sources.append(src)
        self.fanout = FanOut(
            sources,
            default_timeout=s.retrieve_timeout,
            rrf_k=s.retrieve_rrf_k,
            breaker_failures=s.retrieve_breaker_failures,
            breaker_cooldown=s.retrieve_breaker_cooldown,
            fusion=s.retrieve_fusion,
            complete=self._complete if self.reader is not None else None,
            collapse=s.retrieve_collapse_twins,
            document_bonus=s.retrieve_document_bonus,
        )
        return self

    async def _complete(self, ctx: QueryContext, hits: list[Hit]) -> None:
        """Give every local candidate both scores: the cosine of a BM25-only hit, the BM25 score of a
        dense-only hit (0.0 if it does not match), into ``extra["source_scores"]``; each by the query the
        method finally searched with (pseudo-relevance feedback: the moved vector, the expanded words)."""
        reader = self.reader
        assert reader is not None
        vec = ctx.notes.get("dense_vector")  # the dense search's (it ran: completion needs both lists)
        ids = sorted({h.chunk_id for h in hits if h.chunk_id is not None})
        expansion = ctx.notes.get("bm25_expansion")  # the words the BM25 search added, with their weight

        def run() -> dict[int, dict[str, float]]:
            with reader.snapshot():
                return reader.scores_for(ids, vec, ctx.query, self.bm25_columns, expansion, ctx.collection)

        scores = await runtime.run_blocking(run, stage="complete_scores")
        for h in hits:
            if h.chunk_id is not None:
                h.extra["source_scores"] = scores.get(h.chunk_id, {})

    async def warm(self) -> None:
        """Load the embedding model now and start loading BM25 postings into memory (``rag serve`` at start)."""
        if self.reader is not None and self.bm25_memory_max > 0:
            self.reader.bm25_memory(self.bm25_columns)  # in the background
        if self.embedder is not None:
            await runtime.run_blocking(self.embedder.embed_query, "warm up", stage="warm")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.reader is not None:
            self.reader.close()

    async def __aenter__(self) -> Retrieval:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- queries ----------------------------------------------------------------------
    async def search(
        self,
        query: str,
        k: int | None = None,
        mode: str | None = None,
        timeout: float | None = None,
        candidates: int | None = None,
        filter: Any = None,
        feedback: bool | None = None,
        documents: bool | None = None,
        vector: tuple[list[float], str] | None = None,
        expansion: tuple[list[str], float] | None = None,
        collection: tuple[int, dict[str, int]] | None = None,
    ) -> SearchResult:
        """``candidates``: taken from each method before fusion (default max(3k, 30)); ``filter``: a
        retrieve.filters.Filter for the local index; ``documents``: results in document order (None: as
        ``[retrieve] document_bonus`` says; False: the fused passage order, which an answer's evidence wants);
        ``vector``: ``(values, model)``, a federating index's query vector for the dense search, used when it
        is of this index's model (else the query is embedded here, without feedback: cosines that cannot be
        made comparable are at least plain); ``expansion``: ``(words, weight)``, a federating index's BM25
        feedback words, used as they are; ``collection``: a federating index's collection statistics, the idf its
        BM25 scores with (store/base.Collection)."""
        assert self.fanout is not None, "call open() first"
        mode = mode or self.settings.retrieve_mode
        await self.prepare(mode)
        given = None
        if vector is not None:
            given = self.own_vector(*vector)
            feedback = False if given is None else feedback
        return await self.fanout.search(
            query,
            k or self.settings.retrieve_k,
            mode,
            timeout,
            candidates,
            filter,
            feedback,
            documents,
            given,
            expansion,
            collection,
        )

    async def further(
        self, query: str, hits: list[Hit], documents: int, *, mode: str | None = None, vector: Any = None
    ) -> list[Hit]:
        """The further passages of ``hits``' first ``documents`` documents in this index (retrieve/within.py):
        their best passages for ``query`` that ``hits`` does not hold. ``vector``: the query's vector from the
        query encoder (embedded here when None), unless ``mode`` is bm25 (then BM25 alone ranks them)."""
        if self.reader is None or documents <= 0 or not hits:
            return []
        if (mode or self.settings.retrieve_mode) == "bm25":
            vector = None
        elif vector is None and (embed := self.sentence_embedder()) is not None:
            await self.load_model()
            vector = (await runtime.run_blocking(embed, [query], stage="embed"))[0]
        from .within import further_passages

        reader = self.reader

        def run() -> list[Hit]:
            with reader.snapshot():  # one generation for the document's rows and their scores
                return further_passages(reader, query, vector, hits, documents)

        return await runtime.run_blocking(run, stage="further")

    def own_vector(self, values: list[float], model: str) -> Any:
        """``values`` as this index's query vector (unit length, float32) if ``model`` is its model; else None."""
        import numpy as np

        if self.embedder is None:
            return None
        if model != embed_base.model_id(self.embedder) or len(values) != self.embedder.dim:
            return None
        vec = np.asarray(values, dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else None

    async def prepare(self, mode: str | None = None) -> None:
        """Pick up a newer index generation and load what ``mode`` needs (the model for dense)."""
        if self.reader is not None:
            if self.reader.refresh_due():
                try:
                    await runtime.run_blocking(self.reader.maybe_refresh, stage="refresh")
                except StoreUnavailable:
                    pass  # the database is away: the search's sources fail and say why (degraded, 503)
            if (mode or self.settings.retrieve_mode) != "bm25":
                # loading the model is start-up, not retrieval: it must not eat the dense deadline
                await self.load_model()

    async def load_model(self) -> None:
        if self.embedder is not None and not self._model_loaded:
            await runtime.run_blocking(self.embedder.load_for_queries, stage="load_model")
            self._model_loaded = True
