"""Start-up: `rag --help` and each subcommand's --help, whole process, median of 5 runs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, median, rag_env, run_rag, write_section


def main() -> None:
    env = rag_env(CACHE / "home")
    rows = []
    for args in (
        ["--help"],
        ["index", "--help"],
        ["search", "--help"],
        ["ask", "--help"],
        ["chat", "--help"],
        ["serve", "--help"],
        ["eval", "--help"],
        ["--version"],
    ):
        times = []
        for _ in range(5):
            secs, rc, _, err, _ = run_rag(args, env)
            assert rc == 0, err
            times.append(secs)
        rows.append((" ".join(args), median(times)))
    lines = ["| command | median s |", "| --- | ---: |"] + [f"| `rag {a}` | {t:.3f} |" for a, t in rows]
    lines += ["", *profile_search(env)]
    write_section("Start-up (bench/startup.py)", lines)


def profile_search(env: dict[str, str]) -> list[str]:
    """Where the time of one whole-process `rag search` goes: imports by package, start-up stages, the query."""
    import re
    import subprocess
    import time
    from collections import defaultdict

    from bench.search import ensure_cranfield_index

    ensure_cranfield_index(CACHE / "home")
    out = []
    for label, extra in (("in-process (`--server off`)", ["--server", "off"]), ("warm path (running `rag serve`)", [])):
        proc = None
        if not extra:
            from bench.loadgen import start_serve

            proc, _ = start_serve(env, CACHE / "serve-profile.log", "--index", "cranfield")
        try:
            t0 = time.perf_counter()
            run = subprocess.run(
                [
                    sys.executable,
                    "-X",
                    "importtime",
                    "-m",
                    "rag_cli",
                    "search",
                    "flow past a cylinder",
                    "--index",
                    "cranfield",
                    "--timings",
                    *extra,
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            wall = (time.perf_counter() - t0) * 1000
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        assert run.returncode == 0, run.stderr[-2000:]
        by_pkg: dict[str, float] = defaultdict(float)
        for line in run.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)  # top-level imports only
            if m:
                by_pkg[m.group(2).split(".")[0]] += int(m.group(1)) / 1000
        stages = dict(
            re.findall(r"(\w[\w.]*)=([\d.]+)ms", next(x for x in run.stderr.splitlines() if x.startswith("timings:")))
        )
        imports = sum(by_pkg.values())
        top = sorted(by_pkg.items(), key=lambda kv: -kv[1])[:8]
        out += [
            f"Whole-process `rag search --timings` on Cranfield, {label}: {wall:.0f} ms in all; imports "
            f"{imports:.0f} ms ("
            + ", ".join(f"{k} {v:.0f}" for k, v in top)
            + "); "
            + ", ".join(
                f"{k} {float(v):.0f} ms" for k, v in stages.items() if k in ("open_index", "load_model", "total")
            )
            + f"; the rest ({max(0.0, wall - imports - sum(float(stages.get(k, 0)) for k in ('open_index', 'load_model', 'total'))):.0f} ms) "
            "is interpreter start, config, the event loop and exit (an import made inside a stage counts in "
            "both, so this rest is a lower bound).",
            "",
        ]
    return out


if __name__ == "__main__":
    main()
