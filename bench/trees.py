"""Two source trees (checkouts of two commits) measured alike in one run, alternating: index time, nDCG@10 and
search latency of `rag eval` on a BEIR set, for a change that must leave them unchanged (a refactor).

Each tree gets a fresh RAG_HOME and runs `rag eval DATASET --json` twice: the first indexes the corpus, the
second reuses the index, so the index time is the first run's wall time less the second's; nDCG@10 and the
search latency p50 per mode come from the second. The trees run with this interpreter (one venv for both:
their dependencies must agree), each on its own PYTHONPATH.

Usage: python bench/trees.py TREE_A TREE_B [--dataset ../shared/eval/cranfield] [--rounds 2]
  e.g. git worktree add /tmp/pre 2355fd8^ && git worktree add /tmp/post bf293f5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SHARED, rag_env, run_rag, write_section


def measure(tree: Path, dataset: Path) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="rag-trees-")
    env = rag_env(Path(home), PYTHONPATH=str(tree), TRANSFORMERS_OFFLINE="1")
    walls: list[float] = []
    report: dict[str, Any] = {}
    for _ in range(2):
        seconds, rc, out, err, _ = run_rag(["eval", str(dataset), "--json"], env, cwd=tree)
        walls.append(seconds)
        if rc != 0:
            raise SystemExit(f"{tree}: rag eval failed: {err[-2000:]}")
        report = json.loads(out)
    row: dict[str, Any] = {"index_s": walls[0] - walls[1]}
    for mode, metrics in report["results"].items():
        row[mode] = (metrics.get("ndcg@10"), report["latency"][mode]["total"]["p50"])
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs=2, type=Path)
    ap.add_argument("--dataset", type=Path, default=SHARED / "eval" / "cranfield")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--section", default="Two trees alike (bench/trees.py)")
    args = ap.parse_args()
    rows: list[tuple[int, Path, dict[str, Any]]] = []
    for rnd in range(args.rounds):
        for tree in args.trees:
            row = measure(tree.resolve(), args.dataset)
            rows.append((rnd, tree, row))
            print(rnd, tree, json.dumps(row), flush=True)
    modes = [m for m in rows[0][2] if m != "index_s"]
    lines = [
        f"`rag eval {args.dataset.name}` per tree, rounds alternating; index time = first run less second.",
        "",
        "| round | tree | index s | " + " | ".join(f"{m} nDCG@10 / p50 ms" for m in modes) + " |",
        "| ---: | --- | ---: |" + " ---: |" * len(modes),
    ]
    for rnd, tree, row in rows:
        cells = [f"{row[m][0]:.4f} / {row[m][1]:.1f}" for m in modes]
        lines.append(f"| {rnd} | {tree} | {row['index_s']:.1f} | " + " | ".join(cells) + " |")
    write_section(args.section, [*lines, ""])


if __name__ == "__main__":
    main()
