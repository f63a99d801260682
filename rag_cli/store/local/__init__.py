"""The local store: FAISS vectors plus SQLite (files, chunks, FTS5), atomic generations, a lock.

``reader`` and ``writer`` (with ``reader_memory``/``bm25_memory``: BM25 over postings held in memory, and
``allowed``: a filter's chunks), ``schema`` (the SQLite tables), ``faiss_index`` (the vectors), ``lock``. What
it shares with ``store/pg`` (rows, layout, cache, the protocols) is one level up, in ``store/``."""

from .reader import IndexReader
from .writer import IndexWriter

__all__ = ["IndexReader", "IndexWriter"]
