"""The in-memory BM25 postings of a local index's reader (``rag serve`` and ``rag chat``): loaded in the
background for the newest generation, used while they match the generation a read is pinned to, FTS5
answering meanwhile and for any query word FTS5 splits into a phrase."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import layout
from . import schema
from .bm25_memory import MemoryBM25, QueryTokenizer


class MemoryPostings:
    """Mixed into :class:`~rag_cli.store.local.reader.IndexReader`, whose state it reads."""

    bm25_memory_max: int
    bm25_memory_error: str
    generation: int
    count: int
    data_dir: Path
    _local: threading.local
    _lock: threading.Lock
    _memory: tuple[Path, MemoryBM25] | None
    _memory_job: tuple[Path, int, tuple[float, float, float]] | None
    _tokenizer: QueryTokenizer | None

    if TYPE_CHECKING:  # the reader's

        def _meta(self, conn: sqlite3.Connection | None = None) -> tuple[int, int]: ...

    def _memory_phrases(self, words: list[str], w: tuple[float, float, float]) -> tuple[MemoryBM25, list[Any]] | None:
        """The in-memory postings and the query's FTS5 terms, or None: FTS5 answers (no postings loaded, or a
        word FTS5 splits into a phrase)."""
        memory = self.bm25_memory(w)
        if memory is None:
            return None
        assert self._tokenizer is not None
        phrases = [self._tokenizer.terms(word) for word in words]
        return (memory, phrases) if all(len(p) == 1 for p in phrases) else None

    def bm25_memory(self, weights: tuple[float, float, float]) -> MemoryBM25 | None:
        """The in-memory postings of this read's generation, or None: FTS5 answers, and a background
        load of the newest generation starts unless one ran for it (no I/O here: safe on the event loop)."""
        if self.bm25_memory_max <= 0:
            return None
        pinned = getattr(self._local, "pinned_gen", None)
        gen = self.generation if pinned is None else pinned
        held = self._memory
        if held is not None and held[0] == self.data_dir and held[1].generation == gen and held[1].weights == weights:
            return held[1]
        if 0 < self.count <= self.bm25_memory_max and gen == self.generation:
            job = (self.data_dir, gen, weights)
            with self._lock:
                if self._memory_job == job:
                    return None  # being built (or it failed for this generation)
                self._memory_job = job
            threading.Thread(target=self._load_quietly, args=(weights,), name="rag-bm25-load", daemon=True).start()
        return None

    def _load_quietly(self, weights: tuple[float, float, float]) -> None:
        try:
            self.load_bm25_memory(weights)
        except Exception as exc:  # FTS5 keeps answering; the next generation tries again
            self.bm25_memory_error = f"{type(exc).__name__}: {exc}"

    def load_bm25_memory(self, weights: tuple[float, float, float]) -> MemoryBM25 | None:
        """Read the postings of the newest generation into memory now; None if the index is over the limit."""
        data_dir = self.data_dir
        if self._tokenizer is None:
            self._tokenizer = QueryTokenizer()
        conn = schema.connect(data_dir / layout.DB)
        try:
            conn.execute("BEGIN")
            gen, count = self._meta(conn)
            memory = MemoryBM25(conn, gen, weights) if 0 < count <= self.bm25_memory_max else None
            conn.execute("COMMIT")
        finally:
            conn.close()
        if memory is not None:
            with self._lock:
                held = self._memory
                if data_dir == self.data_dir and (held is None or held[0] != data_dir or held[1].generation <= gen):
                    self._memory = (data_dir, memory)
        return memory

    def bm25_memory_bytes(self) -> int:
        held = self._memory
        return held[1].nbytes if held is not None else 0
