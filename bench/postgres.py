"""The PostgreSQL + pgvector store against the local FAISS + SQLite store, in one run, on Cranfield.

- indexing: whole-process `rag index` of corpus.jsonl (the default model), chunks/s, each store fresh;
- quality: `rag eval --mode all` nDCG@10 per mode (goal: within 0.01 of the local store);
- warm search: p50/p99 per mode in-process, 100 queries, every query embedded;
- `rag serve` /search throughput at 50 clients: the local store, PostgreSQL with one replica, and with two
  replicas (25 clients each, at once) on one database;
- HNSW alone: ``ANN_N`` synthetic embedding-like 384-d vectors (bench/ann.py's generator; 200,000 by
  default, ANN_N=1000000 for the issue's million) copied into pgvector: build time, recall@10 against exact
  search, p50 per ``hnsw.ef_search``.

The database is pgserver's (PostgreSQL 16 + pgvector from pip) under bench/.cache/pgdata, on the same 2 cores.

Usage: python bench/postgres.py [--skip-serve] [--skip-ann] [--ann-only]  (ANN_N=1000000 for a million vectors)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from bench.common import CACHE, CRANFIELD, median, pct, rag_env, run_rag, write_section


def warm_latency(env: dict[str, str], queries: list[str]) -> dict[str, tuple[float, float]]:
    code = r"""
import json, sys, time
from rag_cli import runtime
from rag_cli.config import load_settings
from rag_cli.retrieve.service import Retrieval
queries = json.loads(sys.argv[1])
s = load_settings(index="cran", retrieve_timeout=30.0, embed_query_cache=0)
async def go():
    out = {}
    async with Retrieval(s) as r:
        await r.prepare()
        for q in queries[:10]:
            await r.search(q, k=10)
        for mode in ("bm25", "dense", "hybrid"):
            t = []
            for q in queries:
                t0 = time.perf_counter(); await r.search(q, k=10, mode=mode); t.append((time.perf_counter() - t0) * 1000)
            out[mode] = t
    return out
