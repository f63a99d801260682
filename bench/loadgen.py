"""A small closed-loop HTTP load generator (aiohttp) shared by bench/serve_load.py and the load tests.

``concurrency`` clients each send one request at a time until ``total`` requests have been
sent; every request's status and latency is kept. Loopback only, bounded by ``total``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        s = sorted(self.latencies_ms)
        return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))] if s else float("nan")


async def run_load(
    base: str,
    queries: list[str],
    *,
    total: int,
    concurrency: int,
    k: int = 10,
    mode: str = "hybrid",
    token: str = "",
    timeout: float = 30.0,
) -> LoadResult:
    import aiohttp

    result = LoadResult()
    counter = iter(range(total))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def client() -> None:
            for i in counter:
                q = queries[i % len(queries)]
                url = f"{base}/search?q={quote(q)}&k={k}&mode={mode}"
                t0 = time.perf_counter()
                try:
                    async with session.get(url, headers=headers) as resp:
                        await resp.read()
                        result.statuses[resp.status] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    result.errors[type(exc).__name__] += 1
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - t0
    return result


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def start_serve(env: dict[str, str], log: Path, *args: str, timeout: float = 120) -> tuple[object, int]:
    """Start `rag serve --port 0 ARGS` and return (Popen, port) once it listens."""
    import re
    import subprocess
    import sys

    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag_cli", "serve", "--port", "0", *args],
            env=env,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=fh,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {log.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("serve did not start")
