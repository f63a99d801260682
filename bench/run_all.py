"""Run every benchmark in bench/ and collect their figures in bench/results.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "index.py",
    "embed_backends.py",
    "fanout.py",
    "search.py",
    "keyword.py",
    "serve_load.py",
    "loop_lag.py",
    "ann.py",
    "answer.py",
    "eval.py",
    "tune.py",
    "fusion.py",
    "startup.py",
    "chunking.py",
    "federated.py",
    "serve_ask.py",
    "postgres.py",
    "evidence_cache.py",
    "evidence_reach.py",
]


def main() -> int:
    failed = []
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        if rc:
            failed.append(name)
    print(f"results: {HERE / 'results.md'}")
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
