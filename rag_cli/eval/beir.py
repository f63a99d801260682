"""Retrieval evaluation on a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv).

The corpus is indexed once into an index named by the corpus content hash and the
index fingerprint (``eval-<hash>``), so repeated evals do not re-embed. Each query
retrieves chunks, which are collapsed to documents (first occurrence wins) and
scored with the metrics in :mod:`rag_cli.eval.metrics`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import runtime
from ..config import Settings
from ..errors import IndexError_, UsageError
from .metrics import RETRIEVAL_METRICS, percentile

DEPTH = 100  # documents ranked per query (Recall@100, MAP@100)


@dataclass
class BeirData:
    corpus: Path
    queries: dict[str, str]
    qrels: dict[str, set[str]]
    skipped_queries: int = 0


def is_beir(path: Path) -> bool:
    return path.is_dir() and (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file()


def load(path: Path, split: str = "test") -> BeirData:
    qrels_file = path / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        raise UsageError(f"{path} has no qrels/{split}.tsv")
    qrels: dict[str, set[str]] = defaultdict(set)
    with open(qrels_file, newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for row in reader:
            if len(row) < 3 or row[0] == "query-id":
                continue
            try:
                if float(row[2]) > 0:
                    qrels[row[0]].add(row[1])
            except ValueError:
                continue
    queries: dict[str, str] = {}
    skipped = 0
    qfile = path / "queries.jsonl"
    for n, line in enumerate(qfile.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise UsageError(f"{qfile}:{n}: not JSON") from None
        if not isinstance(obj, dict) or "_id" not in obj or not isinstance(obj.get("text"), str):
            raise UsageError(f"{qfile}:{n}: every query needs an '_id' and a 'text' string")
        qid = str(obj["_id"])
        if qrels.get(qid):
            queries[qid] = obj["text"]
        else:
            skipped += 1
    return BeirData(path / "corpus.jsonl", queries, dict(qrels), skipped)


def eval_index_name(corpus: Path, fingerprint: dict[str, Any]) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(corpus, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps(fingerprint, sort_keys=True).encode())
    return f"eval-{h.hexdigest()}"


@dataclass
class ModeResult:
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    latency: dict[str, dict[str, float]] = field(default_factory=dict)


async def ensure_index(data: BeirData, settings: Settings, embedder: Any, progress: Any = None) -> Settings:
    """Index the corpus into its cached eval index; returns settings pointing at it."""
    from ..ingest.pipeline import chunker_config, fingerprint, index_paths

    name = eval_index_name(data.corpus, fingerprint(embedder, chunker_config(settings, embedder)))
    s = replace(settings, index=name)
    report = await index_paths([data.corpus], s, embedder, progress=progress)
    if report.skipped:
        # scores over a corpus that is not all there measure nothing: say so instead of reporting them
        why = "; ".join(f"{Path(x['path']).name}: {x['reason']}" for x in report.skipped[:3])
        raise IndexError_(
            f"the corpus was not fully indexed, so no score would mean anything ({why})",
            hint="fix the cause, or raise [index] file_timeout / RAG_INDEX_FILE_TIMEOUT (0 turns the budget off)",
        )
    return s


async def evaluate(data: BeirData, settings: Settings, modes: list[str], retrieval: Any) -> dict[str, ModeResult]:
    out: dict[str, ModeResult] = {}
    for mode in modes:
        per_query: dict[str, dict[str, float]] = {}
        stages: dict[str, list[float]] = defaultdict(list)
        for qid, text in data.queries.items():
            t0 = time.perf_counter()
            res = await retrieval.search(text, k=DEPTH * 2, mode=mode)
            stages["total"].append((time.perf_counter() - t0) * 1000)
            for key, ms in res.timings.items():
                if key != "total":
                    stages[key].append(ms)
            ranked: list[str] = []
            seen: set[str] = set()
            for h in res.hits:
                doc = h.doc_id or h.path or ""
                if doc not in seen:
                    seen.add(doc)
                    ranked.append(doc)
            rel = data.qrels[qid]
            per_query[qid] = {name: fn(ranked[:DEPTH], rel) for name, fn in RETRIEVAL_METRICS.items()}
        n = len(per_query) or 1
        metrics = {name: round(sum(q[name] for q in per_query.values()) / n, 4) for name in RETRIEVAL_METRICS}
        latency = {
            k: {"p50": round(percentile(v, 50), 2), "p95": round(percentile(v, 95), 2)} for k, v in stages.items()
        }
        out[mode] = ModeResult(metrics, per_query, latency)
    return out


def run_beir(
    path: Path, settings: Settings, modes: list[str], progress: Any = None
) -> tuple[BeirData, dict[str, ModeResult], str]:
    from ..embed import base as embed_base
    from ..retrieve.service import Retrieval

    data = load(path)
    embedder = embed_base.create(settings)

    async def go() -> tuple[dict[str, ModeResult], str]:
        s = await ensure_index(data, settings, embedder, progress)
        # evaluation measures quality, not deadlines: a slow machine must not turn into lost results
        async with Retrieval(replace(s, sources=[], retrieve_timeout=max(settings.retrieve_timeout, 60.0))) as r:
            await r.prepare("dense" if any(m != "bm25" for m in modes) else "bm25")
            return await evaluate(data, s, modes, r), s.index

    results, index = runtime.run(go(), workers=settings.effective_workers())
    return data, results, index
