"""Embedding backends on Cranfield: PyTorch (sentence-transformers), ONNX Runtime fp32 and int8.

One run measures, on the same chunk texts:
(a) raw encode throughput of each backend in-process, model loaded (baseline: PyTorch `model.encode`);
(b) batch-size sweep and length sorting (on a 600-chunk sample);
(c) the goal's ratio in pairs: raw PyTorch `model.encode(texts)`, then a whole-process int8 index;
    whole-process `rag index` of Cranfield with each backend, as a ratio to (a) PyTorch;
(d) retrieval quality: `rag eval` nDCG@10 (dense, hybrid) with an index built by each backend.
Issue 7 goals: fp32 ONNX within 0.005 nDCG@10 of PyTorch; whole-process index >= 2x raw PyTorch encode.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, median, rag_env, run_rag, write_section
from bench.search import ensure_cranfield_index

BACKENDS = {  # label -> settings
    "PyTorch (sentence-transformers)": {"RAG_EMBED_BACKEND": "sentence-transformers"},
    "ONNX Runtime fp32": {"RAG_EMBED_BACKEND": "onnx", "RAG_EMBED_ONNX_VARIANT": "fp32"},
    "ONNX Runtime int8": {"RAG_EMBED_BACKEND": "onnx", "RAG_EMBED_ONNX_VARIANT": "int8"},
}


def chunk_texts(home: Path) -> list[str]:
    from rag_cli.store.local.reader import IndexReader
    from rag_cli.types import Chunk

    reader = IndexReader(home / "indexes" / "cranfield")
    rows = reader._conn().execute("SELECT title, heading, text FROM chunks ORDER BY id").fetchall()
    reader.close()
    return [Chunk("", t, ti, tuple(h.split(" > ")) if h else ()).embedding_text() for ti, h, t in rows]


def whole_index(env: dict[str, str], eval_quality: bool = False) -> tuple[float, dict[str, float]]:
    """Whole-process `rag index` of Cranfield in a fresh home: (chunks/s, nDCG@10 per mode if asked)."""
    work = Path(tempfile.mkdtemp(prefix="rag-bench-emb-"))
    try:
        e = rag_env(work / "home", **env)
        secs, rc, out, err, _ = run_rag(["index", str(CRANFIELD / "corpus.jsonl"), "--json"], e)
        assert rc == 0, err
        rate = json.loads(out)["chunks"]["added"] / secs
        quality: dict[str, float] = {}
        if eval_quality:
            _, rc, out, err, _ = run_rag(["eval", str(CRANFIELD), "--mode", "all", "--json"], e)
            assert rc == 0, err
            quality = {m: r["ndcg@10"] for m, r in json.loads(out)["results"].items()}
        return rate, quality
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    home = CACHE / "home"
    ensure_cranfield_index(home)
    os.environ["RAG_HOME"] = str(home)
    texts = chunk_texts(home)
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.embed.base import create
    from rag_cli.ingest.vectors import embed_parallel

    raw: dict[str, float] = {}
    vecs = {}
    for label, env in BACKENDS.items():
        settings = load_settings(
            embed_backend=env["RAG_EMBED_BACKEND"], embed_onnx_variant=env.get("RAG_EMBED_ONNX_VARIANT", "fp32")
        )
        emb = create(settings)
        emb.embed(texts[:64])  # load + warm up (exports/quantizes once if not cached)
        t0 = time.perf_counter()
        # as the index pipeline calls it: ONNX runs one single-threaded part per core in parallel
        vecs[label] = runtime.run(embed_parallel(emb, texts), monitor=False)
        raw[label] = len(texts) / (time.perf_counter() - t0)
    base = "PyTorch (sentence-transformers)"
    cos = {k: float((v * vecs[base]).sum(1).mean()) for k, v in vecs.items()}

    # batch size and sorting, ONNX fp32 and PyTorch, on a sample
    sample = random.Random(7).sample(texts, 600)
    sweep = []
    onnx = create(load_settings(embed_backend="onnx")).query_encoder()  # one run on all cores
    torch_model = create(load_settings()).model()
    best_torch = (0.0, 0)
    for bs in (8, 16, 32, 64, 128):
        t0 = time.perf_counter()
        onnx.encode(sample, batch_size=bs)
        o = len(sample) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch_model.encode(sample, batch_size=bs, normalize_embeddings=True)
        p = len(sample) / (time.perf_counter() - t0)
        best_torch = max(best_torch, (p, bs))
        sweep.append(f"| {bs} | {p:.1f} | {o:.1f} |")
    unsorted = unsorted_rate(onnx, sample, 32)

    # the goal's ratio, measured in pairs so that machine noise hits both sides alike: raw PyTorch
    # `model.encode(texts)` (library defaults, model loaded), then a whole-process int8 `rag index`
    pairs = []
    for _ in range(3):
        t0 = time.perf_counter()
        torch_model.encode(texts, normalize_embeddings=True)
        torch_rate = len(texts) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch_model.encode(texts, batch_size=best_torch[1], normalize_embeddings=True)
        best_rate = len(texts) / (time.perf_counter() - t0)
        int8_rate, _ = whole_index(BACKENDS["ONNX Runtime int8"])
        pairs.append((torch_rate, best_rate, int8_rate))

    # whole-process index and quality, per backend, each in a fresh home
    whole: dict[str, float] = {}
    quality: dict[str, dict[str, float]] = {}
    for label, env in BACKENDS.items():
        whole[label], quality[label] = whole_index(env, eval_quality=True)

    # pool size and batch size for a whole-process index (int8 backend, a 400-document subset)
    tune = []
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "subset.jsonl"
        subset.write_text("".join((CRANFIELD / "corpus.jsonl").read_text().splitlines(keepends=True)[:400]))
        for workers, batch in ((1, 32), (2, 32), (4, 32), (2, 8), (2, 16), (2, 64)):
            e = rag_env(
                Path(tmp) / f"h{workers}-{batch}",
                **BACKENDS["ONNX Runtime int8"],
                RAG_WORKERS=str(workers),
                RAG_EMBED_BATCH_SIZE=str(batch),
            )
            secs, rc, out, err, _ = run_rag(["index", str(subset), "--json"], e)
            assert rc == 0, err
            n = json.loads(out)["chunks"]["added"]
            tune.append(f"| {workers} | {batch} | {n / secs:.1f} |")

    p = raw[base]
    lines = [
        f"Cranfield, {len(texts)} chunks, all-MiniLM-L6-v2, batch {settings.embed_batch_size}, 2 cores. "
        "The ONNX graph is fused by ONNX Runtime's transformer optimizer (Attention, SkipLayerNorm, BiasGelu) "
        "before int8 quantization. The CPU exposes AVX2/FMA only (no AVX-512, no VNNI), so int8 runs on "
        "AVX2 kernels.",
        "",
        "**The goal's ratio**, measured in pairs (raw PyTorch encode, then a whole-process int8 `rag index`, "
        "three times; each pair shares the machine's state of the moment):",
        "",
        "| pair | raw `model.encode(texts)` chunks/s (defaults: batch 32) | raw PyTorch at its best batch "
        f"({best_torch[1]}) | whole-process `rag index`, int8 ONNX | ratio vs defaults | ratio vs best batch |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, (tr, br, ir) in enumerate(pairs, 1):
        lines.append(f"| {i} | {tr:.1f} | {br:.1f} | {ir:.1f} | {ir / tr:.2f} | {ir / br:.2f} |")
    med_def = median([ir / tr for tr, _, ir in pairs])
    med_best = median([ir / br for _, br, ir in pairs])
    lines += [
        "",
        f"Median ratio: **{med_def:.2f}x** raw `model.encode` with its defaults (goal >= 2.00), "
        f"{med_best:.2f}x raw PyTorch at its best batch size.",
        "",
        f"Per backend (one run each; baseline: raw PyTorch through rag's embedder, batch "
        f"{settings.embed_batch_size}, model loaded = {p:.1f} chunks/s):",
        "",
        "| backend | raw encode chunks/s | vs PyTorch | whole `rag index` chunks/s | vs raw PyTorch | "
        "mean cosine to PyTorch | nDCG@10 dense | nDCG@10 hybrid |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label in BACKENDS:
        q = quality[label]
        lines.append(
            f"| {label} | {raw[label]:.1f} | {raw[label] / p:.2f} | {whole[label]:.1f} | {whole[label] / p:.2f} "
            f"| {cos[label]:.4f} | {q['dense']:.4f} | {q['hybrid']:.4f} |"
        )
    fp32_delta = quality["ONNX Runtime fp32"]["dense"] - quality[base]["dense"]
    int8_delta = quality["ONNX Runtime int8"]["dense"] - quality[base]["dense"]
    lines += [
        "",
        f"nDCG@10 (dense) change against PyTorch: fp32 ONNX {fp32_delta:+.4f} (goal within 0.005), "
        f"int8 ONNX {int8_delta:+.4f}.",
        "",
        "Batch size sweep (600-chunk sample, chunks/s; both sort by length inside a call):",
        "",
        "| batch | PyTorch | ONNX fp32 |",
        "| ---: | ---: | ---: |",
        *sweep,
        "",
        "Whole-process `rag index` of a 400-document subset with the int8 backend, by pool workers and "
        "batch size (chunks/s, start-up included):",
        "",
        "| workers | batch | chunks/s |",
        "| ---: | ---: | ---: |",
        *tune,
        "",
        f"ONNX fp32 without length sorting (batch 32, same sample): {unsorted:.1f} chunks/s.",
    ]
    write_section("Embedding backends (bench/embed_backends.py)", lines)


def unsorted_rate(enc: object, texts: list[str], bs: int) -> float:
    """ONNX encode in input order (each batch padded to its own longest text) for the sorting comparison."""
    t0 = time.perf_counter()
    for i in range(0, len(texts), bs):
        enc.encode(texts[i : i + bs], batch_size=bs)  # type: ignore[attr-defined]  # one batch per call: no reordering
    return len(texts) / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
