"""Fusion functions measured on every evaluation set, each against its inputs and the plain
"bm25 + dense + equal-weight RRF" baseline, in the same run over the same candidate lists.

For each set the real index answers every query once per method (dense and BM25, ``DEPTH``
candidates each, as ``rag search`` fetches them); every fusion function then ranks the same
lists, so the differences are the functions' alone:

- Cranfield (BEIR, keyword-heavy): nDCG@10 over documents;
- gitdocs qa.jsonl (natural-language questions over the Git manual): hit@5 (a gold page among
  the top 5 passages) and nDCG@10 over pages;
- sample_corpus qa.jsonl: hit@5 and MRR@5.

Usage: python bench/fusion.py [--depth 30] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, ROOT, SHARED, rag_env, run_rag, write_section

GITDOCS = SHARED / "eval" / "gitdocs"


# -- collecting the candidate lists ------------------------------------------------------------
# the real search (FanOut.search, hybrid, 30 candidates a method as for k = 10) under each of these settings:
# fusion, dense weight, bm25 weight, BM25 feedback (RM3 weight), dense feedback (Rocchio beta), document bonus;
# the first is the default
FEEDBACK = (0.3, 1.0)  # config.Settings.retrieve_feedback_bm25 / _dense
BONUS = 0.25  # config.Settings.retrieve_document_bonus
PIPELINES = {
    "zscore + feedback + document order (default)": ("zscore", 1.0, 1.0, *FEEDBACK, BONUS),
    "zscore + feedback, passage order (before)": ("zscore", 1.0, 1.0, *FEEDBACK, 0.0),
    "zscore + feedback + document order b=0.1": ("zscore", 1.0, 1.0, *FEEDBACK, 0.1),
    "zscore + feedback + document order b=0.5": ("zscore", 1.0, 1.0, *FEEDBACK, 0.5),
    "zscore, no feedback, passage order": ("zscore", 1.0, 1.0, 0.0, 0.0, 0.0),
    "zscore + Rocchio only": ("zscore", 1.0, 1.0, 0.0, FEEDBACK[1], BONUS),
    "RRF k=60 + feedback + document order": ("rrf", 1.0, 1.0, *FEEDBACK, BONUS),
    "RRF k=60, no feedback, passage order": ("rrf", 1.0, 1.0, 0.0, 0.0, 0.0),
}
SINGLES = {
    "dense": ("dense", 0.0),
    "bm25": ("bm25", 0.0),
    "dense + Rocchio": ("dense", FEEDBACK[1]),
    "bm25 + RM3": ("bm25", FEEDBACK[0]),
}


def collect(name: str, index: str, queries: list[dict], depth: int, env: dict[str, str]) -> list[dict]:
    """Each query's dense and BM25 candidates (``{"key", "doc", "score"}``, best first), both scores of
    every candidate (``full``, as the search completes them) and the real hybrid search's ranking (``depth`` candidates a method, as for k = 10) under
    each of ``PIPELINES``."""
    os.environ.update({k: env[k] for k in ("RAG_HOME", "HF_HUB_OFFLINE")})
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.retrieve.service import Retrieval

    settings = load_settings(index=index, retrieve_timeout=60.0)

    async def go() -> list[dict]:
        out = []
        async with Retrieval(settings) as r:
            await r.prepare()
            fan, reader = r.fanout, r.reader
            assert fan is not None and reader is not None
            for q in queries:
                row = dict(q)
                for label, (mode, fb) in SINGLES.items():
                    for src in fan.sources:
                        src.feedback = fb
                    res = await fan.search(q["text"], k=depth, mode=mode)
                    row[label] = [{"key": h.key, "doc": doc_of(name, h), "score": h.score} for h in res.hits]
                ids = sorted({int(h["key"].rsplit(":", 1)[1]) for m in ("dense", "bm25") for h in row[m]})
                vec = r.embedder.embed_query(q["text"])
                with reader.snapshot():
                    full = reader.scores_for(ids, vec, q["text"], r.bm25_columns)
                row["full"] = {f"chunk:{path}:{i}": full[i] for path, i in _paths(row, ids)}
                for label, (fusion, wd, wb, fb_bm25, fb_dense, bonus) in PIPELINES.items():
                    fan.fusion = fusion
                    fan.document_bonus = bonus
                    for src in fan.sources:
                        src.weight = wd if src.kind == "dense" else wb
                        src.feedback = fb_dense if src.kind == "dense" else fb_bm25
                    res = await fan.search(q["text"], k=depth, mode="hybrid", candidates=depth)
                    row[label] = [{"key": h.key, "doc": doc_of(name, h), "score": h.score} for h in res.hits]
                out.append(row)
        return out

    return runtime.run(go())


def _paths(row: dict, ids: list[int]) -> list[tuple[str, int]]:
    by_id = {
        int(h["key"].rsplit(":", 1)[1]): h["key"].split(":", 1)[1].rsplit(":", 1)[0]
        for m in ("dense", "bm25")
        for h in row[m]
    }
    return [(by_id[i], i) for i in ids]


def doc_of(name: str, hit: Any) -> str:
    return doc_name(name, hit.doc_id, hit.path)


def doc_name(name: str, doc_id: str | None, path: str | None) -> str:
    """What a hit counts as in the judgements: a BEIR document id, or a page's path under its set's folder."""
    if name == "cranfield":
        return str(doc_id or "")
    path = str(path or "")
    root = str(GITDOCS) + "/" if name == "gitdocs" else str(ROOT / "sample_corpus") + "/"
    return path[len(root) :] if path.startswith(root) else path


def load_sets(depth: int, fresh: bool) -> dict[str, list[dict]]:
    env = rag_env(CACHE / "home")
    sets: dict[str, list[dict]] = {}
    # Cranfield: rag eval indexes the BEIR corpus into its cached eval index
    _, rc, out, err, _ = run_rag(["eval", str(CRANFIELD), "--mode", "bm25", "--json"], env)
    assert rc == 0, err
    index = json.loads(out)["index"]
    (CACHE / "fusion-cranfield-index.json").write_text(json.dumps({"index": index}))  # for bench/bm25_variants.py
    from rag_cli.eval.beir import load

    data = load(CRANFIELD)
    specs: dict[str, tuple[str, list[dict]]] = {
        "cranfield": (index, [{"text": t, "rel": sorted(data.qrels[q])} for q, t in data.queries.items()])
    }
    for name, folder, qa in (
        ("gitdocs", GITDOCS / "html", GITDOCS / "qa.jsonl"),
        ("sample", ROOT / "sample_corpus", ROOT / "sample_corpus" / "qa.jsonl"),
    ):
        _, rc, _, err, _ = run_rag(["index", str(folder), "--index", f"fusion-{name}"], env)
        assert rc == 0, err
        items = [json.loads(x) for x in qa.read_text().splitlines() if x.strip()]
        specs[name] = (
            f"fusion-{name}",
            [{"text": i["question"], "rel": i["gold_paths"]} for i in items if i.get("gold_paths")],
        )
    for name, (index, queries) in specs.items():
        cache = CACHE / f"fusion-v4-{name}-{depth}.json"
        if fresh or not cache.exists():
            cache.write_text(json.dumps(collect(name, index, queries, depth, env)))
        sets[name] = json.loads(cache.read_text())
        add_baseline(name, index, sets[name], env)
    return sets


def add_baseline(name: str, index: str, rows: list[dict], env: dict[str, str]) -> None:
    """The plain baseline's lists (bench/baseline.py: bm25s + Snowball, MiniLM exact cosine, RRF k=60, top 100
    each) for every query: over the BEIR documents for Cranfield (title + text, as a script would), over the
    index's own chunks for the folders."""
    from bench.baseline import Baseline
    from rag_cli.config import load_settings

    if name == "cranfield":
        base = Baseline.from_beir(CRANFIELD / "corpus.jsonl", CACHE)
    else:
        os.environ["RAG_HOME"] = env["RAG_HOME"]
        base = Baseline.from_index(load_settings(index=index).index_dir)
    for row in rows:
        for method, fn in (("base_bm25", base.bm25_ids), ("base_dense", base.dense_ids), ("base_rrf", base.rrf_ids)):
            row[method] = [{"key": f"base:{c}", "doc": _base_doc(name, base.row(c))} for c in fn(row["text"])]


