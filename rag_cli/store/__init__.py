"""The local store: FAISS vectors plus SQLite (files, chunks, FTS5), atomic generations, a lock.

The names below load on first use: importing one module of the package (``store.base``, ``store.layout``)
does not load the local reader and writer."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .layout import list_indexes
    from .local import IndexReader, IndexWriter

_WHERE = {"list_indexes": "layout", "IndexReader": "local", "IndexWriter": "local"}
__all__ = ["IndexReader", "IndexWriter", "list_indexes"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
