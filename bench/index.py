"""Indexing throughput on Cranfield (1,398 docs), in one run.

(a) raw ceiling: SentenceTransformer.encode of the very same chunk texts, same batch size, model preloaded;
(b) `rag index` end to end: whole process (imports, model load, load/chunk/embed/write) and in-process
    (the pipeline with the model already loaded);
and the no-change re-index time against the first run, and peak RSS of the whole process.
Targets (issue 3): (b)/(a) >= 0.85; no-change re-index <= 5% of a first run.
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CRANFIELD, rag_env, run_rag, write_section


def main() -> None:
    corpus = CRANFIELD / "corpus.jsonl"
    work = Path(tempfile.mkdtemp(prefix="rag-bench-index-"))
    try:
        # (b) whole process, first run
        env = rag_env(work / "home")
        secs_first, rc, out, err, _ = run_rag(["index", str(corpus), "--json"], env)
        assert rc == 0, err
        report = json.loads(out)
        chunks = report["chunks"]["added"]
        rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        # no-change re-run
        reruns = []
        for _ in range(3):
            s, rc, out, err, _ = run_rag(["index", str(corpus), "--json"], env)
            assert rc == 0 and json.loads(out)["chunks"]["added"] == 0, err
            reruns.append(s)
        rerun = sorted(reruns)[1]

        # the same chunk texts, from the index
        import os

        os.environ["RAG_HOME"] = str(work / "home")
        from rag_cli import runtime
        from rag_cli.config import load_settings
        from rag_cli.embed.base import create
        from rag_cli.ingest.pipeline import index_paths
        from rag_cli.store.reader import IndexReader
        from rag_cli.types import Chunk

        settings = load_settings()
        reader = IndexReader(settings.index_dir)
        rows = reader._conn().execute("SELECT title, heading, text FROM chunks ORDER BY id").fetchall()
        reader.close()
        texts = [Chunk("", t, ti, tuple(h.split(" > ")) if h else ()).embedding_text() for ti, h, t in rows]
        assert len(texts) == chunks

        emb = create(settings)
        model = emb.model()
        model.encode(texts[:64], batch_size=settings.embed_batch_size)  # warm-up
        t0 = time.perf_counter()
        model.encode(texts, batch_size=settings.embed_batch_size, normalize_embeddings=True, show_progress_bar=False)
        raw = time.perf_counter() - t0

        # (b) in-process pipeline, model preloaded
        os.environ["RAG_HOME"] = str(work / "home2")
        settings2 = load_settings()
        t0 = time.perf_counter()
        rep2 = runtime.run(index_paths([corpus], settings2, emb))
        inproc = time.perf_counter() - t0
        assert rep2.chunks_added == chunks

        raw_cps = chunks / raw
        whole_cps = chunks / secs_first
        inproc_cps = chunks / inproc
        lines = [
            f"Corpus: Cranfield corpus.jsonl, {report['files']['indexed']} file, {chunks} chunks "
            f"(max {settings.chunk_max_tokens} tokens, overlap {settings.chunk_overlap}), batch size {settings.embed_batch_size}, "
            f"{settings.effective_workers()} pool workers.",
            "",
            "| measure | seconds | chunks/s | ratio |",
            "| --- | ---: | ---: | ---: |",
            f"| (a) raw `model.encode`, same texts, model loaded | {raw:.1f} | {raw_cps:.1f} | 1.00 |",
            f"| (b) `rag index` in-process, model loaded | {inproc:.1f} | {inproc_cps:.1f} | {inproc_cps / raw_cps:.2f} (target >= 0.85) |",
            f"| (b) `rag index` whole process (imports + model load included) | {secs_first:.1f} | {whole_cps:.1f} | {whole_cps / raw_cps:.2f} |",
            f"| no-change re-index, whole process (median of 3) | {rerun:.2f} | | {rerun / secs_first:.3f} of first run (target <= 0.05) |",
            "",
            f"Peak RSS of the whole-process `rag index` runs: {rss_mib:.0f} MiB.",
        ]
        write_section("Indexing (bench/index.py)", lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
