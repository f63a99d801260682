"""Whole-process `rag ask` through a warm `rag serve` against cold in-process, and against the client of other
source trees asking the same server (bench/answer.warm_vs_cold): the default reader, sample_corpus questions,
alternating per question in one run.

Every tree's bytecode is compiled first, as an installed package has it (an environment that sets
PYTHONDONTWRITEBYTECODE never writes it for a source tree, and every run would compile each module again).

Usage: python bench/warm_ask.py [--client LABEL=TREE ...] [-n 10]
  e.g. git worktree add /tmp/pre 0e827b2 && python bench/warm_ask.py --client 0e827b2=/tmp/pre
"""

from __future__ import annotations

import argparse
import compileall
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.answer import SETS, warm_vs_cold
from bench.common import CACHE, ROOT, rag_env, run_rag, write_section


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", action="append", default=[], help="LABEL=TREE: another checkout's client")
    ap.add_argument("-n", type=int, default=10, help="questions")
    args = ap.parse_args()
    clients = {label: Path(tree).resolve() for label, _, tree in (c.partition("=") for c in args.client)}
    for tree in [ROOT, *clients.values()]:
        compileall.compile_dir(tree / "rag_cli", quiet=1)
    env = rag_env(CACHE / "home")
    _, rc, _, err, _ = run_rag(["index", str(SETS["sample"][0]), "--index", "answer-sample"], env)
    assert rc == 0, err
    lines = warm_vs_cold("answer-sample", SETS["sample"][1], env, n=args.n, clients=clients)
    print("\n".join(lines))
    write_section("Warm answers: the client's part (bench/warm_ask.py)", lines)


if __name__ == "__main__":
    main()