def _base_doc(name: str, row: Any) -> str:
    return doc_name(name, row.doc_id, row.path)


# -- metrics ---------------------------------------------------------------------------------------
def docs(ranked: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for h in ranked:
        seen.setdefault(h["doc"], None)
    return list(seen)


def per_query(name: str, rows: list[dict], rank: Callable[[dict], list[dict]]) -> dict[str, list[float]]:
    """Each metric of each query."""
    from rag_cli.eval.metrics import mrr_at, ndcg_at

    out: dict[str, list[float]] = {"hit@5": [], "mrr@5": [], "ndcg@10": []}
    for r in rows:
        ranked = rank(r)
        rel = set(r["rel"])
        out["ndcg@10"].append(ndcg_at(docs(ranked), rel, 10))
        if name != "cranfield":  # passages: is a gold page among the top 5
            top5 = [h["doc"] for h in ranked[:5]]
            out["hit@5"].append(float(any(d in rel for d in top5)))
            out["mrr@5"].append(mrr_at(top5, rel, 5))
    return {m: v for m, v in out.items() if v}


def score_set(name: str, rows: list[dict], rank: Callable[[dict], list[dict]]) -> dict[str, float]:
    return {m: sum(v) / len(v) for m, v in per_query(name, rows, rank).items()}


def paired_p(a: list[float], b: list[float], rounds: int = 20000, seed: int = 7) -> float:
    """Two-sided p of a paired randomisation test: how often random sign flips of the per-query
    differences give a mean difference at least as large as the observed one."""
    import random

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    observed = abs(sum(diffs))
    if observed == 0:
        return 1.0
    rng = random.Random(seed)
    hits = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed - 1e-12 for _ in range(rounds))
    return (hits + 1) / (rounds + 1)


