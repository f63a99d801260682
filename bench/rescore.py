"""A second stage, measured: re-score the default search's first passages by their best sentence.

The fused list (``bench/fusion.py``'s cached candidate lists, the real search's default ranking) keeps its
order below the first ``N`` passages; those ``N`` are ordered again by ``z(fused score) + w * z(stage two)``,
where stage two is a passage's best sentence against the question:

- ``maxcos``: the highest cosine between the question and one of the passage's sentences (MiniLM, the index's
  own embedder);
- ``evidence``: the answer pipeline's sentence score (``pipeline.evidence.score``: cosine plus the question's
  words weighted by their rarity among the candidates' sentences), the best of the passage's sentences.

Printed beside the default and the plain baseline (bench/baseline.py) for every set, with paired randomisation
tests. Usage: python bench/rescore.py [--depth 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, machine, rag_env, write_section
from bench.fusion import CANDIDATES, PIPELINES, load_sets, paired_p, per_query

DEFAULT = next(iter(PIPELINES))


def chunk_id(key: str) -> int:
    return int(key.rsplit(":", 1)[1])


def features(name: str, rows: list[dict], top: int) -> None:
    """Each row gains ``stage2``: chunk key -> {"maxcos", "evidence"} for its default list's first ``top``."""
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.pipeline.evidence import remembering, score
    from rag_cli.retrieve.service import Retrieval

    os.environ.update({k: v for k, v in rag_env(CACHE / "home").items() if k in ("RAG_HOME", "HF_HUB_OFFLINE")})
    index = rows[0]["index"]
    settings = load_settings(index=index, retrieve_timeout=60.0)

    async def go() -> float:
        spent = 0.0
        async with Retrieval(settings) as r:
            await r.prepare()
            reader = r.reader
            assert reader is not None
            embed = remembering(r.embedder.embed)  # each distinct sentence embedded once
            assert embed is not None
            for row in rows:
                hits = row[DEFAULT][:top]
                ids = [chunk_id(h["key"]) for h in hits]
                with reader.snapshot():
                    chunks = reader.chunks(ids)
                texts = [chunks[i]["text"] if i in chunks else "" for i in ids]
                t0 = time.perf_counter()
                sents = score(row["text"], texts, embed)
                cosines = embed([s.text for s in sents]) @ embed([row["text"]])[0] if sents else []
                best_cos: dict[int, float] = {}
                best_ev: dict[int, float] = {}
                for s, cos in zip(sents, cosines, strict=True):
                    c = float(cos)
                    best_cos[s.passage] = max(best_cos.get(s.passage, -1.0), c)
                    ev = s.score - 0.05 / (s.passage + 1)  # without the evidence's passage-rank bonus
                    best_ev[s.passage] = max(best_ev.get(s.passage, -1.0), ev)
                spent += time.perf_counter() - t0
                row["stage2"] = {
                    h["key"]: {"maxcos": best_cos.get(p, 0.0), "evidence": best_ev.get(p, 0.0)}
                    for p, h in enumerate(hits)
                }
        return spent

    spent = runtime.run(go())
    print(
        f"{name}: stage two over {len(rows)} queries in {spent:.1f} s ({1000 * spent / len(rows):.0f} ms a query)",
        flush=True,
    )


def z(values: list[float]) -> list[float]:
    mu = statistics.mean(values)
    sd = statistics.pstdev(values) or 1.0
    return [(v - mu) / sd for v in values]


def rescored(feature: str, weight: float, top: int) -> Callable[[dict], list[dict]]:
    def rank(row: dict) -> list[dict]:
        hits = row[DEFAULT]
        head, tail = hits[:top], hits[top:]
        if len(head) < 2:
            return hits
        fused = z([h["score"] for h in head])
        two = z([row["stage2"][h["key"]][feature] for h in head])
        combined = [f + weight * t for f, t in zip(fused, two, strict=True)]
        order = sorted(range(len(head)), key=lambda i: -combined[i])
        return [head[i] for i in order] + tail

    return rank


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=30)
    args = ap.parse_args()
    sets = load_sets(args.depth, False)
    cranfield = json.loads((CACHE / "fusion-cranfield-index.json").read_text())["index"]
    index_of = {"cranfield": cranfield, "gitdocs": "fusion-gitdocs", "sample": "fusion-sample"}  # fusion.py's names
    for name, rows in sets.items():
        for row in rows:
            row["index"] = index_of[name]
        features(name, rows, args.depth)
    methods: dict[str, Callable[[dict], list[dict]]] = {
        f"search: {DEFAULT}": CANDIDATES[f"search: {DEFAULT}"],
        "baseline bm25 (bm25s + Snowball)": CANDIDATES["baseline bm25 (bm25s + Snowball)"],
        "baseline dense (MiniLM exact)": CANDIDATES["baseline dense (MiniLM exact)"],
        "baseline RRF k=60": CANDIDATES["baseline RRF k=60"],
    }
    for feature in ("maxcos", "evidence"):
        for weight in (0.25, 0.5, 1.0):
            for top in (10, 20, 30):
                methods[f"{feature} w={weight} top {top}"] = rescored(feature, weight, top)
    cols = [
        ("cranfield", "ndcg@10"),
        ("gitdocs", "hit@5"),
        ("gitdocs", "ndcg@10"),
        ("sample", "hit@5"),
        ("sample", "mrr@5"),
    ]
    lines = [
        f"Machine: {machine()}. The default search's {args.depth} candidates (bench/fusion.py's cache); "
        "p: paired randomisation test against the default search.",
        "",
        "| method | " + " | ".join(f"{s} {m}" for s, m in cols) + " |",
        "| --- |" + " ---: |" * len(cols),
    ]
    base_q = {(s, m): per_query(s, sets[s], methods[f"search: {DEFAULT}"])[m] for s, m in cols}
    for label, fn in methods.items():
        cells = []
        for s, m in cols:
            q = per_query(s, sets[s], fn)[m]
            mean = sum(q) / len(q)
            cells.append(f"{mean:.4f} (p {paired_p(q, base_q[(s, m)]):.2f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    write_section("Second stage (bench/rescore.py)", lines)


if __name__ == "__main__":
    main()
