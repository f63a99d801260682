"""Start-up: `rag --help` and each subcommand's --help, whole process, median of 5 runs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, median, rag_env, run_rag, write_section


def main() -> None:
    env = rag_env(CACHE / "home")
    rows = []
    for args in (["--help"], ["index", "--help"], ["search", "--help"], ["ask", "--help"], ["chat", "--help"],
                 ["serve", "--help"], ["eval", "--help"], ["--version"]):  # fmt: skip
        times = []
        for _ in range(5):
            secs, rc, _, err, _ = run_rag(args, env)
            assert rc == 0, err
            times.append(secs)
        rows.append((" ".join(args), median(times)))
    lines = ["| command | median s |", "| --- | ---: |"] + [f"| `rag {a}` | {t:.3f} |" for a, t in rows]
    write_section("Start-up (bench/startup.py)", lines)


if __name__ == "__main__":
    main()
