"""Retrieval: the Source protocol, local dense and BM25, remote HTTP sources, RRF fusion, the fan-out."""

from .base import QueryContext, Source, register
from .fanout import FanOut, SearchResult
from .fusion import rrf
from .service import Retrieval

__all__ = ["FanOut", "QueryContext", "Retrieval", "SearchResult", "Source", "register", "rrf"]