print(json.dumps(runtime.run(go())))
"""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(queries)], env=env, capture_output=True, text=True, timeout=1800
    )
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    lat = json.loads(out.stdout.strip().splitlines()[-1])
    return {m: (median(t), pct(t, 99)) for m, t in lat.items()}


def serve_load(env: dict[str, str], queries: list[str], replicas: int, work: Path) -> tuple[float, float, int]:
    procs = [loadgen.start_serve(env, work / f"serve-{replicas}-{i}.log", "--index", "cran") for i in range(replicas)]
    try:
        per = 50 // replicas

        async def go() -> list[loadgen.LoadResult]:
            bases = [f"http://127.0.0.1:{port}" for _, port in procs]
            for b in bases:  # warm
                await loadgen.run_load(b, queries[:20], total=40, concurrency=4)
            return await asyncio.gather(*(loadgen.run_load(b, queries, total=1000, concurrency=per) for b in bases))

        results = asyncio.run(go())
    finally:
        for proc, _ in procs:
            proc.terminate()  # type: ignore[attr-defined]
            proc.wait(30)  # type: ignore[attr-defined]
    seconds = max(r.seconds for r in results)
    lat = sorted(x for r in results for x in r.latencies_ms)
    bad = sum(len(r.latencies_ms) - r.ok for r in results)
    return sum(len(r.latencies_ms) for r in results) / seconds, lat[round(0.99 * (len(lat) - 1))], bad


def hnsw(url: str, n: int) -> list[str]:
    import numpy as np
    import psycopg

    from bench.ann import LATENT, QUERIES, synthetic

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (200, LATENT)).astype(np.float32)
    xb = synthetic(n, rng, centers)
    q = synthetic(QUERIES, rng, centers)
    truth = np.argsort(-(q @ xb.T), axis=1)[:, :10]
    rows = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP TABLE IF EXISTS bench_ann")
        conn.execute("CREATE TABLE bench_ann (id bigint PRIMARY KEY, v vector(384))")
        t0 = time.perf_counter()
        with conn.cursor().copy("COPY bench_ann (id, v) FROM STDIN") as cp:
            for i, row in enumerate(xb):
                cp.write_row((i, "[" + ",".join(f"{x:.6g}" for x in row) + "]"))
        load_s = time.perf_counter() - t0
        conn.execute("SET maintenance_work_mem = '4GB'")  # the graph of 1M vectors (about 2 GB) fits
        conn.execute("SET max_parallel_maintenance_workers = 1")
        t0 = time.perf_counter()
        conn.execute("CREATE INDEX ON bench_ann USING hnsw (v vector_ip_ops)")
        build_s = time.perf_counter() - t0
        size = conn.execute("SELECT pg_relation_size('bench_ann_v_idx')").fetchone()[0] / 2**20
        for ef in (40, 100, 200):
            conn.execute(f"SET hnsw.ef_search = {ef}")
            times, found = [], []
            for row in q:
                text = "[" + ",".join(f"{x:.6g}" for x in row) + "]"
                t0 = time.perf_counter()
                ids = [
                    r[0] for r in conn.execute("SELECT id FROM bench_ann ORDER BY v <#> %s::vector LIMIT 10", (text,))
                ]
                times.append((time.perf_counter() - t0) * 1000)
                found.append(ids)
            rec = float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]))
            rows.append(
                f"| {n:,} | {ef} | {load_s:.0f} | {build_s:.0f} | {size:.0f} | {median(times):.2f} | "
                f"{pct(times, 99):.2f} | {rec:.3f} |"
            )
        conn.execute("DROP TABLE bench_ann")
    return rows


ANN_HEAD = (
    "HNSW in pgvector alone (m 16, ef_construction 64, the defaults; synthetic embedding-like vectors as in "
    "bench/ann.py; recall@10 against exact inner product; one query at a time over psycopg):"
)
ANN_TABLE = [
    "| vectors | ef_search | COPY s | build s | index MiB | p50 ms | p99 ms | recall@10 |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]


def main() -> None:
    import pgserver

    work = CACHE / "pg-bench"
    work.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.rmtree(CACHE / "pgdata", ignore_errors=True)  # a fresh database each run: nothing cached from another rag
    server = pgserver.get_server(str(CACHE / "pgdata"), cleanup_mode="stop")
    url = server.get_uri()
    queries = [json.loads(x)["text"] for x in (CRANFIELD / "queries.jsonl").read_text().splitlines()][:100]
    stores = {
        "local (FAISS + SQLite)": rag_env(work / "home-local", RAG_INDEX="cran"),
        "PostgreSQL + pgvector": rag_env(work / "home-pg", RAG_INDEX="cran", RAG_STORE_URL=url),
    }
    rows: dict[str, dict] = {}
    if "--ann-only" in sys.argv:
        try:
            ann = hnsw(url, int(os.environ.get("ANN_N", "200000")))
        finally:
            server.cleanup()
        write_section("PostgreSQL HNSW (bench/postgres.py --ann-only)", [ANN_HEAD, "", *ANN_TABLE, *ann])
        return
    try:
        for name, env in stores.items():
            secs, rc, out, err, _ = run_rag(["index", str(CRANFIELD / "corpus.jsonl"), "--rebuild", "--json"], env)
            assert rc == 0, err
            rep = json.loads(out)
            _, rc, out, err, _ = run_rag(["eval", str(CRANFIELD), "--mode", "all", "--json"], env)
            assert rc == 0, err
            ev = json.loads(out)
            rows[name] = {"secs": secs, "chunks": rep["chunks"]["added"], "eval": ev, "lat": warm_latency(env, queries)}
            print(name, rows[name]["secs"], {m: r["ndcg@10"] for m, r in ev["results"].items()}, flush=True)
        serve = {}
        if "--skip-serve" not in sys.argv:
            serve["local (FAISS + SQLite), 1 server"] = serve_load(stores["local (FAISS + SQLite)"], queries, 1, work)
            for n in (1, 2):
                serve[f"PostgreSQL, {n} replica{'s' * (n > 1)}"] = serve_load(
                    stores["PostgreSQL + pgvector"], queries, n, work
                )
        ann = [] if "--skip-ann" in sys.argv else hnsw(url, int(os.environ.get("ANN_N", "200000")))
    finally:
        server.cleanup()

    local = rows["local (FAISS + SQLite)"]
    lines = [
        "Cranfield (corpus.jsonl, 1,398 documents), all-MiniLM-L6-v2, the same run; PostgreSQL 16 + pgvector "
        "0.6 from pgserver on the same machine (unix socket).",
        "",
        "| store | index s (whole process) | chunks/s | nDCG@10 bm25 / dense / hybrid | vs local | "
        "warm p50 / p99 ms bm25 | dense | hybrid |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        nd = {m: r["eval"]["results"][m]["ndcg@10"] for m in ("bm25", "dense", "hybrid")}
        base = {m: local["eval"]["results"][m]["ndcg@10"] for m in nd}
        lat = r["lat"]
        lines.append(
            f"| {name} | {r['secs']:.1f} | {r['chunks'] / r['secs']:.1f} | "
            f"{nd['bm25']:.4f} / {nd['dense']:.4f} / {nd['hybrid']:.4f} | "
            f"{' / '.join(f'{nd[m] - base[m]:+.4f}' for m in nd)} | "
            + " | ".join(f"{lat[m][0]:.1f} / {lat[m][1]:.1f}" for m in ("bm25", "dense", "hybrid"))
            + " |"
        )
    if serve:
        lines += [
            "",
            "`rag serve` /search, hybrid, 50 clients (split evenly over the replicas, at once), 100 Cranfield "
            "queries cycled, 1,000 requests a replica, every query embedded unless cached:",
            "",
            "| setup | requests/s | p99 ms | non-200 |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [f"| {k} | {v[0]:.0f} | {v[1]:.0f} | {v[2]} |" for k, v in serve.items()]
    if ann:
        lines += ["", ANN_HEAD, "", *ANN_TABLE, *ann]
    write_section("PostgreSQL store (bench/postgres.py)", lines)


if __name__ == "__main__":
    main()
