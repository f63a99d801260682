"""Event-loop health: how late the loop wakes up (lag) while it orchestrates heavy work.

(a) `rag index` of Cranfield alone: the indexing process's own loop lag (its --json report);
(b) `rag serve` taking 50 concurrent clients of /search while a `rag index` of Cranfield runs
    next to it on the same 2 cores: the server's lag (its /metrics) and the indexer's.
Issue 7 goal: loop-lag p99 <= 20 ms.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, ROOT, rag_env, run_rag, write_section
from bench.loadgen import run_load, start_serve
from bench.search import ensure_cranfield_index
from bench.serve_load import metric


def main() -> None:
    home = CACHE / "home"
    ensure_cranfield_index(home)
    queries = [json.loads(line)["text"] for line in (CRANFIELD / "queries.jsonl").read_text().splitlines()]
    corpus = str(CRANFIELD / "corpus.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        _, rc, out, err, _ = run_rag(["index", corpus, "--json"], rag_env(Path(tmp) / "home"))
        assert rc == 0, err
        alone = json.loads(out)["loop_lag_ms"]

        proc, port = start_serve(
            rag_env(home, RAG_EMBED_QUERY_CACHE="0"), CACHE / "serve-lag.log", "--index", "cranfield"
        )
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(run_load(base, queries, total=100, concurrency=10))
            indexer = subprocess.Popen(
                [sys.executable, "-m", "rag_cli", "index", corpus, "--json"],
                cwd=ROOT,
                env=rag_env(Path(tmp) / "home2"),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            rounds = []
            while indexer.poll() is None:
                res = asyncio.run(run_load(base, queries, total=500, concurrency=50, timeout=60))
                rounds.append(res)
            idx_out, _ = indexer.communicate()
            both_indexer = json.loads(idx_out)["loop_lag_ms"]
            serve_p99 = metric(base, "rag_event_loop_lag_seconds", 'stat="p99"') * 1000
            serve_max = metric(base, "rag_event_loop_lag_seconds", 'stat="max"') * 1000
        finally:
            proc.terminate()
            proc.wait(30)
    requests = sum(len(r.latencies_ms) for r in rounds)
    errors = sum(sum(r.errors.values()) + sum(n for s, n in r.statuses.items() if s != 200) for r in rounds)
    lat = sorted(x for r in rounds for x in r.latencies_ms)
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] if lat else float("nan")
    lines = [
        "Loop lag: how late a 20 ms timer fires on the event loop (sampled all run long).",
        "",
        "| situation | process | lag p50 ms | lag p99 ms | lag max ms |",
        "| --- | --- | ---: | ---: | ---: |",
        f"| `rag index` Cranfield alone | indexer | {alone['p50']:.1f} | {alone['p99']:.1f} | {alone['max']:.1f} |",
        f"| index + serve under 50 clients | indexer | {both_indexer['p50']:.1f} | {both_indexer['p99']:.1f} | "
        f"{both_indexer['max']:.1f} |",
        f"| index + serve under 50 clients | server | - | {serve_p99:.1f} | {serve_max:.1f} |",
        "",
        f"While the indexer ran, the server answered {requests} hybrid searches (query cache off) with {errors} "
        f"errors, request p99 {p99:.0f} ms. Goal: lag p99 <= 20 ms.",
    ]
    write_section("Event-loop lag (bench/loop_lag.py)", lines)


if __name__ == "__main__":
    main()
