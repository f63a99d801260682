"""Why rag's BM25 is under bm25s on some sets: scoring variants over the same FTS5 postings (issue 30).

Every variant scores the postings FTS5 stored (store/local/bm25_memory.py reads them: the same tokens, Porter stemming,
column weights), so only the formula differs: FTS5's idf ``log((N - n + 0.5) / (n + 0.5))``, clamped to 1e-6
for a term in over half the chunks, against Lucene's (and bm25s's) ``log(1 + (N - n + 0.5) / (n + 0.5))``,
each with rag's column weights (title 2, heading 2, text 1) and with equal ones. Top 30 chunks a query (no
twin collapse), then documents in order of their best chunk: Cranfield nDCG@10 over documents, gitdocs nDCG@10
over pages and hit@5. Needs the indexes bench/fusion.py builds (run it first).

Usage: python bench/bm25_variants.py
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, SHARED, write_section

GITDOCS = SHARED / "eval" / "gitdocs"
IDF: dict[str, Callable[[int, int], float]] = {
    "fts5": lambda rows, n: max(math.log((rows - n + 0.5) / (n + 0.5)), 1e-6),
    "lucene": lambda rows, n: math.log(1 + (rows - n + 0.5) / (n + 0.5)),
}


def ranked(m: Any, idf: Callable[[int, int], float], terms: list[str], depth: int = 30) -> list[int]:
    import numpy as np

    from rag_cli.store.local.bm25_memory import K1

    scores = np.zeros(m.rows)
    for term in terms:
        tid = m.terms.get(term)
        if tid is None:
            continue
        s, e = int(m.starts[tid]), int(m.starts[tid + 1])
        d, f = m.docs[s:e], m.freqs[s:e]
        scores[d] += idf(m.rows, e - s) * ((f * (K1 + 1.0)) / (f + m._norm[d]))
    top = np.argsort(-scores, kind="stable")[:depth]
    return [int(m.ids[i]) for i in top if scores[i] > 0]


def main() -> None:
    from rag_cli.eval.beir import load
    from rag_cli.eval.metrics import ndcg_at
    from rag_cli.store import layout
    from rag_cli.store.local.bm25_memory import MemoryBM25, QueryTokenizer
    from rag_cli.store.rows import query_words

    indexes = CACHE / "home" / "indexes"
    cran_index = json.loads((CACHE / "fusion-cranfield-index.json").read_text())["index"]
    qt = QueryTokenizer()
    qa = [json.loads(x) for x in (GITDOCS / "qa.jsonl").read_text().splitlines() if x.strip()]
    qa = [q for q in qa if q.get("gold_paths")]
    cran = load(CRANFIELD)
    sets = {
        "gitdocs": ("fusion-gitdocs", [(q["question"], set(q["gold_paths"])) for q in qa]),
        "cranfield": (cran_index, [(t, cran.qrels[q]) for q, t in cran.queries.items()]),
    }
    lines = [
        "| columns (title, heading, text) | idf | Cranfield nDCG@10 | gitdocs nDCG@10 | gitdocs hit@5 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for weights in ((2.0, 2.0, 1.0), (1.0, 1.0, 1.0)):
        loaded = {}
        for name, (index, _) in sets.items():
            db = layout.require_data_dir(indexes / index) / layout.DB
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            doc = {
                c: (d if name == "cranfield" else p[len(str(GITDOCS)) + 1 :])
                for c, p, d in conn.execute(
                    "SELECT c.id, f.path, c.doc_id FROM chunks c JOIN files f ON f.id = c.file_id"
                )
            }
            loaded[name] = (MemoryBM25(conn, 0, weights), doc)
        for kind, idf in IDF.items():
            out: dict[str, float] = {}
            for name, (_, queries) in sets.items():
                m, doc = loaded[name]
                ndcg = hit = 0.0
                for text, gold in queries:
                    terms = [t[0] for w in query_words(text) if len(t := qt.terms(w)) == 1]
                    ids = ranked(m, idf, terms)
                    docs = list(dict.fromkeys(doc[c] for c in ids))
                    ndcg += ndcg_at(docs[:10], gold, 10)
                    hit += any(doc[c] in gold for c in ids[:5])
                out[f"{name} ndcg"], out[f"{name} hit"] = ndcg / len(queries), hit / len(queries)
            row = (
                f"| {'/'.join(f'{w:g}' for w in weights)} | {kind} | {out['cranfield ndcg']:.4f} | "
                f"{out['gitdocs ndcg']:.4f} | {out['gitdocs hit']:.3f} |"
            )
            print(row, flush=True)
            lines.append(row)
    write_section("BM25 scoring variants (bench/bm25_variants.py)", lines)


if __name__ == "__main__":
    main()