# -- fusion functions --------------------------------------------------------------------------------
def rrf(weights: dict[str, float], k: int = 60) -> Callable[[dict], list[dict]]:
    def rank(row: dict) -> list[dict]:
        acc: dict[str, float] = {}
        hit: dict[str, dict] = {}
        for m, w in weights.items():
            for r, h in enumerate(row[m], 1):
                acc[h["key"]] = acc.get(h["key"], 0.0) + w / (k + r)
                hit.setdefault(h["key"], h)
        return [hit[x] for x in sorted(acc, key=lambda x: -acc[x])]

    return rank


def single(m: str) -> Callable[[dict], list[dict]]:
    return lambda row: row[m]


def convex(alpha: float, norm: str = "minmax") -> Callable[[dict], list[dict]]:
    """alpha * N(dense) + (1 - alpha) * N(bm25); a list that misses a hit scores it at its minimum."""

    def normed(hits: list[dict], m: str) -> dict[str, float]:
        if not hits:
            return {}
        s = [h["score"] for h in hits]
        hi = max(s)
        lo = min(s) if norm == "minmax" else (0.0 if m == "bm25" else -1.0)
        span = (hi - lo) or 1.0
        return {h["key"]: (h["score"] - lo) / span for h in hits}

    def rank(row: dict) -> list[dict]:
        d, b = normed(row["dense"], "dense"), normed(row["bm25"], "bm25")
        dmin = min(d.values(), default=0.0)
        bmin = min(b.values(), default=0.0)
        hit = {h["key"]: h for m in ("bm25", "dense") for h in row[m]}
        acc = {x: alpha * d.get(x, dmin) + (1 - alpha) * b.get(x, bmin) for x in hit}
        return [hit[x] for x in sorted(acc, key=lambda x: -acc[x])]

    return rank


def normed(row: dict, hit: dict, m: str, norm: str = "z") -> dict[str, float]:
    """Method ``m``'s scores of the candidates ``hit`` (each has both), standardised (z), min-max or max-scaled."""
    v = {x: row["full"][x].get(m, 0.0) for x in hit}
    if norm == "z":
        mu = statistics.mean(v.values())
        sd = statistics.pstdev(v.values()) or 1.0
        return {x: (s - mu) / sd for x, s in v.items()}
    lo = min(v.values()) if norm == "minmax" else 0.0
    span = (max(v.values()) - lo) or 1.0
    return {x: (s - lo) / span for x, s in v.items()}


def completed(alpha: float, norm: str) -> Callable[[dict], list[dict]]:
    """alpha * N(dense) + (1 - alpha) * N(bm25) over the union of candidates, each with both scores."""

    def rank(row: dict) -> list[dict]:
        hit = {h["key"]: h for m in ("bm25", "dense") for h in row[m]}
        d, b = normed(row, hit, "dense", norm), normed(row, hit, "bm25", norm)
        acc = {x: alpha * d[x] + (1 - alpha) * b[x] for x in hit}
        return [hit[x] for x in sorted(acc, key=lambda x: -acc[x])]

    return rank


