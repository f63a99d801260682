"""BM25 from memory: FTS5's own postings, scored with numpy as the FTS5 path scores them.

A long-lived process (``rag serve``, ``rag chat``) answers many keyword queries. FTS5 scores every
row that matches any query word (over half the rows for a typical OR query), which costs
milliseconds per query. This module reads the index's postings once per generation through the
``fts5vocab`` *instance* table — the very terms FTS5 stored, so stemming and tokenization are
identical — and scores with the formula of SQLite's ``fts5_aux.c`` but Lucene's idf (store/base.py):

    idf(t)   = log(1 + (N - n(t) + 0.5) / (n(t) + 0.5))
    f(t, d)  = sum of the column weights over the instances of t in d
    score(d) = sum over query phrases of idf * ((f * (k1 + 1)) / (f + k1 * (1 - b + b * |d| / avgdl)))

with ``k1 = 1.2``, ``b = 0.75``, ``|d|`` the tokens of ``d`` in all columns and ``avgdl`` their
mean over the ``N`` rows. Scores equal the FTS5 path's to rounding (tests/integration/store/test_keyword_memory.py).
The caller leaves a query with a word that FTS5 would turn into a multi-token phrase to FTS5.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from ..base import BM25_B as B
from ..base import BM25_K1 as K1
from ..base import bm25_idf
from .schema import TOKENIZE

COLUMNS = ("title", "heading", "text")
_SLICE = 250_000  # term instances read per query while loading (numpy then holds the GIL a few ms)


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
        self.rows = len(self.ids)
        for kind in ("row", "instance"):
            conn.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.rag_fts_{kind} USING fts5vocab(main, chunks_fts, {kind})"
            )
        # per term, in the instance table's order: how many rows hold it and how many times it occurs
        vocab = conn.execute("SELECT term, doc, cnt FROM temp.rag_fts_row").fetchall()
        terms = [r[0] for r in vocab]
        self.terms = {t: i for i, t in enumerate(terms)}
        held = np.fromiter((r[1] for r in vocab), dtype=np.int64, count=len(vocab))
        occurs = np.fromiter((r[2] for r in vocab), dtype=np.int64, count=len(vocab))
        # every instance as doc * 4 + column, sorted by (term, doc, column, offset), read as one text per
        # slice of whole terms (about _SLICE instances) and parsed in C: no Python object per instance,
        # and the transient arrays stay the size of one slice
        code = " ".join(f"WHEN '{c}' THEN {i}" for i, c in enumerate(COLUMNS))
        select = f"SELECT group_concat(doc * 4 + CASE col {code} ELSE 3 END) FROM temp.rag_fts_instance WHERE term >= ?"
        weight_of = np.append(np.asarray(weights, dtype=np.float64), 1.0)  # by column code
        total = np.cumsum(occurs)
        docs, freqs = [], []
        doclen = np.zeros(self.rows, dtype=np.float64)
        first = 0
        while first < len(terms):
            done = int(total[first - 1]) if first else 0
            last = min(max(int(np.searchsorted(total, done + _SLICE)), first), len(terms) - 1)
            args = (terms[first],) if last == len(terms) - 1 else (terms[first], terms[last])
            text = conn.execute(select + ("" if len(args) == 1 else " AND term <= ?"), args).fetchone()[0]
            inst = np.fromstring(text or "", dtype=np.int64, sep=",")
            counts = occurs[first : last + 1]
            if len(inst) != int(counts.sum()):
                raise ValueError(f"read {len(inst)} term instances, the FTS index counts {int(counts.sum())}")
            rowids = inst >> 2
            where = np.searchsorted(self.ids, rowids)
            if len(where) and (int(where.max()) >= self.rows or not (self.ids[where] == rowids).all()):
                raise ValueError("the FTS index holds rows that are not chunks")
            new = np.ones(len(inst), dtype=bool)  # the first instance of each (term, doc) posting
            new[1:] = rowids[1:] != rowids[:-1]
            new[np.cumsum(counts)[:-1]] = True
            begin = np.flatnonzero(new)
            if len(begin) != int(held[first : last + 1].sum()):
                raise ValueError("the FTS instances are not in (term, doc) order")
            docs.append(where[begin].astype(np.int32))  # row positions
            freqs.append(_sequential_sums(weight_of[(inst & 3).astype(np.int8)], begin))
            doclen += np.bincount(where, minlength=self.rows)
            first = last + 1
        self.starts = np.concatenate([[0], np.cumsum(held)]).astype(np.int64)
        self.docs = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int32)
        self.freqs = np.concatenate(freqs) if freqs else np.zeros(0, dtype=np.float64)
        avgdl = float(doclen.sum()) / self.rows if self.rows else 0.0
        self._norm = K1 * (1 - B + B * doclen / avgdl) if avgdl else np.full(self.rows, K1 * (1 - B))

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.starts.nbytes + self.docs.nbytes + self.freqs.nbytes + self._norm.nbytes)

    def search(
        self,
        phrases: list[tuple[str, ...]],
        k: int,
        mask: Any = None,
        factors: list[float] | None = None,
        idfs: list[float | None] | None = None,
    ) -> list[tuple[int, float]]:
        """Top ``k`` (chunk id, score) for an OR of single-term phrases, best first (ties by id);
        ``mask`` (bool per row): only those rows; ``factors``: each phrase's weight (default 1); ``idfs``: each
        phrase's idf where it is given (a federated search's, store/base.Collection), else this index's."""
        import numpy as np

        scores, found, matched = self._score(phrases, factors, idfs)
        if not matched or k <= 0:
            return []
        if mask is not None:
            found &= mask
        hit = np.flatnonzero(found)
        if len(hit) > k:
            hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
        top = sorted(zip((-scores[hit]).tolist(), self.ids[hit].tolist(), strict=True))
        return [(cid, -neg) for neg, cid in top]

    def score_ids(
        self,
        phrases: list[tuple[str, ...]],
        ids: list[int],
        factors: list[float] | None = None,
        idfs: list[float | None] | None = None,
    ) -> dict[int, float]:
        """The score of each of ``ids`` that matches (as FTS5's ``bm25()`` would give it)."""
        import numpy as np

        scores, found, _ = self._score(phrases, factors, idfs)
        want = np.asarray(sorted(set(ids)), dtype=np.int64)
        where = np.searchsorted(self.ids, want)
        ok = where < self.rows
        ok[ok] = self.ids[where[ok]] == want[ok]
        return {int(c): float(scores[w]) for c, w in zip(want[ok], where[ok], strict=True) if found[w]}

    def _score(
        self, phrases: list[tuple[str, ...]], factors: list[float] | None, idfs: list[float | None] | None = None
    ) -> tuple[Any, Any, bool]:
        import numpy as np

        scores = np.zeros(self.rows, dtype=np.float64)
        found = np.zeros(self.rows, dtype=bool)  # rows that match (a zero column weight can score 0)
        matched = False
        given = idfs or [None] * len(phrases)
        for phrase, factor, idf in zip(phrases, factors or [1.0] * len(phrases), given, strict=True):
            tid = self.terms.get(phrase[0])
            if tid is None:
                continue
            s, e = int(self.starts[tid]), int(self.starts[tid + 1])
            d, f = self.docs[s:e], self.freqs[s:e]
            own = bm25_idf(self.rows, e - s) if idf is None else idf
            scores[d] += factor * own * ((f * (K1 + 1.0)) / (f + self._norm[d]))
            found[d] = True
            matched = True
        return scores, found, matched


def _sequential_sums(values: Any, begin: Any) -> Any:
    """Sums of ``values`` over the runs starting at ``begin``, each added left to right from 0.0 as FTS5
    adds (numpy's own reductions sum pairwise, which can differ in the last bit for non-integer weights)."""
    import numpy as np

    lengths = np.diff(np.append(begin, len(values)))
    order = np.argsort(-lengths, kind="stable")  # the runs still going at step j are a prefix of this
    ranked = lengths[order]
    out = np.zeros(len(begin), dtype=np.float64)
    step = 0
    while True:
        alive = int(np.searchsorted(-ranked, -step, side="left"))  # runs longer than ``step``
        if alive == 0:
            return out
        runs = order[:alive]
        out[runs] += values[begin[runs] + step]
        step += 1
