"""The chunks a :class:`~rag_cli.retrieve.filters.Filter` allows in one index generation.

Computed once per (generation, filter) from the files table (path and mtime) and kept by the reader:
FAISS searches through an id selector over them, FTS5 through ``rowid IN`` them, the in-memory BM25
through a mask over its rows. The forms each search needs are built on first use and kept.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from ..rows import path_from_db


class Allowed:
    def __init__(self, conn: sqlite3.Connection, flt: Any) -> None:
        import numpy as np

        files = [
            fid
            for fid, path, mtime_ns in conn.execute("SELECT id, path, mtime_ns FROM files")
            if flt.allows(path_from_db(path), mtime_ns / 1e9)
        ]
        rows = conn.execute(
            "SELECT id FROM chunks WHERE file_id IN (SELECT value FROM json_each(?)) ORDER BY id", (json.dumps(files),)
        )
        self.ids = np.fromiter((r[0] for r in rows), dtype=np.int64)
        self.total = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        self._lock = threading.Lock()
        self._selector: Any = None
        self._json: str | None = None
        self._masks: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def everything(self) -> bool:
        """The filter allows every chunk: searches need no restriction."""
        return len(self.ids) == self.total

    def selector(self) -> Any:
        from .faiss_index import faiss

        with self._lock:
            if self._selector is None:
                self._selector = faiss().IDSelectorBatch(self.ids)
            return self._selector

    def json(self) -> str:
        if self._json is None:
            self._json = json.dumps(self.ids.tolist())
        return self._json

    def mask(self, row_ids: Any) -> Any:
        """A boolean mask over ``row_ids`` (a sorted id array, the in-memory BM25's rows)."""
        import numpy as np

        key = id(row_ids)
        with self._lock:
            got = self._masks.get(key)
            if got is None or got[0] is not row_ids:
                got = (row_ids, np.isin(row_ids, self.ids, assume_unique=True))
                self._masks[key] = got
            return got[1]
