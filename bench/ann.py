"""Large indexes: exact flat search against the IVF index the store switches to above
``index_ann_threshold``, on 1M synthetic 384-d unit vectors (clustered, like sentence embeddings).

Reports build time, memory, single-query p50/p99 and recall@10 against flat for several nprobe.
Issue 7 goal: p50 <= 20 ms at recall@10 >= 0.95.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from bench.common import median, pct, write_section

N = int(os.environ.get("ANN_N", "1000000"))
D = 384
QUERIES = 300
LATENT = 32


def rss_mib() -> float:
    return loadgen.rss_mib(os.getpid())


def synthetic(n: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    """Points with a low intrinsic dimension, like sentence embeddings: a 32-d mixture of 200 Gaussian
    topics mapped into 384-d by a fixed random matrix, plus a little isotropic noise; L2-normalised."""
    w = np.random.default_rng(99).normal(0, 1, (LATENT, D)).astype(np.float32) / LATENT**0.5
    out = np.empty((n, D), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        z = centers[rng.integers(0, len(centers), m)] + rng.normal(0, 0.6, (m, LATENT)).astype(np.float32)
        x = z @ w + rng.normal(0, 0.3 / D**0.5, (m, D)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + m] = x
    return out


def timed_search(index: object, q: np.ndarray, k: int = 10) -> tuple[list[float], np.ndarray]:
    times, found = [], []
    for row in q:
        t0 = time.perf_counter()
        _, ids = index.search(row.reshape(1, -1), k)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t0) * 1000)
        found.append(ids[0])
    return times, np.array(found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def uniform(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on the sphere: no structure at all, the worst case for any ANN index."""
    out = rng.normal(0, 1, (n, D)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def cranfield() -> tuple[np.ndarray, np.ndarray]:
    """Real vectors: the Cranfield chunks of the bench index and its 225 queries, embedded by the model."""
    import json

    from bench.common import CACHE, CRANFIELD
    from bench.search import ensure_cranfield_index

    home = CACHE / "home"
    ensure_cranfield_index(home)
    os.environ["RAG_HOME"] = str(home)
    from rag_cli.config import load_settings
    from rag_cli.embed.base import create
    from rag_cli.store.local import faiss_index
    from rag_cli.store.local.reader import IndexReader

    reader = IndexReader(home / "indexes" / "cranfield")
    reader.refresh()
    xb, _ = faiss_index.flat_contents(reader.index)
    reader.close()
    texts = [json.loads(line)["text"] for line in (CRANFIELD / "queries.jsonl").read_text().splitlines()]
    q = create(load_settings()).embed_queries(texts)
    return np.ascontiguousarray(xb, dtype=np.float32), np.ascontiguousarray(q, dtype=np.float32)


def measure(name: str, xb: np.ndarray, q: np.ndarray, probes: tuple[int, ...]) -> list[str]:
    from rag_cli.store.local import faiss_index

    ids = np.arange(1, len(xb) + 1, dtype=np.int64)
    m0 = rss_mib()
    t0 = time.perf_counter()
    flat = faiss_index.empty_index(D)
    for s in range(0, len(xb), 100_000):
        flat.add_with_ids(xb[s : s + 100_000], ids[s : s + 100_000])
    flat_build, flat_mem = time.perf_counter() - t0, rss_mib() - m0
    flat_times, truth = timed_search(flat, q)
    del flat
    m0 = rss_mib()
    t0 = time.perf_counter()
    ivf = faiss_index.build_ivf(xb, ids, nprobe=32)
    ivf_build, ivf_mem = time.perf_counter() - t0, rss_mib() - m0
    lines = [
        f"| {name} | flat (exact) | {flat_build:.1f} | {flat_mem:.0f} | {median(flat_times):.2f} | "
        f"{pct(flat_times, 99):.2f} | 1.000 |"
    ]
    for nprobe in probes:
        ivf.nprobe = nprobe
        times, found = timed_search(ivf, q)
        mark = " (default)" if nprobe == 32 else ""
        lines.append(
            f"| {name} | IVF-Flat nlist {ivf.nlist}, nprobe {nprobe}{mark} | {ivf_build:.1f} | "
            f"{ivf_mem:.0f} | {median(times):.2f} | {pct(times, 99):.2f} | {recall(found, truth):.3f} |"
        )
    return lines


def main() -> None:
    import faiss

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (200, LATENT)).astype(np.float32)
    base = rss_mib()
    xb = synthetic(N, rng, centers)
    data_mib = rss_mib() - base
    rows = measure("embedding-like", xb, synthetic(QUERIES, rng, centers), (8, 16, 32, 64, 128))
    del xb
    xb = uniform(N, rng)
    rows += measure("uniform (worst case)", xb, uniform(QUERIES, rng), (32, 128, 512))
    del xb
    xb, q = cranfield()
    rows += measure(f"real: Cranfield chunks ({len(xb):,})", xb, q, (8, 32))
    lines = [
        f"{N:,} synthetic {D}-d unit vectors, {QUERIES} queries one at a time, k = 10, faiss {faiss.__version__} "
        f"on {faiss.omp_get_max_threads()} threads; vectors alone {data_mib:.0f} MiB. Embedding-like: a 32-d "
        "mixture of 200 topics mapped into 384-d plus noise (low intrinsic dimension, as sentence embeddings "
        "have). Uniform: random directions, no structure. Real: the Cranfield index's own vectors and queries.",
        "",
        "| data | index | build s | memory MiB | p50 ms | p99 ms | recall@10 vs flat |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "Goal: p50 <= 20 ms at recall@10 >= 0.95. The store switches from flat to IVF at 200,000 vectors "
        "(`index.ann_threshold`, nprobe `index.ann_nprobe` = 32).",
    ]
    write_section("Large indexes (bench/ann.py)", lines)


if __name__ == "__main__":
    main()
