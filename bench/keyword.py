"""BM25 from memory (store/local/bm25_memory.py) against FTS5 bm25(): per-query time, load time and memory.

Two indexes: the Cranfield index of bench/search.py (1,400 abstracts), and a synthetic one of 100,000
chunks (the default `[retrieve] bm25_memory_chunks` limit) whose texts are random runs of Cranfield
sentences, written straight into an index database so the bench does not wait for embeddings. Every
query is answered by both; the run counts queries whose scores differ (the test asserts none do).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, median, pct, write_section
from bench.loadgen import rss_mib
from bench.search import ensure_cranfield_index

WEIGHTS = (2.0, 2.0, 1.0)
SYNTHETIC_CHUNKS = 100_000


def synthetic_index(root: Path, n: int) -> Path:
    """An index folder with ``n`` chunks of 60-180 words drawn from Cranfield sentences (cached)."""
    from rag_cli.store import layout, schema

    index_dir = root / f"synthetic-{n}"
    data = index_dir / "data-synthetic"
    if (data / layout.DB).exists():
        return index_dir
    data.mkdir(parents=True, exist_ok=True)
    docs = [json.loads(line) for line in (CRANFIELD / "corpus.jsonl").read_text().splitlines()]
    sentences = [s.strip() for d in docs for s in d["text"].split(".") if len(s.split()) > 3]
    titles = [d.get("title", "") for d in docs]
    rng = random.Random(11)
    conn = schema.connect(data / layout.DB, create=True)
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO files(id, path, size, mtime_ns, hash, kind, indexed_at) VALUES (1, 'synthetic', 0, 0, '', 'txt', 0)"
    )
    for i in range(n):
        words: list[str] = []
        size = rng.randint(60, 180)
        while len(words) < size:
            words += [*rng.choice(sentences).split(), "."]
        conn.execute(
            "INSERT INTO chunks(file_id, ordinal, title, heading, text) VALUES (1, ?, ?, '', ?)",
            (i, rng.choice(titles), " ".join(words)),
        )
    schema.set_meta(conn, "generation", "1")
    schema.set_meta(conn, "chunk_count", str(n))
    conn.execute("COMMIT")
    conn.close()
    layout.write_manifest(data, {"synthetic": True})
    layout.atomic_write(index_dir / layout.CURRENT, data.name.encode())
    return index_dir


def measure(index_dir: Path, queries: list[str]) -> dict[str, float]:
    from rag_cli.store.local.reader import IndexReader

    fts = IndexReader(index_dir)
    mem = IndexReader(index_dir, bm25_memory_max=10**9)
    gen, count = fts._meta()  # no FAISS file is needed for keyword search
    fts.generation = mem.generation = gen
    fts.count = mem.count = count
    before = rss_mib(os.getpid())
    t0 = time.perf_counter()
    memory = mem.load_bm25_memory(WEIGHTS)
    load = time.perf_counter() - t0
    assert memory is not None
    grown = rss_mib(os.getpid()) - before
    out: dict[str, float] = {
        "chunks": memory.rows,
        "postings": len(memory.docs),
        "load_s": load,
        "mib": memory.nbytes / 2**20,
        "rss_mib": grown,
    }
    differ = 0
    for q in queries:
        differ += mem.bm25(q, 10, WEIGHTS) != fts.bm25(q, 10, WEIGHTS)
    out["differ"] = differ
    for name, reader in (("fts5", fts), ("memory", mem)):
        wall, cpu = [], []
        for _ in range(3):
            for q in queries:
                t0, c0 = time.perf_counter(), time.thread_time()
                reader.bm25(q, 10, WEIGHTS)
                wall.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.thread_time() - c0) * 1000)
        out[f"{name}_p50"], out[f"{name}_p99"], out[f"{name}_cpu"] = median(wall), pct(wall, 99), median(cpu)
    fts.close()
    mem.close()
    return out


def main() -> None:
    home = CACHE / "home"
    ensure_cranfield_index(home)
    queries = [json.loads(line)["text"] for line in (CRANFIELD / "queries.jsonl").read_text().splitlines()]
    rows = [
        ("Cranfield", measure(home / "indexes" / "cranfield", queries)),
        (f"synthetic {SYNTHETIC_CHUNKS:,}", measure(synthetic_index(CACHE, SYNTHETIC_CHUNKS), queries)),
    ]
    lines = [
        f"{len(queries)} Cranfield queries, k = 10, each answered 3 times by each; one process, one thread.",
        "",
        "| index | chunks | postings | load s | postings MiB | RSS growth MiB | FTS5 p50 / p99 ms | memory p50 / p99 ms "
        "| speed-up (p50) | queries whose top 10 differ |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['chunks']:,.0f} | {r['postings']:,.0f} | {r['load_s']:.2f} | {r['mib']:.1f} | "
            f"{r['rss_mib']:.0f} | {r['fts5_p50']:.2f} / {r['fts5_p99']:.2f} | {r['memory_p50']:.2f} / "
            f"{r['memory_p99']:.2f} | {r['fts5_p50'] / r['memory_p50']:.1f}x | {r['differ']:.0f} |"
        )
    lines += [
        "",
        "CPU per query (thread time, median): "
        + "; ".join(f"{name}: FTS5 {r['fts5_cpu']:.2f} ms, memory {r['memory_cpu']:.2f} ms" for name, r in rows),
    ]
    write_section("BM25 from memory (bench/keyword.py)", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
