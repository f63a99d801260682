"""BM25 from memory: FTS5's own postings, scored with numpy exactly as FTS5 ``bm25()`` scores them.

A long-lived process (``rag serve``, ``rag chat``) answers many keyword queries. FTS5 scores every
row that matches any query word (over half the rows for a typical OR query), which costs
milliseconds per query. This module reads the index's postings once per generation through the
``fts5vocab`` *instance* table — the very terms FTS5 stored, so stemming and tokenization are
identical — and scores with the formula of SQLite's ``fts5_aux.c``:

    idf(t)   = log((N - n(t) + 0.5) / (n(t) + 0.5)), at least 1e-6
    f(t, d)  = sum of the column weights over the instances of t in d
    score(d) = sum over query phrases of idf * ((f * (k1 + 1)) / (f + k1 * (1 - b + b * |d| / avgdl)))

with ``k1 = 1.2``, ``b = 0.75``, ``|d|`` the tokens of ``d`` in all columns and ``avgdl`` their
mean over the ``N`` rows. Scores equal FTS5's bit for bit (tests/integration/test_keyword_memory.py).
A query word that FTS5 would turn into a multi-token phrase is left to FTS5 (``None``).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from typing import Any

from .schema import TOKENIZE

K1 = 1.2
B = 0.75
COLUMNS = ("title", "heading", "text")
_FETCH = 65536


class QueryTokenizer:
    """The terms FTS5 makes of a query word, from a private in-memory FTS5 table with the index's tokenizer."""

    def __init__(self, max_cache: int = 50_000) -> None:
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        self._conn.execute(f"CREATE VIRTUAL TABLE q USING fts5(x, tokenize='{TOKENIZE}')")
        self._conn.execute("CREATE VIRTUAL TABLE qv USING fts5vocab(q, instance)")
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, ...]] = {}
        self._max = max_cache

    def terms(self, word: str) -> tuple[str, ...]:
        found = self._cache.get(word)
        if found is not None:
            return found
        with self._lock:
            self._conn.execute("INSERT INTO q(rowid, x) VALUES (1, ?)", (word,))
            found = tuple(r[0] for r in self._conn.execute("SELECT term FROM qv ORDER BY offset"))
            self._conn.execute("DELETE FROM q")
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[word] = found
        return found


class MemoryBM25:
    """The postings of one index generation, for one set of column weights."""

    def __init__(self, conn: sqlite3.Connection, generation: int, weights: tuple[float, float, float]) -> None:
        """Read the postings through ``conn``; the caller holds a read transaction on ``generation``."""
        import numpy as np

        self.generation = generation
        self.weights = weights
        self.ids = np.fromiter((r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id")), dtype=np.int64)
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.rag_fts_instance USING fts5vocab(main, chunks_fts, instance)"
        )
        # summed in SQL, instance by instance, as FTS5 adds a weight per instance
        case = " ".join(f"WHEN '{c}' THEN {float(w)!r}" for c, w in zip(COLUMNS, weights, strict=True))
        cur = conn.execute(
            f"SELECT term, doc, sum(CASE col {case} END), count(*) FROM temp.rag_fts_instance GROUP BY term, doc"
        )
        self.terms: dict[str, int] = {}
        starts: list[int] = []
        docs: list[Any] = []
        freqs: list[Any] = []
        lengths: list[Any] = []
        n = 0
        last = None
        while batch := cur.fetchmany(_FETCH):
            for i, row in enumerate(batch):
                if row[0] != last:
                    last = row[0]
                    self.terms[last] = len(starts)
                    starts.append(n + i)
            n += len(batch)
            docs.append(np.fromiter((r[1] for r in batch), dtype=np.int64, count=len(batch)))
            freqs.append(np.fromiter((r[2] for r in batch), dtype=np.float64, count=len(batch)))
            lengths.append(np.fromiter((r[3] for r in batch), dtype=np.int64, count=len(batch)))
        starts.append(n)
        self.starts = np.asarray(starts, dtype=np.int64)
        rowids = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)
        self.docs = np.searchsorted(self.ids, rowids).astype(np.int32)  # row positions
        if len(rowids) and (int(self.docs.max()) >= len(self.ids) or not (self.ids[self.docs] == rowids).all()):
            raise ValueError("the FTS index holds rows that are not chunks")
        self.freqs = np.concatenate(freqs) if freqs else np.zeros(0)
        doclen = np.zeros(len(self.ids), dtype=np.float64)
        if lengths:
            np.add.at(doclen, self.docs, np.concatenate(lengths))
        self.rows = len(self.ids)
        avgdl = float(doclen.sum()) / self.rows if self.rows else 0.0
        self._norm = K1 * (1 - B + B * doclen / avgdl) if avgdl else np.full(self.rows, K1 * (1 - B))

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.starts.nbytes + self.docs.nbytes + self.freqs.nbytes + self._norm.nbytes)

    def search(self, phrases: list[tuple[str, ...]], k: int) -> list[tuple[int, float]]:
        """Top ``k`` (chunk id, score) for an OR of single-term phrases, best first (ties by id)."""
        import numpy as np

        scores = np.zeros(self.rows, dtype=np.float64)
        matched = False
        for phrase in phrases:
            tid = self.terms.get(phrase[0])
            if tid is None:
                continue
            s, e = int(self.starts[tid]), int(self.starts[tid + 1])
            d, f = self.docs[s:e], self.freqs[s:e]
            idf = math.log((self.rows - (e - s) + 0.5) / ((e - s) + 0.5))
            if idf <= 0.0:
                idf = 1e-6
            scores[d] += idf * ((f * (K1 + 1.0)) / (f + self._norm[d]))
            matched = True
        if not matched or k <= 0:
            return []
        hit = np.flatnonzero(scores > 0.0)
        if len(hit) > k:
            hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
        top = sorted(zip((-scores[hit]).tolist(), self.ids[hit].tolist(), strict=True))
        return [(cid, -neg) for neg, cid in top]
