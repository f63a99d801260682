"""`rag serve` under load on loopback: throughput, latency, RSS, event-loop lag, saturation.

Issue 7 goal: >= 200 requests/s with p99 <= 500 ms at 50 concurrent clients.
Issue 8: 5,000 /search requests from 50 clients with zero errors; RSS before and after;
a saturated server answers 503 at once instead of queueing.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, rag_env, write_section
from bench.loadgen import rss_mib, run_load, start_serve, threads
from bench.search import ensure_cranfield_index


def metric(base: str, name: str, label: str) -> float:
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    m = re.search(rf"^{name}\{{{label}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def main() -> None:
    home = CACHE / "home"
    ensure_cranfield_index(home)
    queries = [json.loads(line)["text"] for line in (CRANFIELD / "queries.jsonl").read_text().splitlines()]
    lines = [f"Cranfield index, {len(queries)} distinct queries cycled, k = 10, loopback, the load generator is "
             "a second process on the same 2 cores.", ""]  # fmt: skip
    lines += ["| run | clients | requests | rps | p50 ms | p99 ms | non-200 | errors | loop lag p99 ms |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    rss_lines = []
    runs = [("hybrid", "hybrid", {}), ("hybrid, query cache off (every embedding computed)", "hybrid",
             {"RAG_EMBED_QUERY_CACHE": "0"}), ("bm25", "bm25", {})]  # fmt: skip
    for label, mode, extra in runs:
        log = CACHE / f"serve-{mode}.log"
        proc, port = start_serve(rag_env(home, **extra), log, "--index", "cranfield")
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(run_load(base, queries, total=200, concurrency=10, mode=mode))  # warm-up
            rss0, th0 = rss_mib(proc.pid), threads(proc.pid)
            res = asyncio.run(run_load(base, queries, total=5000, concurrency=50, mode=mode))
            rss1, th1 = rss_mib(proc.pid), threads(proc.pid)
            lag = metric(base, "rag_event_loop_lag_seconds", 'stat="p99"') * 1000
            bad = sum(n for s, n in res.statuses.items() if s != 200)
            lines.append(f"| {label} | 50 | 5000 | {res.rps:.0f} | {res.pct(50):.1f} | {res.pct(99):.1f} | {bad} | "
                         f"{sum(res.errors.values())} | {lag:.1f} |")  # fmt: skip
            rss_lines.append(f"- {label}: server RSS {rss0:.0f} MiB before, {rss1:.0f} MiB after 5,000 requests; "
                             f"threads {th0} -> {th1}")  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    # saturation: a small in-flight limit and four times as many clients
    log = CACHE / "serve-sat.log"
    env = rag_env(home, RAG_SERVE_MAX_INFLIGHT="8")
    proc, port = start_serve(env, log, "--index", "cranfield")
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(run_load(base, queries, total=100, concurrency=4))
        res = asyncio.run(run_load(base, queries, total=2000, concurrency=200))
        busy = res.statuses.get(503, 0)
        lines.append(f"| saturated (max in-flight 8) | 200 | 2000 | {res.rps:.0f} | {res.pct(50):.1f} | "
                     f"{res.pct(99):.1f} | {busy} x 503 | {sum(res.errors.values())} | - |")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    lines += [
        "",
        *rss_lines,
        "",
        "Goals: >= 200 rps with p99 <= 500 ms at 50 clients (issue 7); zero errors (issue 8).",
    ]
    write_section("Serve under load (bench/serve_load.py)", lines)


if __name__ == "__main__":
    main()
