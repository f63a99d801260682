"""Helpers shared by the benchmarks: machine description, medians, results file, subprocess timing."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CRANFIELD = SHARED / "eval" / "cranfield"
RESULTS = ROOT / "bench" / "results.md"
CACHE = ROOT / "bench" / ".cache"


def machine() -> str:
    cpu, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    simd = "/".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu} ({simd or 'no AVX'}), {len(os.sched_getaffinity(0))} cores, {mem:.0f} GiB, "
        f"Python {platform.python_version()}"
    )


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def rag_env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAG_HOME": str(home), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra}


def run_rag(
    args: list[str], env: dict[str, str], stdin: str | None = None, cwd: Path = ROOT
) -> tuple[float, int, str, str, float]:
    """Run `rag ARGS` and return (seconds, exit code, stdout, stderr, peak RSS in MiB). ``cwd``: where it runs
    (``python -m`` imports rag_cli from there first: another checkout's tree runs its own code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_cli", *args],
        env=env,
        cwd=cwd,
        text=True,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(stdin)
    seconds = time.perf_counter() - t0
    _, _, usage = os.wait4(proc.pid, os.WNOHANG) if proc.returncode is None else (0, 0, None)
    rss = 0.0
    if usage is None:
        import resource

        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, proc.returncode, out, err, rss


def write_section(name: str, lines: list[str]) -> None:
    """Replace the section ``name`` of bench/results.md with ``lines`` (other sections are kept)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    header = f"## {name}"
    parts = text.split("\n## ")
    kept = [parts[0]] + [p for p in parts[1:] if not p.startswith(name + "\n")]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join([header, "", f"_{stamp}; {machine()}_", "", *lines, ""])
    out = "\n## ".join(kept).rstrip() + "\n\n" + body
    RESULTS.write_text(out)
    print("\n".join([header, *lines]))
