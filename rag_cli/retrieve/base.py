"""The Source protocol and its registry.

A source answers ``search(query, k, deadline)`` with hits, best first. It may
use a shared :class:`QueryContext` (the query embedding is computed once per
query and shared by every dense source). It raises
:class:`~rag_cli.errors.SourceError` (or anything else) to fail; the fan-out
turns failures and timeouts into visible degradations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError
from ..types import Hit

if TYPE_CHECKING:
    from ..config import Settings


class Retriever(Protocol):
    """What the answer pipeline uses of a retrieval: :class:`~rag_cli.retrieve.service.Retrieval` in this
    process, or :class:`~rag_cli.retrieve.client.ServerRetrieval` through a warm ``rag serve``."""

    fanout: Any  # the local fan-out (its sources), or None through a server, which searches
    reader: Any  # the local index's reader, or None
    embedder: Any  # the local embedding model, or None

    async def search(
        self,
        query: str,
        k: int | None = None,
        mode: str | None = None,
        timeout: float | None = None,
        *,
        filter: Any = None,
        documents: bool | None = None,
    ) -> Any: ...
    async def further(
        self, query: str, hits: list[Any], documents: int, *, mode: str | None = None, vector: Any = None
    ) -> list[Any]:
        """More passages of ``hits``' first ``documents`` documents for ``query`` (retrieve/within.py); [] where
        the index cannot give them (a remote source's pages)."""
        ...

    async def prepare(self, mode: str | None = None) -> None: ...
    async def http(self) -> Any: ...
    def sentence_embedder(self) -> Callable[[Any], Any] | None:
        """Texts -> unit vectors with the query encoder (this process's loaded model, or a server's /embed),
        for evidence and verification; None when neither is at hand (they then use words only)."""
        ...


@dataclass
class QueryContext:
    """Per-query shared state: the text, and lazily computed, shared work (the embedding)."""

    query: str
    k: int
    filter: Any = None  # a retrieve.filters.Filter narrowing the local index, or None
    # this query's own stage times in ms ("embed": how long its query vector took, batched or cached), which
    # the search result reports: process-wide samples would mix concurrent requests up
    timings: dict[str, float] = field(default_factory=dict)
    # what a source learnt that fusion's score completion must reuse: "dense_vector" (the vector the dense
    # search finally used), "bm25_expansion" ((words, weight) added to the BM25 query); see retrieve/feedback.py
    notes: dict[str, Any] = field(default_factory=dict)
    feedback: bool = True  # pseudo-relevance feedback allowed
    # the dense search's query vector when it is given, used as it is (no feedback of its own): one moved by
    # a feedback every index of a federated search shares, so that their cosines pool fairly
    vector: Any = None
    vector_model: str = ""  # the model and dimension of ``vector`` ("MODEL/DIM"), for a peer to check
    expansion: tuple[list[str], float] | None = None  # BM25's feedback words and weight when given (shared)
    # a federated search's collection statistics (store/base.Collection): every index scores BM25 with their
    # idf, so that BM25 scores pool across indexes; ``counts``: each index's share, by source name, gathered
    # with the first passages of a federated search (BM25's voters)
    collection: tuple[int, dict[str, int]] | None = None
    counts: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)

    def shared(self, key: str, factory: Callable[[], Any]) -> asyncio.Task[Any]:
        """One task per ``key`` for this query, created by the first caller."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(factory())
            self._tasks[key] = task
        return task

    def cancel(self) -> None:
        for t in self._tasks.values():
            t.cancel()


@runtime_checkable
class Source(Protocol):
    """A retrieval source. ``filters``: it applies ``ctx.filter`` (``--path``, ``--type``, ``--since``); a source
    that cannot is left out of a filtered search."""

    name: str
    kind: str
    weight: float
    timeout: float | None
    filters: bool

    async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]: ...


@runtime_checkable
class FeedbackVoter(Protocol):
    """A source whose first results vote in the pseudo-relevance feedback every index of a federated search
    shares (the local dense and BM25 searches, a ``rag`` peer): its best ``most`` passages of ``method`` by the
    plain query, as ``(score, stored vector)`` for ``"dense"`` and ``(score, text)`` for ``"bm25"``."""

    async def first_passages(
        self, ctx: QueryContext, method: str, most: int, deadline: float | None
    ) -> list[tuple[float, Any]]: ...


@runtime_checkable
class FeedbackLeader(FeedbackVoter, Protocol):
    """A local method in a federated search: it turns every index's first passages (``feedback_docs`` each)
    into the one feedback all of them search with, ``ctx.vector`` (and ``ctx.vector_model``) for dense,
    ``ctx.expansion`` for BM25."""

    feedback_docs: int

    async def share_feedback(self, ctx: QueryContext, votes: list[list[tuple[float, Any]]]) -> None: ...


SourceFactory = Callable[[dict[str, Any], "Settings", Any], Source]
_REGISTRY: dict[str, SourceFactory] = {}


def register(kind: str, factory: SourceFactory) -> None:
    """Register a source type usable as ``type = KIND`` in ``[[sources]]``."""
    _REGISTRY[kind] = factory


def create(spec: dict[str, Any], settings: Settings, services: Any) -> Source:
    from . import remote  # noqa: F401  (registers http and rag)

    kind = spec.get("type", "http")
    factory = _REGISTRY.get(kind)
    if factory is None:
        raise ConfigError(
            f"source {spec.get('name', '?')!r}: unknown type {kind!r} (known: {', '.join(sorted(_REGISTRY))})"
        )
    return factory(spec, settings, services)