def adaptive(rule: str, power: float = 1.0) -> Callable[[dict], list[dict]]:
    """Query-adaptive weights for "completed z": each method weighted by how far its best candidates stand out
    of the candidates' scores (``top``: its best z-score; ``top3``: the mean of its best three; ``gap``: best
    minus tenth), to the ``power``, so a flat (weak) list for this query counts less."""

    def rank(row: dict) -> list[dict]:
        hit = {h["key"]: h for m in ("bm25", "dense") for h in row[m]}
        z: dict[str, dict[str, float]] = {}
        w: dict[str, float] = {}
        for m in ("dense", "bm25"):
            z[m] = normed(row, hit, m)
            own = sorted(z[m].values(), reverse=True)
            stand = {"top": own[0], "top3": statistics.mean(own[:3]), "gap": own[0] - own[min(9, len(own) - 1)]}[rule]
            w[m] = max(stand, 0.1) ** power
        acc = {x: sum(w[m] * z[m][x] for m in w) / sum(w.values()) for x in hit}
        return [hit[x] for x in sorted(acc, key=lambda x: -acc[x])]

    return rank


def pipeline(label: str) -> Callable[[dict], list[dict]]:
    return lambda row: row[label]


def by_document(fn: Callable[[dict], list[dict]], beta: float) -> Callable[[dict], list[dict]]:
    """Document-aware order of ``fn``'s passages: each document scores its best passage plus ``beta`` times the
    sum of its further passages (scores min-max normalised over the list), so that a document a chunker split is
    not ranked by a fragment alone; its passages follow in their own order (citations stay at the passage)."""

    def rank(row: dict) -> list[dict]:
        hits = fn(row)
        if not hits:
            return hits
        if "score" in hits[0]:
            s = [h["score"] for h in hits]
            lo, span = min(s), (max(s) - min(s)) or 1.0
            norm = [(h["score"] - lo) / span for h in hits]
        else:  # a list without scores (the baseline's): 1/rank
            norm = [1.0 / (60 + i) * 61 for i in range(len(hits))]
        groups: dict[str, list[tuple[float, dict]]] = {}
        for v, h in zip(norm, hits, strict=True):
            groups.setdefault(h["doc"], []).append((v, h))
        score = {d: g[0][0] + beta * sum(v for v, _ in g[1:]) for d, g in groups.items()}
        return [h for d in sorted(groups, key=lambda d: -score[d]) for _, h in groups[d]]

    return rank


def lifted(fn: Callable[[dict], list[dict]], beta: float, spread: bool = False) -> Callable[[dict], list[dict]]:
    """Document-aware order that keeps passages apart: a document's best passage is lifted by ``beta`` times the
    sum of its further passages' scores (min-max normalised over the list); the further passages keep their own
    score (``spread``: they come after every document's best passage instead)."""

    def rank(row: dict) -> list[dict]:
        hits = fn(row)
        if not hits or "score" not in hits[0]:
            return hits
        s = [h["score"] for h in hits]
        lo, span = min(s), (max(s) - min(s)) or 1.0
        first: dict[str, int] = {}
        extra: dict[str, float] = {}
        for i, h in enumerate(hits):
            if h["doc"] in first:
                extra[h["doc"]] = extra.get(h["doc"], 0.0) + (h["score"] - lo) / span
            else:
                first[h["doc"]] = i
        best = set(first.values())
        key = {}
        for i, h in enumerate(hits):
            own = (h["score"] - lo) / span
            key[i] = (
                0 if i in best or not spread else 1,
                -(own + beta * extra.get(h["doc"], 0.0) if i in best else own),
            )
        return [hits[i] for i in sorted(key, key=lambda i: key[i])]

    return rank


CANDIDATES: dict[str, Callable[[dict], list[dict]]] = {
    **{f"search: {label}": pipeline(label) for label in PIPELINES},
    **{label: single(label) for label in SINGLES},
    "baseline bm25 (bm25s + Snowball)": single("base_bm25"),
    "baseline dense (MiniLM exact)": single("base_dense"),
    "baseline RRF k=60": single("base_rrf"),
    "RRF equal (baseline)": rrf({"dense": 1.0, "bm25": 1.0}),
    "RRF dense 1 / bm25 1.5 (main)": rrf({"dense": 1.0, "bm25": 1.5}),
    "RRF dense 1.5 / bm25 1": rrf({"dense": 1.5, "bm25": 1.0}),
    "RRF k=20": rrf({"dense": 1.0, "bm25": 1.0}, 20),
    **{f"convex minmax a={a}": convex(a) for a in (0.3, 0.5, 0.7, 0.8)},
    **{f"convex TM2C2 a={a}": convex(a, "theory") for a in (0.3, 0.5, 0.7, 0.8)},
    **{f"completed {n} a={a}": completed(a, n) for n in ("z", "minmax", "tm") for a in (0.4, 0.5, 0.6)},
    **{f"completed z, adaptive {r}^{p}": adaptive(r, p) for r in ("top", "top3", "gap") for p in (1, 2)},
    # the document order computed here from the passage order, as a check of the search's own
    f"lifted b={BONUS} spread: passage order": lifted(
        pipeline("zscore + feedback, passage order (before)"), BONUS, True
    ),
    f"lifted b={BONUS} in place: passage order": lifted(pipeline("zscore + feedback, passage order (before)"), BONUS),
    **{
        f"by document b={b}: {m}": by_document(fn, b)
        for b in (0.1, 0.25, 0.5)
        for m, fn in (
            ("bm25", single("bm25")),
            ("dense", single("dense")),
            ("passage order", pipeline("zscore + feedback, passage order (before)")),
        )
    },
}


