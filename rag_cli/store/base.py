"""The store protocol: what indexing writes through and retrieval reads through, and the registry of stores.

Two stores register here like plugins would: ``local`` (FAISS + SQLite under ``RAG_HOME``, the default)
and ``postgresql`` (a shared PostgreSQL with pgvector, ``[store] url`` / ``--store`` / ``RAG_STORE_URL``;
see :mod:`rag_cli.store.pg`). ``settings.store_url`` picks one by its scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self

from ..errors import ConfigError

BM25_K1 = 1.2
BM25_B = 0.75


def bm25_idf(rows: int, holding: int) -> float:
    """The idf every store's BM25 gives a term held by ``holding`` of ``rows`` chunks: Lucene's (and bm25s's)
    ``ln(1 + (N - n + 0.5) / (n + 0.5))``, always positive. FTS5's own ``ln((N - n + 0.5) / (n + 0.5))`` is
    clamped to 1e-6 for a term in over half the chunks, so a common but wanted word ("commit" in a Git
    manual) counted for nothing: on gitdocs nDCG@10 0.717 -> 0.745 (bench/bm25_variants.py)."""
    import math

    return math.log(1.0 + (rows - holding + 0.5) / (holding + 0.5))


def fts5_idf(rows: int, holding: int) -> float:
    """The idf SQLite's FTS5 ``bm25()`` uses (fts5_aux.c), which the FTS5 path rescales to :func:`bm25_idf`."""
    import math

    idf = math.log((rows - holding + 0.5) / (holding + 0.5))
    return idf if idf > 0.0 else 1e-6


if TYPE_CHECKING:
    from ..config import Settings
    from ..types import Chunk, Hit


# a federated search's collection statistics (retrieve/fanout.py): the chunks of all its indexes, and per query
# word (store/rows.query_words) the chunks holding it, each summed over the indexes. A store given them scores
# those words with their idf (:func:`word_idf`) instead of its own, so BM25 scores of several indexes compare
# as if they were one; a word they do not count keeps the store's own idf
Collection = tuple[int, dict[str, int]]


def collection_idf(word: str, collection: Collection | None) -> float | None:
    """The idf ``collection`` gives ``word``, or None when it does not count the word (or holds no chunk)."""
    if collection is None or collection[0] <= 0 or word not in collection[1]:
        return None
    return bm25_idf(collection[0], min(collection[1][word], collection[0]))


def word_idf(word: str, rows: int, holding: int, collection: Collection | None = None) -> float:
    """The idf BM25 gives ``word``, held by ``holding`` of the ``rows`` chunks of this index: the
    ``collection``'s when it counts the word, else this index's own (:func:`bm25_idf`)."""
    given = collection_idf(word, collection)
    return bm25_idf(rows, holding) if given is None else given


# words added to a BM25 query with their weight (pseudo-relevance feedback, retrieve/feedback.py): the score is
# BM25(query) + weight * BM25(words), each word scored as the query's are
Expansion = tuple[Sequence[str], float]


class Reader(Protocol):
    """Read side of one index (thread-safe; blocking calls run on the runtime pool)."""

    generation: int
    count: int
    manifest: dict[str, Any]
    keyword: str  # what answers BM25 when it is not the store's default ("postgresql"; "" for the local store)
    bm25_memory_error: str  # why BM25's postings could not be held in memory ("": they were, or were not asked)

    def refresh(self) -> bool: ...
    def refresh_due(self, interval: float = 0.5) -> bool: ...
    def maybe_refresh(self, interval: float = 0.5) -> bool: ...
    def snapshot(self) -> Any: ...
    def allowed(self, flt: Any) -> Any: ...
    def dense(self, query_vec: Any, k: int, allowed: Any = None) -> list[tuple[int, float]]: ...
    def bm25(
        self,
        query: str,
        k: int,
        weights: tuple[float, float, float] = ...,
        allowed: Any = None,
        expansion: Expansion | None = None,
        collection: Collection | None = None,
    ) -> list[tuple[int, float]]: ...
    def scores_for(
        self,
        ids: list[int],
        query_vec: Any,
        query: str,
        weights: tuple[float, float, float] = ...,
        expansion: Expansion | None = None,
        collection: Collection | None = None,
    ) -> dict[int, dict[str, float]]: ...
    def vectors(self, ids: list[int]) -> dict[int, Any]: ...
    def unknown_words(self, words: list[str]) -> list[str]: ...
    def chunks_holding(self, words: list[str], most: int) -> list[int]: ...
    def chunks(self, ids: list[int]) -> dict[int, dict[str, Any]]: ...
    def hits(self, scored: list[tuple[int, float]], source: str) -> list[Hit]: ...
    def document(
        self, path: str, start_line: int | None = None, end_line: int | None = None
    ) -> list[dict[str, Any]]: ...
    def documents(self, limit: int = 1000) -> list[dict[str, Any]]: ...
    def stats(self) -> dict[str, Any]: ...
    def bm25_memory(self, weights: tuple[float, float, float]) -> Any: ...  # start loading postings (long-lived)
    def bm25_memory_bytes(self) -> int: ...
    def close(self) -> None: ...


def word_counts(reader: Reader, query: str) -> Collection:
    """This index's share of a :data:`Collection` for ``query``: its chunks, and per query word the chunks
    holding it (as its BM25 matches the word)."""
    from .rows import query_words

    words = query_words(query)
    return reader.count, dict(zip(words, reader.chunks_holding(words, max(reader.count, 1)), strict=True))


def summed(parts: Sequence[Collection]) -> Collection | None:
    """The :data:`Collection` of several indexes from each one's :func:`word_counts` (a word one of them did not
    count is left out: its idf stays each index's own); None without parts."""
    if not parts:
        return None
    common = set(parts[0][1]).intersection(*(p[1] for p in parts[1:]))
    return sum(p[0] for p in parts), {w: sum(p[1][w] for p in parts) for w in sorted(common)}


COLLECTION_WORDS = 64  # query words a Collection counts at most (store/rows.query_words keeps 64)


def collection_json(collection: Collection) -> dict[str, Any]:
    """A :data:`Collection` as a federated ``/search`` sends and answers it: ``{"rows": N, "words": {w: n}}``."""
    return {"rows": collection[0], "words": dict(collection[1])}


def collection_from(value: Any) -> Collection | None:
    """The :data:`Collection` of :func:`collection_json`'s form, or None when ``value`` is not one (counts are
    whole numbers from 0 to 2**53, at most :data:`COLLECTION_WORDS` words of 1 to 64 characters)."""

    def whole(n: Any) -> bool:
        return isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**53

    if not isinstance(value, dict) or not whole(value.get("rows")) or not isinstance(words := value.get("words"), dict):
        return None
    if len(words) > COLLECTION_WORDS or not all(
        isinstance(w, str) and 0 < len(w) <= 64 and whole(n) for w, n in words.items()
    ):
        return None
    return int(value["rows"]), {str(w): int(n) for w, n in words.items()}


class WriterRun:
    """The context manager of a writer that implements ``open()``, ``commit()`` and ``abort()`` (the local and
    PostgreSQL writers): entering opens, a clean exit commits, an exception aborts."""

    def open(self) -> Self:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, et: Any, exc: Any, tb: Any) -> None:
        if et is None:
            self.commit()
        else:
            self.abort()


