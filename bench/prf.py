"""Pseudo-relevance feedback, measured (issue 30): RM3-style expansion for BM25, Rocchio for dense.

On every set of bench/fusion.py (Cranfield nDCG@10 over documents; gitdocs and sample_corpus hit@5 and
nDCG@10 over pages), over the real indexes:

- BM25 + RM3: the top ``FB_DOCS`` BM25 passages vote for terms (each term's share of a passage's words, weighted
  by the passage's normalised score); the ``FB_TERMS`` best terms not in the query form a second query whose BM25
  scores are added with weight ``lam`` (BM25 is a sum over query terms, so this is the weighted expanded query).
- dense + Rocchio: the query vector plus ``beta`` times the mean of the top ``FB_DOCS_DENSE`` passages' stored
  vectors, normalised, searched again.
- Both fused as the baseline fuses (equal-weight RRF, k = 60), with and without feedback.

Each with a paired randomisation test against the same method without feedback, and its cost in milliseconds
per query (median), all in one run. Usage: python bench/prf.py (after bench/fusion.py has built the indexes).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, ROOT, rag_env, run_rag, write_section
from bench.fusion import GITDOCS, doc_name, paired_p, per_query, rrf

DEPTH = 100
FB_DOCS, FB_TERMS, FB_DOCS_DENSE = 10, 10, 3
LAMBDAS = (0.3, 0.6)
BETAS = (0.5, 1.0)


def specs(env: dict[str, str]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    _, rc, out, err, _ = run_rag(["eval", str(CRANFIELD), "--mode", "bm25", "--json"], env)
    assert rc == 0, err
    from rag_cli.eval.beir import load

    data = load(CRANFIELD)
    out_specs = {
        "cranfield": (
            json.loads(out)["index"],
            [{"text": t, "rel": sorted(data.qrels[q])} for q, t in data.queries.items()],
        )
    }
    for name, folder, qa in (
        ("gitdocs", GITDOCS / "html", GITDOCS / "qa.jsonl"),
        ("sample", ROOT / "sample_corpus", ROOT / "sample_corpus" / "qa.jsonl"),
    ):
        _, rc, _, err, _ = run_rag(["index", str(folder), "--index", f"fusion-{name}"], env)
        assert rc == 0, err
        items = [json.loads(x) for x in qa.read_text().splitlines() if x.strip()]
        out_specs[name] = (
            f"fusion-{name}",
            [{"text": i["question"], "rel": i["gold_paths"]} for i in items if i.get("gold_paths")],
        )
    return out_specs


def expansion(query: str, texts: list[str], scores: list[float]) -> list[str]:
    """RM3's feedback terms, as the search computes them (retrieve/feedback.py)."""
    from rag_cli.retrieve.feedback import expansion_terms

    return expansion_terms(query, texts, scores, FB_TERMS)