# the search's document order before the further candidates added documents (2026-12-06): the fused passage
# order's first 30 put in document order by the bench, which gave that search's figures exactly
PREVIOUS = f"lifted b={BONUS} spread: passage order"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=30, help="candidates per method (rag search fetches max(3k, 30))")
    ap.add_argument("--fresh", action="store_true", help="collect the candidate lists again")
    args = ap.parse_args()
    sets = load_sets(args.depth, args.fresh)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for cand, fn in CANDIDATES.items():
        table[cand] = {name: score_set(name, rows, fn) for name, rows in sets.items()}
        row = table[cand]
        print(
            f"{cand:32s} cran {row['cranfield']['ndcg@10']:.4f}  git hit@5 {row['gitdocs']['hit@5']:.3f} "
            f"ndcg {row['gitdocs']['ndcg@10']:.4f}  sample hit@5 {row['sample']['hit@5']:.3f} "
            f"mrr {row['sample']['mrr@5']:.3f}",
            flush=True,
        )
    cols = [
        ("cranfield", "ndcg@10"),
        ("gitdocs", "hit@5"),
        ("gitdocs", "ndcg@10"),
        ("sample", "hit@5"),
        ("sample", "mrr@5"),
    ]
    lines = [
        f"Candidate lists: {args.depth} per method from the real indexes; every function ranks the same lists. "
        f"Queries: Cranfield {len(sets['cranfield'])}, gitdocs {len(sets['gitdocs'])}, sample {len(sets['sample'])}.",
        "",
        "| fusion | " + " | ".join(f"{s} {m}" for s, m in cols) + " |",
        "| --- |" + " ---: |" * len(cols),
    ]
    for cand, row in table.items():
        lines.append(f"| {cand} | " + " | ".join(f"{row[s][m]:.4f}" for s, m in cols) + " |")
    default = f"search: {next(iter(PIPELINES))}"
    plain = ("baseline bm25 (bm25s + Snowball)", "baseline dense (MiniLM exact)", "baseline RRF k=60")
    lines += [
        "",
        f"Paired randomisation test (per query, two-sided) of `{default}` against the plain baseline's best "
        "method of each column (bench/baseline.py), against rag's better single input, and against the document "
        f"order of before (`{PREVIOUS}`: the first 30 fused passages only, ordered in the bench):",
        "",
        "| set metric | default - plain best | p | default - best single | p | default - before | p |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s_name, m in cols:
        rows = sets[s_name]
        mine = per_query(s_name, rows, CANDIDATES[default])[m]
        baseline = max(plain, key=lambda x: table[x][s_name][m])
        base = per_query(s_name, rows, CANDIDATES[baseline])[m]
        single_name = max(SINGLES, key=lambda x: table[x][s_name][m])
        single_q = per_query(s_name, rows, CANDIDATES[single_name])[m]
        before = per_query(s_name, rows, CANDIDATES[PREVIOUS])[m]
        n = len(mine)
        lines.append(
            f"| {s_name} {m} | {(sum(mine) - sum(base)) / n:+.4f} ({baseline}) | {paired_p(mine, base):.3f} | "
            f"{(sum(mine) - sum(single_q)) / n:+.4f} ({single_name}) | {paired_p(mine, single_q):.3f} | "
            f"{(sum(mine) - sum(before)) / n:+.4f} | {paired_p(mine, before):.3f} |"
        )
    print("\n".join(lines[-len(cols) - 2 :]))
    write_section("Fusion (bench/fusion.py)", lines)


if __name__ == "__main__":
    main()
