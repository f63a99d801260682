"""The plain retrieval baseline every quality change is judged against, in-process, on the same chunks.

What a forty-line script does: BM25 from ``bm25s`` with the PyStemmer English stemmer (and bm25s's English
stop words) on title + heading + text of each chunk; all-MiniLM-L6-v2 exact cosine (the index's own stored
document vectors, the query encoded by sentence-transformers); equal-weight reciprocal rank fusion, k = 60,
over the top 100 of each. It reads the chunks and vectors of a rag index (so the units are the same as
rag's), builds its own structures, and answers ``search(query, method, depth)`` with chunk ids.

Usage: ``Baseline.from_index(index_dir)``; ``bench/fusion.py`` prints it beside every rag method.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RRF_K = 60
DEPTH = 100


@dataclass
class Row:
    chunk_id: int
    path: str
    doc_id: str | None


class Baseline:
    def __init__(self, rows: list[Row], texts: list[str], vectors: np.ndarray) -> None:
        import bm25s
        import Stemmer

        self.rows, self.vectors = rows, vectors
        self.stemmer = Stemmer.Stemmer("english")
        self.bm25 = bm25s.BM25()
        self.bm25.index(
            bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False), show_progress=False
        )
        self._model: Any = None

    @classmethod
    def from_index(cls, index_dir: Path) -> Baseline:
        from rag_cli.store import layout

        db = layout.require_data_dir(index_dir) / layout.DB
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            got = conn.execute(
                "SELECT c.id, f.path, c.doc_id, c.title, c.heading, c.text, v.v FROM chunks c "
                "JOIN files f ON f.id = c.file_id JOIN vectors v ON v.id = c.id ORDER BY c.id"
            ).fetchall()
        finally:
            conn.close()
        from rag_cli.store.rows import HEADING_SEP

        rows = [Row(cid, path, doc) for cid, path, doc, *_ in got]
        texts = [
            " ".join(x for x in (title, heading.replace(HEADING_SEP, " "), text) if x)
            for *_, title, heading, text, _ in got
        ]
        vectors = np.stack([np.frombuffer(v, dtype=np.float32) for *_, v in got])
        return cls(rows, texts, vectors)

    @classmethod
    def from_beir(cls, corpus: Path, cache: Path) -> Baseline:
        """Over the documents of a BEIR ``corpus.jsonl`` (title + text each, as the issue's baseline), the
        document vectors embedded once and cached in ``cache``."""
        import hashlib
        import json

        docs = [json.loads(x) for x in corpus.read_text(encoding="utf-8").splitlines() if x.strip()]
        rows = [Row(i, str(corpus), str(d["_id"])) for i, d in enumerate(docs)]
        texts = [f"{d.get('title') or ''} {d.get('text') or ''}".strip() for d in docs]
        key = hashlib.blake2b(corpus.read_bytes(), digest_size=8).hexdigest()
        store = cache / f"baseline-docvecs-{key}.npy"
        if store.exists():
            vectors = np.load(store)
        else:
            model = _model()
            vectors = model.encode(texts, batch_size=64, normalize_embeddings=True).astype(np.float32)
            cache.mkdir(parents=True, exist_ok=True)
            np.save(store, vectors)
        out = cls(rows, texts, vectors)
        out._model = _model()
        return out

    def _embed(self, query: str) -> np.ndarray:
        if self._model is None:
            self._model = _model()
        return self._model.encode([query], normalize_embeddings=True)[0].astype(np.float32)

    def bm25_ids(self, query: str, depth: int = DEPTH) -> list[int]:
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", stemmer=self.stemmer, show_progress=False)
        if not tokens.vocab:
            return []
        k = min(depth, len(self.rows))
        docs, scores = self.bm25.retrieve(tokens, k=k, show_progress=False)
        return [self.rows[int(i)].chunk_id for i, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def dense_ids(self, query: str, depth: int = DEPTH) -> list[int]:
        sims = self.vectors @ self._embed(query)
        top = np.argsort(-sims)[:depth]
        return [self.rows[int(i)].chunk_id for i in top]

    def rrf_ids(self, query: str, depth: int = DEPTH) -> list[int]:
        acc: dict[int, float] = {}
        for ids in (self.bm25_ids(query, depth), self.dense_ids(query, depth)):
            for rank, cid in enumerate(ids, start=1):
                acc[cid] = acc.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        return sorted(acc, key=lambda c: -acc[c])

    def row(self, chunk_id: int) -> Row:
        if not hasattr(self, "_by_id"):
            self._by_id = {r.chunk_id: r for r in self.rows}
        return self._by_id[chunk_id]


_MODEL: Any = None


def _model() -> Any:
    """all-MiniLM-L6-v2 from its package, through sentence-transformers (loaded once)."""
    global _MODEL
    if _MODEL is None:
        from sentence_transformers import SentenceTransformer

        from rag_cli.embed.sentence import default_model_path

        _MODEL = SentenceTransformer(str(default_model_path()), device="cpu")
    return _MODEL
