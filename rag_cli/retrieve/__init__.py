"""Retrieval: the Source protocol, local dense and BM25, remote HTTP sources, RRF fusion, the fan-out.

The names below load on first use: a client of a warm server (``rag ask`` through ``rag serve``) imports
``retrieve.client`` and pays for neither the local store nor the embedder."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import QueryContext, Source, register
    from .fanout import FanOut, SearchResult
    from .fusion import rrf
    from .service import Retrieval

_WHERE = {
    "QueryContext": "base",
    "Source": "base",
    "register": "base",
    "FanOut": "fanout",
    "SearchResult": "fanout",
    "rrf": "fusion",
    "Retrieval": "service",
}
__all__ = ["FanOut", "QueryContext", "Retrieval", "SearchResult", "Source", "register", "rrf"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
