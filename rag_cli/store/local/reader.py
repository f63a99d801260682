"""Read side of an index: dense search (FAISS), BM25 (FTS5), chunk look-up.

Thread-safe: each thread gets its own SQLite connection; FAISS search is
re-entrant. ``refresh()`` picks up a newer generation (or a rebuilt data
folder) written since the reader opened, so a long-lived ``rag serve`` follows
re-indexing without a restart. Inside ``snapshot()`` a thread's reads (vectors and rows)
come from one committed generation, never a mix.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import IndexCorrupt
from ...types import Hit
from .. import base as store_base
from .. import layout
from ..cache import BoundedCache
from ..layout import REPAIR
from ..rows import HEADING_SEP, path_from_db, path_to_db, query_words
from . import faiss_index, schema
from .allowed import Allowed
from .bm25_memory import QueryTokenizer
from .reader_memory import MemoryPostings


def weighted_words(query: str, expansion: Any = None) -> list[tuple[str, float]]:
    """The query's words with weight 1, then an expansion's (store/base.Expansion) with its weight."""
    out = [(w, 1.0) for w in query_words(query)]
    if expansion is not None and expansion[1] > 0:
        out += [(w, float(expansion[1])) for w in query_words(" ".join(expansion[0]))]
    return out


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression: the query's words, quoted, joined by OR."""
    return _match(query_words(text))


def _match(words: list[str]) -> str:
    return " OR ".join(f'"{w}"' for w in words)


def _idfs(words: list[tuple[str, float]], collection: store_base.Collection | None) -> list[float | None] | None:
    """The in-memory postings' idf of each word: the collection's where it counts the word, else None (its own)."""
    return None if collection is None else [store_base.collection_idf(w, collection) for w, _ in words]


