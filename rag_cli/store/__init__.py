"""The local store: FAISS vectors plus SQLite (files, chunks, FTS5), atomic generations, a lock."""

from .layout import list_indexes
from .local import IndexReader, IndexWriter

__all__ = ["IndexReader", "IndexWriter", "list_indexes"]