class Writer(Protocol):
    """Write side of one index: ``open()``, the writes, then ``commit()`` or ``abort()`` (each ends the run);
    as a context manager, entering opens and a clean exit commits, an exception aborts."""

    generation: int

    def open(self) -> Writer: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...
    def __enter__(self) -> Writer: ...
    def __exit__(self, et: Any, exc: Any, tb: Any) -> None: ...
    def file_states(self) -> dict[str, Any]: ...
    def vectors_of_content(self, digest: str, dim: int) -> dict[str, Any]: ...
    def touch_file(self, state: Any, size: int, mtime_ns: int) -> None: ...
    def remove_file(self, path: str) -> int: ...
    def add_file(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        digest: str,
        kind: str,
        chunks: Sequence[Chunk],
        vecs: Any,
        *,
        append: bool = False,
    ) -> int: ...
    def checkpoint(self) -> None: ...


def kind(settings: Settings) -> str:
    url = settings.store_url
    if not url:
        return "local"
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ConfigError(f"unknown store URL scheme {scheme!r} (postgresql://... or none for the local store)")


def open_reader(settings: Settings, wanted: dict[str, Any] | None = None, *, bm25_memory_max: int = 0) -> Reader:
    """The index of ``settings`` opened for reading; ``wanted``: fingerprint parts it must match."""
    if kind(settings) == "postgresql":
        from .pg.reader import PgReader

        reader: Reader = PgReader(settings)
    else:
        from .local.reader import IndexReader

        reader = IndexReader(settings.index_dir, bm25_memory_max=bm25_memory_max)
    if wanted:
        from .layout import check_fingerprint

        stored = reader.manifest
        check_fingerprint(settings.index, stored, {**stored["fingerprint"], **wanted})
    reader.refresh()
    return reader


def open_writer(
    settings: Settings,
    fingerprint: dict[str, Any],
    *,
    dim: int,
    rebuild: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> Writer:
    if kind(settings) == "postgresql":
        from .pg.writer import PgWriter

        return PgWriter(settings, fingerprint, dim=dim, rebuild=rebuild)
    from .local.writer import IndexWriter

    return IndexWriter(
        settings.index_dir,
        fingerprint,
        dim=dim,
        rebuild=rebuild,
        lock_wait=settings.index_lock_wait,
        on_wait=on_wait,
        ann_threshold=settings.index_ann_threshold,
        ann_nprobe=settings.index_ann_nprobe,
    )


def exists(settings: Settings) -> bool:
    """Whether the index of ``settings`` has been built (and not dropped)."""
    if kind(settings) == "postgresql":
        from .pg.common import index_exists

        return index_exists(settings)
    return (settings.index_dir / "CURRENT").is_file()


def names(settings: Settings) -> list[str]:
    """The indexes of the store ``settings`` names."""
    if kind(settings) == "postgresql":
        from .pg.common import list_indexes as pg_list

        return pg_list(settings)
    from .layout import list_indexes

    return list_indexes(settings.home)