class IndexReader(MemoryPostings):
    keyword = ""  # BM25 is FTS5's or the in-memory postings' (stats say which)

    def __init__(self, index_dir: Path, fingerprint: dict[str, Any] | None = None, *, bm25_memory_max: int = 0) -> None:
        """``bm25_memory_max`` > 0: BM25 for indexes up to that many chunks is answered from memory
        (store/local/bm25_memory.py), loaded in the background for each new generation; 0: always FTS5."""
        self.index_dir = index_dir
        self.name = index_dir.name
        self.wanted = fingerprint
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self.data_dir: Path = layout.require_data_dir(index_dir)
        self.manifest = layout.read_manifest(self.data_dir)
        if fingerprint is not None:
            layout.check_fingerprint(self.name, self.manifest, fingerprint)
        self.generation = -1
        self.index: Any = None
        self.count = 0
        self._checked = 0.0
        self.bm25_memory_max = bm25_memory_max
        self._memory = None  # (data folder, postings) of the newest generation loaded
        self._memory_job = None  # (data folder, generation, weights) being built or failed
        self._tokenizer = None
        self.bm25_memory_error = ""
        self._allowed = BoundedCache()
        self._check_db()

    def _check_db(self) -> None:
        try:
            conn = self._conn()
            conn.execute("SELECT count(*) FROM meta").fetchone()
            conn.execute("SELECT count(*) FROM files").fetchone()
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(f"index database is damaged ({exc})", hint="run `rag index PATH --rebuild`") from None

    # -- connections -------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "dir", None) != self.data_dir:
            try:
                conn = schema.connect(self.data_dir / layout.DB)
            except sqlite3.DatabaseError as exc:
                raise IndexCorrupt(
                    f"index database is damaged ({exc})", hint="run `rag index PATH --rebuild`"
                ) from None
            self._local.conn = conn
            self._local.dir = self.data_dir
            with self._lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()

    # -- generations ---------------------------------------------------------------
    def _meta(self, conn: sqlite3.Connection | None = None) -> tuple[int, int]:
        conn = conn or self._conn()
        try:
            rows = dict(
                conn.execute("SELECT key, value FROM meta WHERE key IN ('generation', 'chunk_count')").fetchall()
            )
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(f"index database is damaged ({exc})", hint="run `rag index PATH --rebuild`") from None
        return int(rows.get("generation", 0)), int(rows.get("chunk_count", 0))

    def refresh_due(self, interval: float = 0.5) -> bool:
        """Whether ``maybe_refresh`` would look for a new generation now (no I/O: safe on the event loop)."""
        return self.index is None or time.monotonic() - self._checked >= interval

    def maybe_refresh(self, interval: float = 0.5) -> bool:
        """``refresh()`` at most every ``interval`` seconds (cheap enough for every query)."""
        if not self.refresh_due(interval):
            return False
        self._checked = time.monotonic()
        return self.refresh()

    def refresh(self) -> bool:
        """Load the newest committed generation if it changed; True when something was reloaded."""
        self._follow_data_dir()
        for _ in range(3):
            gen, count = self._meta()
            if gen == self.generation and self.index is not None:
                return False
            try:
                self._index_for(gen, count)
                return True
            except FileNotFoundError:
                continue  # a writer committed a newer generation and cleaned this one: read again
        raise IndexCorrupt(f"vector file of generation {gen} is missing", hint=REPAIR)

    def _follow_data_dir(self) -> None:
        with self._lock:
            live = layout.require_data_dir(self.index_dir)
            if live != self.data_dir:
                manifest = layout.read_manifest(live)
                if self.wanted is not None:
                    layout.check_fingerprint(self.name, manifest, self.wanted)
                self.manifest, self.data_dir = manifest, live
                self.generation, self.index, self._memory = -1, None, None

    def _index_for(self, gen: int, count: int) -> Any:
        """The FAISS index of generation ``gen`` (kept if it is the newest seen; FileNotFoundError if cleaned)."""
        with self._lock:
            if gen == self.generation and self.index is not None:
                return self.index
        index = faiss_index.with_lookup(faiss_index.read_index(layout.vectors_file(self.data_dir, gen)))
        if index.ntotal != count:
            raise IndexCorrupt(f"index is inconsistent: {index.ntotal} vectors for {count} chunks", hint=REPAIR)
        with self._lock:
            if gen > self.generation:
                self.index, self.generation, self.count = index, gen, count
        return index

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Pin one generation for this thread's reads inside: vectors and rows come from the same commit.

        A read transaction fixes the SQLite snapshot; the FAISS index of that snapshot's generation
        is used for dense search, even if a writer commits a newer one meanwhile. Re-entrant.
        """
        if getattr(self._local, "pinned", None) is not None:
            yield
            return
        for _ in range(3):
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                gen, count = self._meta()  # the first read establishes the snapshot
                index = self._index_for(gen, count)
            except FileNotFoundError:
                conn.execute("COMMIT")
                continue
            except BaseException:
                conn.execute("COMMIT")
                raise
            self._local.pinned, self._local.pinned_gen = index, gen
            try:
                yield
            finally:
                self._local.pinned = self._local.pinned_gen = None
                conn.execute("COMMIT")
            return
        raise IndexCorrupt("the index changed three times during one read", hint="try again")

    @property
    def dim(self) -> int:
        return int(self.manifest["fingerprint"].get("embedder", {}).get("dim", 0))

    # -- search -------------------------------------------------------------------
    def _current_index(self) -> Any:
        """The FAISS index of this thread's snapshot, else the newest one (loaded on first use)."""
        index = getattr(self._local, "pinned", None)
        if index is None:
            if self.index is None:
                self.refresh()
            index = self.index
        return index

    def allowed(self, flt: Any) -> Allowed | None:
        """The chunks ``flt`` (a retrieve.filters.Filter) allows in this read's generation; None: no filter."""
        if not flt:
            return None
        gen = getattr(self._local, "pinned_gen", None)
        key = (self.generation if gen is None else gen, flt)
        got: Allowed = self._allowed.get(key, lambda: Allowed(self._conn(), flt))
        return got

    def dense(self, query_vec: Any, k: int, allowed: Allowed | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (chunk id, cosine); ``allowed``: only among those chunks (FAISS id selector; an IVF
        index that finds fewer than it could in its probed lists searches all of them)."""
        import numpy as np

        index = self._current_index()
        if index.ntotal == 0 or k <= 0 or (allowed is not None and not len(allowed)):
            return []
        q = np.ascontiguousarray(query_vec, dtype=np.float32).reshape(1, -1)
        if allowed is None or allowed.everything:
            scores, ids = index.search(q, min(k, index.ntotal))
        else:
            f = faiss_index.faiss()
            want = min(k, len(allowed))
            if faiss_index.is_ivf(index):
                scores, ids = index.search(
                    q, want, params=f.SearchParametersIVF(sel=allowed.selector(), nprobe=index.nprobe)
                )
                if int((ids[0] >= 0).sum()) < want and index.nprobe < index.nlist:
                    params = f.SearchParametersIVF(sel=allowed.selector(), nprobe=index.nlist)
                    scores, ids = index.search(q, want, params=params)
            else:
                scores, ids = index.search(q, want, params=f.SearchParameters(sel=allowed.selector()))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def bm25(
        self,
        query: str,
        k: int,
        weights: tuple[float, float, float] = (2.0, 2.0, 1.0),
        allowed: Allowed | None = None,
        expansion: Any = None,
        collection: store_base.Collection | None = None,
    ) -> list[tuple[int, float]]:
        """FTS5 BM25 (k1=1.2, b=0.75) with column weights (title, heading, body). Higher is better.
        ``allowed``: only those chunks score (the statistics stay the whole index's); ``expansion``: weighted
        words added to the query (store/base.Expansion); ``collection``: the idf of the words it counts
        (store/base.Collection)."""
        words = weighted_words(query, expansion)
        if not words or k <= 0 or (allowed is not None and not len(allowed)):
            return []
        if allowed is not None and allowed.everything:
            allowed = None
        w = (float(weights[0]), float(weights[1]), float(weights[2]))
        if (held := self._memory_phrases([x for x, _ in words], w)) is not None:
            mask = None if allowed is None else allowed.mask(held[0].ids)
            return held[0].search(held[1], k, mask, [f for _, f in words], _idfs(words, collection))
        summed, args = self._rescaled(words, w, collection)
        if not summed:
            return []
        if allowed is None:
            rows = self._conn().execute(f"{summed} SELECT r, t FROM m ORDER BY t, r LIMIT ?", (*args, k))
        else:  # the matches once, then the allowed ones (a rowid IN on the FTS table runs the match per id)
            sql = f"{summed} SELECT r, t FROM m WHERE r IN (SELECT value FROM json_each(?)) ORDER BY t, r LIMIT ?"
            rows = self._conn().execute(sql, (*args, allowed.json(), k))
        return [(int(r[0]), -float(r[1])) for r in rows]

    def _rescaled(
        self,
        words: list[tuple[str, float]],
        w: tuple[float, float, float],
        collection: store_base.Collection | None = None,
    ) -> tuple[str, list[Any]]:
        """A ``WITH`` clause defining ``m(r, t)``: per matching row, the BM25 of the OR of the words with the idf
        every store uses (negative: lower is better), each word's score times its weight. One FTS5 query per
        word, its ``bm25()`` rescaled from FTS5's idf to store/base.bm25_idf, summed per row (FTS5 sums its
        phrases' scores the same way); each materialised, as ``bm25()`` cannot run inside an aggregate."""
        if self._tokenizer is None:
            self._tokenizer = QueryTokenizer()
        conn = self._conn()
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.rag_fts_row USING fts5vocab(main, chunks_fts, row)")
        rows = self._meta(conn)[1] or int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        parts: list[str] = []
        args: list[Any] = []
        for word, factor in words:
            terms = self._tokenizer.terms(word)
            if not terms:
                continue
            phrase = _match([word])
            if len(terms) == 1:
                found = conn.execute("SELECT doc FROM temp.rag_fts_row WHERE term = ?", terms).fetchone()
                holding = int(found[0]) if found else 0
            else:  # a word FTS5 splits ("GitLab.com"): the rows holding its tokens in a row
                holding = int(
                    conn.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (phrase,)).fetchone()[0]
                )
            if not holding:
                continue
            parts.append(
                f"p{len(parts)} AS MATERIALIZED (SELECT rowid AS r, bm25(chunks_fts, ?, ?, ?) * ? AS s "
                "FROM chunks_fts WHERE chunks_fts MATCH ?)"
            )
            idf = store_base.word_idf(word, rows, holding, collection)
            args += [*w, factor * idf / store_base.fts5_idf(rows, holding), phrase]
        if not parts:
            return "", []
        union = " UNION ALL ".join(f"SELECT r, s FROM p{i}" for i in range(len(parts)))
        return f"WITH {', '.join(parts)}, m AS MATERIALIZED (SELECT r, sum(s) AS t FROM ({union}) GROUP BY r)", args

    def scores_for(
        self,
        ids: list[int],
        query_vec: Any,
        query: str,
        weights: tuple[float, float, float] = (2.0, 2.0, 1.0),
        expansion: Any = None,
        collection: store_base.Collection | None = None,
    ) -> dict[int, dict[str, float]]:
        """Both methods' scores of the chunks ``ids``: ``{"dense": cosine, "bm25": score}``, BM25 0.0 for
        a chunk that does not match (as ranking by ``bm25()`` leaves it out), with ``expansion`` and
        ``collection`` as :meth:`bm25` takes them. Fusion needs both scores of every candidate, not only of those in each method's own top list."""
        import numpy as np

        out: dict[int, dict[str, float]] = {i: {} for i in ids}
        if ids and query_vec is not None:
            q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
            for i, vec in self.vectors(ids).items():
                out[i]["dense"] = float(vec @ q)
        words = weighted_words(query, expansion)
        if not words or not ids:
            return out
        w = (float(weights[0]), float(weights[1]), float(weights[2]))
        held = self._memory_phrases([x for x, _ in words], w)
        scored = None
        if held is not None:
            scored = held[0].score_ids(held[1], ids, [f for _, f in words], _idfs(words, collection))
        if scored is None:  # one pass over the matches (an ``IN`` on the FTS table runs the match per id)
            summed, args = self._rescaled(words, w, collection)
            scored = {}
            if summed:
                marks = ",".join("?" * len(ids))
                rows = self._conn().execute(f"{summed} SELECT r, t FROM m WHERE r IN ({marks})", (*args, *ids))
                scored = {int(r[0]): -float(r[1]) for r in rows}
        for i in ids:
            out[i]["bm25"] = scored.get(i, 0.0)
        return out

    def vectors(self, ids: list[int]) -> dict[int, Any]:
        """The stored vectors of the chunks ``ids`` this read's index holds (float32 arrays)."""
        index = self._current_index()
        found = {i: faiss_index.reconstruct(index, i) for i in ids}
        return {i: v for i, v in found.items() if v is not None}

    def unknown_words(self, words: list[str]) -> list[str]:
        """Those of ``words`` that no chunk holds as written (as FTS5 tokenizes them: stemmed, case-folded;
        a word of several tokens, "GitLab.com" or "3.0", as a phrase: its tokens in a row)."""
        return [w for w, n in zip(words, self.chunks_holding(words, 1), strict=True) if n == 0]

    def chunks_holding(self, words: list[str], most: int) -> list[int]:
        """For each of ``words``, how many chunks hold it as written (as :meth:`unknown_words` matches),
        counted up to ``most``; a word with no token counts as held by ``most``."""
        if not words:
            return []
        if self._tokenizer is None:
            self._tokenizer = QueryTokenizer()
        conn = self._conn()
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.rag_fts_row USING fts5vocab(main, chunks_fts, row)")
        out = []
        for word in words:
            terms = self._tokenizer.terms(word)
            if not terms:
                out.append(most)
            elif len(terms) == 1:
                row = conn.execute("SELECT doc FROM temp.rag_fts_row WHERE term = ?", terms).fetchone()
                out.append(min(int(row[0]), most) if row else 0)
            else:
                phrase = '"' + word.replace('"', " ") + '"'
                out.append(
                    conn.execute(
                        "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)",
                        (phrase, most),
                    ).fetchone()[0]
                )
        return out

    def chunks(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._conn().execute(
            "SELECT c.id, f.path, c.title, c.heading, c.text, c.start_line, c.end_line, c.page, c.doc_id "
            f"FROM chunks c JOIN files f ON f.id = c.file_id WHERE c.id IN ({marks})",
            ids,
        )
        out = {}
        for r in rows:
            out[r[0]] = {
                "chunk_id": r[0],
                "path": path_from_db(r[1]),
                "title": r[2],
                "heading": tuple(h for h in r[3].split(HEADING_SEP) if h) if r[3] else (),
                "text": r[4],
                "start_line": r[5],
                "end_line": r[6],
                "page": r[7],
                "doc_id": r[8],
            }
        return out

    def document(self, path: str, start_line: int | None = None, end_line: int | None = None) -> list[dict[str, Any]]:
        """The chunks of the indexed file ``path`` in order (as stored or relative to the cwd), those
        overlapping ``start_line``-``end_line`` when given (a chunk without lines, a PDF page, always)."""
        conn = self._conn()
        candidates = [path, str(Path(path).expanduser().resolve())]
        row = None
        for p in candidates:
            row = conn.execute("SELECT id FROM files WHERE path = ?", (path_to_db(p),)).fetchone()
            if row:
                break
        if row is None:
            return []
        ids = [r[0] for r in conn.execute("SELECT id FROM chunks WHERE file_id = ? ORDER BY ordinal", (row[0],))]
        rows = self.chunks(ids)
        out = [rows[i] for i in ids if i in rows]
        lo, hi = start_line or 1, end_line or 1 << 62
        return [c for c in out if c["start_line"] is None or (c["start_line"] <= hi and (c["end_line"] or lo) >= lo)]

    def documents(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Indexed files by path (up to ``limit``): path, title, kind, size and mtime."""
        rows = self._conn().execute(
            "SELECT f.path, f.kind, f.size, f.mtime_ns, (SELECT title FROM chunks c WHERE c.file_id = f.id "
            "ORDER BY ordinal LIMIT 1) FROM files f ORDER BY f.path LIMIT ?",
            (limit,),
        )
        return [
            {"path": path_from_db(p), "kind": kind, "size": size, "mtime": mtime / 1e9, "title": title or ""}
            for p, kind, size, mtime, title in rows
        ]

    def hits(self, scored: list[tuple[int, float]], source: str) -> list[Hit]:
        rows = self.chunks([i for i, _ in scored])
        out = []
        for cid, score in scored:
            row = rows.get(cid)
            if row is None:  # deleted by a newer generation since the search
                continue
            out.append(Hit(score=score, source=source, **row))
        return out

    def stats(self) -> dict[str, Any]:
        conn = self._conn()
        files = conn.execute("SELECT count(*) FROM files").fetchone()[0]
        gen, chunks = self._meta()
        updated = schema.get_meta(conn, "updated_at", "")
        size = sum(p.stat().st_size for p in self.data_dir.iterdir() if p.is_file())
        return {
            "name": self.name,
            "files": files,
            "chunks": chunks,
            "generation": gen,
            "updated_at": float(updated) if updated else None,
            "bytes": size,
            "fingerprint": self.manifest["fingerprint"],
            "path": str(self.index_dir),
        }