def collect(name: str, index: str, queries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    import numpy as np

    from rag_cli.config import load_settings
    from rag_cli.embed import base as embed_base
    from rag_cli.store.base import open_reader
    from rag_cli.store.local import faiss_index

    settings = load_settings(index=index)
    reader = open_reader(settings)
    reader.refresh()
    embedder = embed_base.create(settings)
    cost: dict[str, list[float]] = {"rm3": [], "rocchio": []}
    rows = []
    with reader.snapshot():
        for q in queries:
            row = dict(q)
            text = q["text"]
            base = reader.bm25(text, DEPTH)
            row["bm25"] = base
            t0 = time.perf_counter()
            top = base[:FB_DOCS]
            got = reader.chunks([i for i, _ in top])
            terms = (
                expansion(text, [got[i]["text"] for i, _ in top if i in got], [s for i, s in top if i in got])
                if top
                else []
            )
            extra = dict(reader.bm25(" ".join(terms), DEPTH)) if terms else {}
            cost["rm3"].append((time.perf_counter() - t0) * 1000)
            for lam in LAMBDAS:
                acc = dict(base)
                for i, s in extra.items():
                    acc[i] = acc.get(i, 0.0) + lam * s
                row[f"bm25 rm3 l={lam}"] = sorted(acc.items(), key=lambda x: -x[1])[:DEPTH]
            vec = embedder.embed_query(text)
            dense = reader.dense(vec, DEPTH)
            row["dense"] = dense
            t0 = time.perf_counter()
            fb = np.stack([faiss_index.reconstruct(reader.index, i) for i, _ in dense[:FB_DOCS_DENSE]]).mean(axis=0)
            for beta in BETAS:
                v = vec + beta * fb
                row[f"dense rocchio b={beta}"] = reader.dense((v / np.linalg.norm(v)).astype(np.float32), DEPTH)
            cost["rocchio"].append((time.perf_counter() - t0) * 1000 / len(BETAS))
            rows.append(row)
        ids = {i for r in rows for k, v in r.items() if isinstance(v, list) and k not in ("rel",) for i, _ in v}
        meta = reader.chunks(sorted(ids))
    reader.close()
    for r in rows:
        for k, v in list(r.items()):
            if k in ("rel", "text") or not isinstance(v, list):
                continue
            r[k] = [
                {"key": str(i), "doc": doc_name(name, meta[i]["doc_id"], meta[i]["path"]), "score": s}
                for i, s in v
                if i in meta
            ]
    return rows, {k: statistics.median(v) for k, v in cost.items() if v}


def main() -> None:
    env = rag_env(CACHE / "home")
    os.environ.update({k: env[k] for k in ("RAG_HOME", "HF_HUB_OFFLINE")})
    sets: dict[str, list[dict[str, Any]]] = {}
    costs: dict[str, dict[str, float]] = {}
    for name, (index, queries) in specs(env).items():
        sets[name], costs[name] = collect(name, index, queries)
    methods = ["bm25", *(f"bm25 rm3 l={lam}" for lam in LAMBDAS), "dense", *(f"dense rocchio b={b}" for b in BETAS)]
    ranks = {m: (lambda row, m=m: row[m]) for m in methods}
    ranks["RRF bm25 + dense"] = rrf({"bm25": 1.0, "dense": 1.0})
    for lam in LAMBDAS:
        for b in BETAS:
            ranks[f"RRF rm3 l={lam} + rocchio b={b}"] = rrf({f"bm25 rm3 l={lam}": 1.0, f"dense rocchio b={b}": 1.0})
    cols = [
        ("cranfield", "ndcg@10"),
        ("gitdocs", "hit@5"),
        ("gitdocs", "ndcg@10"),
        ("sample", "hit@5"),
        ("sample", "ndcg@10"),
    ]

    def against(method: str) -> str:
        return "bm25" if method.startswith("bm25") else "dense" if method.startswith("dense") else "RRF bm25 + dense"

    lines = [
        f"Feedback from the top {FB_DOCS} BM25 passages ({FB_TERMS} terms) and the top {FB_DOCS_DENSE} dense "
        f"passages; {DEPTH} candidates a list. Queries: "
        + ", ".join(f"{n} {len(r)}" for n, r in sets.items())
        + ". Each cell: the metric, and in brackets the change against the same method without feedback "
        "with its paired randomisation p.",
        "",
        "| method | " + " | ".join(f"{s} {m}" for s, m in cols) + " |",
        "| --- |" + " ---: |" * len(cols),
    ]
    for method, fn in ranks.items():
        cells = []
        for s, m in cols:
            mine = per_query(s, sets[s], fn)[m]
            cell = f"{sum(mine) / len(mine):.4f}"
            ref = against(method)
            if ref != method:
                base = per_query(s, sets[s], ranks[ref])[m]
                cell += f" ({(sum(mine) - sum(base)) / len(mine):+.4f}, p {paired_p(mine, base):.2f})"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Added cost per query (median ms, one query at a time on this machine): "
        + "; ".join(f"{n}: RM3 {c['rm3']:.1f}, Rocchio {c['rocchio']:.1f}" for n, c in costs.items())
        + ".",
    ]
    print("\n".join(lines))
    write_section("Pseudo-relevance feedback (bench/prf.py)", lines)


if __name__ == "__main__":
    main()
