"""Evidence sentences kept across answers (embed/batcher.RememberedTexts) against embedding them afresh for
every answer (as before: one answer's own memory, pipeline/evidence.remembering), alternating per question in one
process with the model loaded.

Per set, the QA questions in their order (a session of questions about one collection; `rag chat` follow-ups
retrieve the same passages again even more): each question's answer passages are retrieved once, then the
evidence is scored both ways; the time to score it (embedding the question and every sentence of the passages,
ms) p50 / mean, and the share of sentences the kept vectors held.

Usage: python bench/evidence_cache.py [--sets gitdocs sample]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.answer import SETS
from bench.common import CACHE, rag_env, run_rag, write_section


def run_set(name: str) -> str:
    import os

    os.environ["RAG_HOME"] = str(CACHE / "home")
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.embed.batcher import embed_queries
    from rag_cli.eval.metrics import percentile
    from rag_cli.pipeline.answer import answer_k
    from rag_cli.pipeline.evidence import remembering, score
    from rag_cli.retrieve.service import Retrieval

    docs, qa = SETS[name]
    index = f"answer-{name}"  # bench/answer.py's index of the set, brought up to date
    _, rc, _, err, _ = run_rag(["index", str(docs), "--index", index], rag_env(CACHE / "home"))
    assert rc == 0, err
    questions = [json.loads(x)["question"] for x in qa.read_text().splitlines() if x.strip()]
    settings = load_settings(index=index)
    times: dict[str, list[float]] = {"afresh": [], "kept": []}

    async def go() -> tuple[int, int]:
        async with Retrieval(settings) as r:
            await r.prepare("hybrid")
            kept = r.sentence_embedder()
            raw = r.embedder
            await runtime.run_blocking(embed_queries, raw, ["warm up the encoder"])
            for q in questions:
                texts = [h.text for h in (await r.search(q, k=answer_k(settings), documents=False)).hits]
                for how in ("afresh", "kept"):
                    embed = remembering(lambda ts: embed_queries(raw, ts)) if how == "afresh" else kept
                    t0 = time.perf_counter()
                    await runtime.run_blocking(score, q, texts, embed)
                    times[how].append((time.perf_counter() - t0) * 1000)
            return kept.hits, kept.misses

    hits, misses = runtime.run(go())
    a, k = times["afresh"], times["kept"]
    return (
        f"| {name} | {len(questions)} | {percentile(a, 50):.0f} / {sum(a) / len(a):.0f} | "
        f"{percentile(k, 50):.0f} / {sum(k) / len(k):.0f} | {hits / max(hits + misses, 1):.2f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    args = ap.parse_args()
    lines = [
        "Scoring an answer's evidence (the question and every sentence of its k passages embedded with the "
        "query encoder, ONNX, all cores), per question in QA order, in one process:",
        "",
        "| set | questions | afresh p50 / mean ms | kept p50 / mean ms | texts the kept vectors held |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [run_set(name) for name in args.sets]
    write_section("Evidence vectors kept across answers (bench/evidence_cache.py)", lines)


if __name__ == "__main__":
    main()
