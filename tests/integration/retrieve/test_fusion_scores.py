"""Standardised-score fusion on a real index (issue 15): every candidate of a hybrid search is judged on
both methods. The fan-out completes the score a method's own list did not give (the cosine of a BM25-only
hit from its stored vector, the BM25 score of a dense-only hit, 0.0 if it does not match), in memory and
through FTS5 alike, and `rag search --json` shows both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

QUERIES = [
    "Which constant k is usually used in reciprocal rank fusion?",
    "how do I keep model inference off the event loop",
    "HNSW efSearch",
    "bits per weight of Q4_K_M quantisation",
]


def test_completed_scores_equal_each_methods_own(sample_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.retrieve.service import Retrieval

    monkeypatch.setenv("RAG_HOME", str(sample_home))
    settings = load_settings(retrieve_timeout=30.0)

    async def go(memory: bool) -> list[tuple[str, list, dict, dict]]:
        out = []
        async with Retrieval(settings, long_lived=memory) as r:
            assert r.reader is not None and r.fanout is not None
            if memory:
                assert r.reader.load_bm25_memory(r.bm25_columns) is not None
            for q in QUERIES:
                await r.prepare("hybrid")
                # 8 candidates a method, all of them returned: the lists overlap only in part
                res = await r.fanout.search(q, k=16, mode="hybrid", candidates=8)
                assert not res.degraded
                # each method alone over the whole index: the exact score of every chunk it ranks
                dense = {h.chunk_id: h.score for h in (await r.fanout.search(q, k=1000, mode="dense")).hits}
                bm25 = {h.chunk_id: h.score for h in (await r.fanout.search(q, k=1000, mode="bm25")).hits}
                out.append((q, res.hits, dense, bm25))
        return out

    for memory in (False, True):
        completed_bm25_only = completed_dense_only = 0
        for q, hits, dense, bm25 in runtime.run(go(memory)):
            for h in hits:
                per = h.extra["source_scores"]
                assert set(per) == {"dense", "bm25"}, (q, h.source, per)
                assert per["dense"] == pytest.approx(dense[h.chunk_id], abs=1e-5)
                assert per["bm25"] == pytest.approx(bm25.get(h.chunk_id, 0.0), rel=1e-9, abs=1e-12)
                completed_bm25_only += h.source == "bm25"
                completed_dense_only += h.source == "dense"
        # the check above covered hits only one list had found, whose other score was filled in
        assert completed_bm25_only and completed_dense_only, memory


def test_search_json_shows_both_scores(sample_home: Path) -> None:
    out = run_cli("search", QUERIES[0], "--json", "-k", "10", env={"RAG_HOME": str(sample_home)})
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)["hits"]
    assert hits and all(set(h["source_scores"]) == {"dense", "bm25"} for h in hits)
    assert {h["source"] for h in hits} <= {"dense", "bm25", "dense+bm25"}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_evidence_sentences_are_embedded_once_per_process(sample_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sentence embedder a retrieval gives the answer pipeline is one for its life (embed/batcher.
    RememberedTexts): a second answer over the same passages embeds none of their sentences again, and gets
    the very vectors the first did."""
    import numpy as np

    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.pipeline.evidence import score
    from rag_cli.retrieve.service import Retrieval

    monkeypatch.setenv("RAG_HOME", str(sample_home))
    settings = load_settings(retrieve_timeout=30.0)

    async def go() -> None:
        async with Retrieval(settings) as r:
            assert r.sentence_embedder() is None  # no model yet: evidence by words only
            await r.prepare("hybrid")
            embed = r.sentence_embedder()
            assert embed is not None and r.sentence_embedder() is embed
            texts = [h.text for h in (await r.search(QUERIES[0], k=5, documents=False)).hits]
            first = await runtime.run_blocking(score, QUERIES[0], texts, embed)
            misses = embed.misses
            again = await runtime.run_blocking(score, "what k does RRF use", texts, embed)
            assert misses > 1 and embed.misses == misses + 1 and embed.hits == misses - 1  # the question alone is new
            assert [s.text for s in first] == [s.text for s in again]
            vecs = embed([s.text for s in first])
            assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)

    runtime.run(go())
