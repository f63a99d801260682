"""A small bounded cache both stores keep per generation (allowed rows of a filter, statistics)."""

from __future__ import annotations

import threading
from typing import Any


class BoundedCache:
    """The last ``size`` values made for their keys (a reader's allowed sets by (generation, filter), the
    PostgreSQL reader's BM25 statistics by generation); the oldest goes first."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, make: Any) -> Any:
        with self._lock:
            got = self._items.get(key)
        if got is None:
            got = make()
            with self._lock:
                if len(self._items) >= self.size:
                    self._items.pop(next(iter(self._items)))
                self._items[key] = got
        return got
