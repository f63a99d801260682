"""Fan-out scaling: N = 1..16 loopback sources, each delaying L, queried concurrently.

Prints total retrieval time against L (the ideal) and against N x L (sequential). Target (issue 4): the
extra time over L stays <= 1.2 x L up to N = 16, i.e. total <= 2.2 x L.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median, write_section


def main() -> None:
    import os

    os.environ["RAG_HOME"] = tempfile.mkdtemp(prefix="rag-bench-fanout-")
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.retrieve.service import Retrieval
    from tests.fakeserver import FakeSearchServer

    latency = 0.2
    rows = []
    with FakeSearchServer() as server:
        for n in (1, 2, 4, 8, 16):
            settings = load_settings(retrieve_timeout=5.0)
            settings.sources = [
                {
                    "name": f"s{i}",
                    "type": "http",
                    "url": server.url(f"/slow?delay={latency}&tag=s{i}&q={{query}}"),
                    "results": "data.results",
                    "fields": {"text": "snippet", "url": "link"},
                }
                for i in range(n)
            ]

            async def go(settings=settings) -> list[float]:
                times = []
                async with Retrieval(settings, use_index=False) as r:
                    await r.search("warm up")
                    for _ in range(7):
                        t0 = time.perf_counter()
                        res = await r.search("query")
                        times.append(time.perf_counter() - t0)
                        assert not res.degraded, res.degraded
                return times

            total = median(runtime.run(go()))
            rows.append((n, total))
    lines = [
        f"Loopback sources each answering after L = {latency * 1000:.0f} ms; median of 7 queries per N.",
        "",
        "| N sources | total ms | total / L | extra over L, in L | total / (N x L) sequential |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, total in rows:
        lines.append(
            f"| {n} | {total * 1000:.0f} | {total / latency:.2f} | {(total - latency) / latency:.2f} (target <= 1.2) | {total / (n * latency):.3f} |"
        )
    write_section("Fan-out (bench/fanout.py)", lines)


if __name__ == "__main__":
    main()
