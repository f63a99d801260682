"""`rag serve` answering: /ask with 1, 4 and 16 concurrent clients, and /search beside it.

The default packaged reader answers `sample_corpus/qa.jsonl` questions over SSE; the server keeps its defaults (one
generation slot, a queue of 8). Per client count: time to the first event (`sources`) and to the first answer
text, total, how many were refused (429 with Retry-After), server RSS before and after. Then /search throughput
alone and while 4 /ask streams run, both in this run, as the baseline and its ratio.

Usage: python bench/serve_ask.py
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, ROOT, median, pct, rag_env, run_rag, write_section
from bench.loadgen import cpu_seconds, rss_mib, run_load, start_serve

HOME = CACHE / "home"
INDEX = "answer-sample"


def ensure_index() -> None:
    if (HOME / "indexes" / INDEX / "CURRENT").exists():
        return
    _, rc, _, err, _ = run_rag(["index", str(ROOT / "sample_corpus"), "--index", INDEX], rag_env(HOME))
    if rc != 0:
        raise SystemExit(err)


async def ask_one(http: Any, base: str, question: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    out: dict[str, Any] = {"status": 0, "first_event": None, "first_text": None, "total": None}
    async with http.post(f"{base}/ask", json={"question": question}, headers={"Accept": "text/event-stream"}) as resp:
        out["status"] = resp.status
        if resp.status != 200:
            await resp.read()
            out["total"] = time.perf_counter() - t0
            return out
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("event:"):
                name = line[6:].strip()
                if out["first_event"] is None:
                    out["first_event"] = time.perf_counter() - t0
                if name == "token" and out["first_text"] is None:
                    out["first_text"] = time.perf_counter() - t0
    out["total"] = time.perf_counter() - t0
    return out


async def clients(base: str, questions: list[str], n: int, each: int) -> tuple[list[dict[str, Any]], float]:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:

        async def client(i: int) -> list[dict[str, Any]]:
            return [await ask_one(http, base, questions[(i * each + j) % len(questions)]) for j in range(each)]

        t0 = time.perf_counter()
        runs = await asyncio.gather(*(client(i) for i in range(n)))
        return [r for rs in runs for r in rs], time.perf_counter() - t0


async def search_beside_asks(base: str, queries: list[str], questions: list[str], streams: int) -> Any:
    """/search load while ``streams`` clients keep asking (each asks again as soon as its answer ends)."""
    import aiohttp

    stop = asyncio.Event()

    async def asker(http: Any, i: int) -> int:
        done = 0
        while not stop.is_set():
            await ask_one(http, base, questions[(i + done) % len(questions)])
            done += 1
        return done

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        tasks = [asyncio.create_task(asker(http, i)) for i in range(streams)]
        await asyncio.sleep(3)  # the streams are generating
        res = await run_load(base, queries, total=1000, concurrency=10)
        stop.set()
        await asyncio.gather(*tasks)
    return res


def ms(x: float | None) -> str:
    return f"{x * 1000:.0f}" if x is not None else "-"


def main() -> None:
    ensure_index()
    qa = [json.loads(line) for line in (ROOT / "sample_corpus" / "qa.jsonl").read_text().splitlines() if line.strip()]
    questions = [q["question"] for q in qa if q.get("answers")]  # the answerable ones
    log = CACHE / "serve-ask.log"
    proc, port = start_serve(rag_env(HOME), log, "--index", INDEX)
    base = f"http://127.0.0.1:{port}"
    lines = [
        f"Index `{INDEX}` (sample_corpus), {len(questions)} questions of `sample_corpus/qa.jsonl` cycled, the "
        "default packaged reader, server defaults (1 generation slot, queue 8), SSE, loopback, 2 cores shared "
        "with the clients.",
        "",
        "| clients | answers asked | 200 | 429 | first event p50 / p90 ms | first text p50 / p90 ms | "
        "total p50 / p90 ms | wall s | server RSS before -> after MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    try:
        asyncio.run(clients(base, questions, 1, 2))  # warm-up: the model loads on the first answer
        for n, each in ((1, 8), (4, 4), (16, 2)):
            rss0 = rss_mib(proc.pid)
            runs, wall = asyncio.run(clients(base, questions, n, each))
            rss1 = rss_mib(proc.pid)
            ok = [r for r in runs if r["status"] == 200]
            first = [r["first_event"] for r in ok if r["first_event"] is not None]
            text = [r["first_text"] for r in ok if r["first_text"] is not None]
            total = [r["total"] for r in ok]
            refused = sum(r["status"] == 429 for r in runs)
            lines.append(
                f"| {n} | {len(runs)} | {len(ok)} | {refused} | {ms(median(first))} / {ms(pct(first, 90))} | "
                f"{ms(median(text))} / {ms(pct(text, 90))} | {ms(median(total))} / {ms(pct(total, 90))} | "
                f"{wall:.1f} | {rss0:.0f} -> {rss1:.0f} |"
            )
        queries = questions * 4
        asyncio.run(run_load(base, queries, total=200, concurrency=10))  # warm-up
        # interleaved rounds: this shared machine's speed drifts, so each figure is the median round's
        alone, beside, cpu = [], [], []
        for _ in range(3):
            alone.append(asyncio.run(run_load(base, queries, total=1000, concurrency=10)))
            cpu0 = cpu_seconds(proc.pid)
            beside.append(asyncio.run(search_beside_asks(base, queries, questions, 4)))
            cpu.append(cpu_seconds(proc.pid) - cpu0)
        lines += [
            "",
            "| /search, 10 clients, 3 interleaved rounds of 1,000 | rps, median (rounds) | p50 ms | p99 ms | non-200 |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        rates = {}
        for label, rs in [("alone", alone), ("while 4 /ask clients keep asking", beside)]:
            rates[label] = median([r.rps for r in rs])
            lat = [x for r in rs for x in r.latencies_ms]
            bad = sum(v for r in rs for st, v in r.statuses.items() if st != 200) + sum(
                sum(r.errors.values()) for r in rs
            )
            lines.append(
                f"| {label} | {rates[label]:.0f} ({' / '.join(f'{r.rps:.0f}' for r in rs)}) | "
                f"{pct(lat, 50):.1f} | {pct(lat, 99):.1f} | {bad} |"
            )
        ratio = rates["while 4 /ask clients keep asking"] / rates["alone"]
        lines += [
            "",
            f"/search beside /ask: {ratio:.2f}x its throughput alone (median rounds; server CPU "
            f"{median(cpu):.1f} s per mixed round).",
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    write_section("Serve answers (bench/serve_ask.py)", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
