"""The single writer of an index: incremental changes, checkpoints, atomic publication."""

from __future__ import annotations

import functools
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ...errors import IndexCorrupt
from ...types import Chunk
from .. import layout
from ..base import WriterRun
from ..rows import HEADING_SEP, FileState, path_from_db, path_to_db, text_to_db
from . import faiss_index, schema
from .lock import IndexLock

F = TypeVar("F", bound=Callable[..., Any])


def _serialized(method: F) -> F:
    """Run a writer method under the writer's lock: after a cancellation, a pool job may still be
    using the connection when the abort starts on another pool thread."""

    @functools.wraps(method)
    def wrapper(self: IndexWriter, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


TABLE_BATCH = 10_000  # vectors read from the table at a time when an index is made from it


class IndexWriter(WriterRun):
    """Apply changes to an index; every ``checkpoint()`` is one atomic generation.

    Use as a context manager: it takes the lock on enter and, on a clean exit,
    commits and publishes; on an exception nothing after the last checkpoint is kept.
    """

    def __init__(
        self,
        index_dir: Path,
        fingerprint: dict[str, Any],
        *,
        dim: int,
        rebuild: bool = False,
        lock_wait: float = 10.0,
        on_wait: Callable[[str], None] | None = None,
        ann_threshold: int = 200_000,
        ann_nprobe: int = 32,
    ) -> None:
        self.index_dir = index_dir
        self.fingerprint = fingerprint
        self.dim = dim
        self.rebuild = rebuild
        self.ann_threshold, self.ann_nprobe = ann_threshold, ann_nprobe
        self.lock = IndexLock(index_dir / "lock", wait=lock_wait, on_wait=on_wait)
        self.conn: sqlite3.Connection | None = None
        self.data_dir: Path | None = None
        self.published = False
        self.first_build = False
        self.generation = 0
        self.index: Any = None
        self._pending_remove: list[int] = []
        self.dirty = False
        self._mutex = threading.RLock()

    # -- lifecycle ----------------------------------------------------------
    @_serialized
    def open(self) -> IndexWriter:
        """Take the index's writer lock and open (or, for a first build or a --rebuild, make) its data."""
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self._open()
        except BaseException:
            self.lock.release()
            raise
        return self

    def _open(self) -> None:
        live = layout.current_data_dir(self.index_dir)
        if live is not None and not live.is_dir():
            live = None  # CURRENT points nowhere: treat as a fresh build
        if live is not None and not self.rebuild:
            manifest = layout.read_manifest(live)
            layout.check_fingerprint(self.index_dir.name, manifest, self.fingerprint)
            self.data_dir = live
            self.published = True
            try:
                self.conn = schema.connect(live / layout.DB)
                self.generation = int(schema.get_meta(self.conn, "generation", "0"))
                self.conn.execute("SELECT count(*) FROM files").fetchone()
                # indexes made before content reuse (KnownVectors) lack it; readers do not mind it
                self.conn.execute("CREATE INDEX IF NOT EXISTS files_hash ON files(hash)")
            except (sqlite3.DatabaseError, ValueError) as exc:
                raise IndexCorrupt(
                    f"index database is damaged ({exc})", hint="run `rag index PATH --rebuild`"
                ) from None
            layout.clean_orphans(self.index_dir, live)
            layout.clean_generations(live, self.generation)
            self.index = self._load_vectors()
        else:
            layout.clean_orphans(self.index_dir, live)
            self.data_dir = layout.new_data_dir(self.index_dir)
            layout.write_manifest(self.data_dir, self.fingerprint)
            self.conn = schema.connect(self.data_dir / layout.DB, create=True)
            self.index = faiss_index.empty_index(self.dim)
            faiss_index.write_index(self.index, layout.vectors_file(self.data_dir, 0))
            # a first build is published at its first checkpoint (later runs resume from it); one stopped
            # before any leaves no index behind, not an empty one (a --rebuild publishes at its end)
            self.first_build = live is None
        self.conn.execute("BEGIN IMMEDIATE")

    def _load_vectors(self) -> Any:
        assert self.conn is not None and self.data_dir is not None
        path = layout.vectors_file(self.data_dir, self.generation)
        count = int(schema.get_meta(self.conn, "chunk_count", "0"))
        try:
            index = faiss_index.read_index(path)
        except (FileNotFoundError, IndexCorrupt):
            index = None
        if index is None or index.ntotal != count:
            # the vector file is a derived cache: rebuild it from the vectors table, and write it anew
            index = self._flat_from_table()
            if index.ntotal != count:
                raise IndexCorrupt("index vectors and chunks disagree", hint="run `rag index PATH --rebuild`")
            self.dirty = True
        return index

    def _restructure(self, to_ivf: bool) -> Any:
        """The same vectors as an IVF index (``to_ivf``) or an exact flat one, made from the vectors table
        (the source of truth) in batches: the index in memory is let go first, so the peak holds one copy
        of the vectors and a training sample, not three (bench/index.py, 200 MB .jsonl)."""
        self.index = None
        try:
            if not to_ivf:
                return self._flat_from_table()
            return self._ivf_from_table()
        except BaseException:
            self.index = self._flat_from_table()
            raise

    def _table_batches(self, rows: Any = None) -> Any:
        """(vectors, ids) of the vectors table in id order, 10,000 at a time; only the positions in ``rows``
        (sorted) when given."""
        import numpy as np

        assert self.conn is not None
        cur = self.conn.execute("SELECT id, v FROM vectors ORDER BY id")
        seen = 0
        while batch := cur.fetchmany(TABLE_BATCH):
            if rows is not None:
                lo, hi = np.searchsorted(rows, [seen, seen + len(batch)])
                picked = [batch[i - seen] for i in rows[lo:hi]]
                seen += len(batch)
                batch = picked
                if not batch:
                    continue
            ids = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
            mat = np.frombuffer(b"".join(r[1] for r in batch), dtype=np.float32).reshape(len(batch), self.dim)
            yield mat, ids

    def _ivf_from_table(self) -> Any:
        import numpy as np

        assert self.conn is not None
        n = self.conn.execute("SELECT count(*) FROM vectors").fetchone()[0]
        rows = faiss_index.train_rows(n) if n > faiss_index.train_size(n) else None
        sample = np.concatenate([m for m, _ in self._table_batches(rows)])
        return faiss_index.build_ivf_from(sample, self._table_batches(), n, self.ann_nprobe)

    def _flat_from_table(self) -> Any:
        """An exact index of every vector in the SQLite vectors table (the source of truth)."""
        index = faiss_index.empty_index(self.dim)
        for mat, ids in self._table_batches():
            index.add_with_ids(mat, ids)
        return index

    @_serialized
    def commit(self) -> None:
        """Make what was written durable and visible (a new build is published), then release the lock."""
        try:
            self._commit()
        finally:
            self._close(failed=False)

    @_serialized
    def abort(self) -> None:
        """Undo what was not committed (an unpublished build leaves nothing behind), then release the lock."""
        try:
            if self.conn is not None and self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        finally:
            self._close(failed=True)

    def _close(self, failed: bool) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            if failed and not self.published and self.data_dir is not None:
                # an unpublished build (a --rebuild) that failed or was interrupted: leave nothing behind
                shutil.rmtree(self.data_dir, ignore_errors=True)
        finally:
            self.lock.release()

    # -- reads ----------------------------------------------------------------
    @_serialized
    def file_states(self) -> dict[str, FileState]:
        assert self.conn is not None
        rows = self.conn.execute("SELECT id, path, size, mtime_ns, hash FROM files")
        return {path_from_db(r[1]): FileState(r[0], path_from_db(r[1]), *r[2:]) for r in rows}

    @_serialized
    def vectors_of_content(self, digest: str, dim: int) -> dict[str, Any]:
        """Embedding text -> stored vector of the chunks of files whose content hash is ``digest`` (the
        same file under another name: its vectors are reused, not recomputed)."""
        import numpy as np

        assert self.conn is not None
        rows = self.conn.execute(
            "SELECT c.title, c.heading, c.text, v.v FROM files f JOIN chunks c ON c.file_id = f.id "
            "JOIN vectors v ON v.id = c.id WHERE f.hash = ? AND f.hash != ''",
            (digest,),
        )
        out: dict[str, Any] = {}
        for title, heading, text, blob in rows:
            trail = tuple(h for h in heading.split(HEADING_SEP) if h)
            out[Chunk("", text, title, trail).embedding_text()] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return out

    # -- changes --------------------------------------------------------------
    @_serialized
    def touch_file(self, state: FileState, size: int, mtime_ns: int) -> None:
        assert self.conn is not None
        self.conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, state.id))
        self.dirty = True

    @_serialized
    def remove_file(self, path: str) -> int:
        """Drop a file and its chunks; returns the number of chunks removed."""
        assert self.conn is not None
        row = self.conn.execute("SELECT id FROM files WHERE path = ?", (path_to_db(path),)).fetchone()
        if row is None:
            return 0
        ids = [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE file_id = ?", (row[0],))]
        self.conn.execute("DELETE FROM chunks WHERE file_id = ?", (row[0],))
        self.conn.execute("DELETE FROM files WHERE id = ?", (row[0],))
        self._pending_remove.extend(ids)
        self.dirty = True
        return len(ids)

    @_serialized
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
    ) -> int:
        """Replace ``path`` with ``chunks`` and their vectors; returns chunks removed.

        ``append``: add the next part of a file read in segments (the first part replaced it). A file
        whose parts are not all in is stored with ``digest`` "" until its last part sets it, so a run
        stopped in between re-reads it next time."""
        import numpy as np

        assert self.conn is not None
        db_path = path_to_db(path)
        row = self.conn.execute("SELECT id FROM files WHERE path = ?", (db_path,)).fetchone() if append else None
        if row is not None:
            removed = 0
            file_id = row[0]
            self.conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, hash = ? WHERE id = ?", (size, mtime_ns, digest, file_id)
            )
        else:
            removed = self.remove_file(path)
            cur = self.conn.execute(
                "INSERT INTO files(path, size, mtime_ns, hash, kind, indexed_at) VALUES (?, ?, ?, ?, ?, ?)",
                (db_path, size, mtime_ns, digest, kind, time.time()),
            )
            file_id = cur.lastrowid
        ids = []
        txt = text_to_db
        for ch in chunks:
            c = self.conn.execute(
                "INSERT INTO chunks(file_id, ordinal, doc_id, title, heading, text, start_line, end_line, page)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    file_id,
                    ch.ordinal,
                    None if ch.doc_id is None else txt(ch.doc_id),
                    txt(ch.title),
                    txt(HEADING_SEP.join(ch.heading)),
                    txt(ch.text),
                    ch.start_line,
                    ch.end_line,
                    ch.page,
                ),
            )
            ids.append(c.lastrowid)
        if ids:
            mat = np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(ids), self.dim)
            self.conn.executemany(
                "INSERT INTO vectors(id, v) VALUES (?, ?)", ((i, mat[j].tobytes()) for j, i in enumerate(ids))
            )
            self._apply_removals()
            self.index.add_with_ids(mat, np.asarray(ids, dtype=np.int64))
        self.dirty = True
        return removed

    def _apply_removals(self) -> None:
        if self._pending_remove:
            faiss_index.remove_ids(self.index, self._pending_remove)
            self._pending_remove = []

    # -- commits ---------------------------------------------------------------
    @_serialized
    def checkpoint(self) -> None:
        """Make everything so far durable and visible as one new generation."""
        assert self.conn is not None and self.data_dir is not None
        if not self.dirty:
            return
        self._apply_removals()
        count = self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        if count != self.index.ntotal:
            self.conn.execute("ROLLBACK")
            raise IndexCorrupt(f"internal: {count} chunks but {self.index.ntotal} vectors; nothing was committed")
        decision = faiss_index.wants_ivf(self.index, count, self.ann_threshold)
        if decision is not None:
            self.index = self._restructure(decision)
        gen = self.generation + 1
        faiss_index.write_index(self.index, layout.vectors_file(self.data_dir, gen))
        schema.set_meta(self.conn, "generation", str(gen))
        schema.set_meta(self.conn, "chunk_count", str(count))
        schema.set_meta(self.conn, "updated_at", str(time.time()))
        self.conn.execute("COMMIT")
        self.generation = gen
        self.dirty = False
        layout.clean_generations(self.data_dir, gen)
        if self.first_build and not self.published:
            layout.publish(self.index_dir, self.data_dir)
            self.published = True
        self.conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        assert self.conn is not None and self.data_dir is not None
        self.dirty = self.dirty or not self.published
        self.checkpoint()
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if not self.published:
            layout.publish(self.index_dir, self.data_dir)
            self.published = True
        layout.clean_orphans(self.index_dir, self.data_dir)
