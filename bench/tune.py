"""Try retrieval settings on Cranfield (cached eval index) and print nDCG@10 per variant.

What was tried is recorded in bench/results.md; the defaults in rag_cli/config.py are the outcome.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, write_section


def main() -> None:
    os.environ["RAG_HOME"] = str(CACHE / "home")
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.embed import base as embed_base
    from rag_cli.eval.beir import ensure_index, evaluate, load
    from rag_cli.retrieve.service import Retrieval

    data = load(CRANFIELD)
    base = load_settings(retrieve_timeout=60.0)
    emb = embed_base.create(base)
    variants = {
        "bm25 columns 2/2/1 (title, heading, body)": ("bm25", {}),
        "bm25 columns 1/1/1": ("bm25", {"retrieve_bm25_columns": [1.0, 1.0, 1.0]}),
        "hybrid rrf_k 60, weights dense 1 / bm25 1.5 (default)": ("hybrid", {}),
        "hybrid weights 1 / 1": ("hybrid", {"retrieve_weights": {"dense": 1.0, "bm25": 1.0}}),
        "hybrid weights dense 1.5 / bm25 1": ("hybrid", {"retrieve_weights": {"dense": 1.5, "bm25": 1.0}}),
        "hybrid weights dense 1 / bm25 2": ("hybrid", {"retrieve_weights": {"dense": 1.0, "bm25": 2.0}}),
        "hybrid rrf_k 20": ("hybrid", {"retrieve_rrf_k": 20}),
        "hybrid rrf_k 100": ("hybrid", {"retrieve_rrf_k": 100}),
        "hybrid, bm25 columns 1/1/1": ("hybrid", {"retrieve_bm25_columns": [1.0, 1.0, 1.0]}),
    }

    async def go() -> dict[str, float]:
        s0 = await ensure_index(data, base, emb)
        out = {}
        for name, (mode, change) in variants.items():
            s = replace(s0, **change)
            async with Retrieval(s) as r:
                await r.prepare(mode)
                res = await evaluate(data, s, [mode], r)
            out[name] = res[mode].metrics["ndcg@10"]
            print(f"{name}: {out[name]:.4f}", flush=True)
        return out

    scores = runtime.run(go())
    lines = [
        "Cranfield nDCG@10 for retrieval variants on the same index (chunks of 200 tokens, overlap 32):",
        "",
        "| variant | nDCG@10 |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v:.4f} |" for k, v in scores.items()]
    write_section("Tuning (bench/tune.py)", lines)


if __name__ == "__main__":
    main()
