"""`rag eval` through the CLI on a tiny BEIR fixture and a small QA file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, write

DOCS = {
    "d1": ("Wing lift", "The lift of a wing grows with the angle of attack until the wing stalls."),
    "d2": ("Boundary layer", "A turbulent boundary layer transfers more heat than a laminar boundary layer."),
    "d3": ("Shock waves", "Shock waves form when supersonic flow meets a blunt body."),
    "d4": ("Heat transfer", "Heat transfer at hypersonic speed heats the nose cone of a missile."),
}
QUERIES = {
    "q1": "wing lift and stall",
    "q2": "boundary layer heat transfer",
    "q3": "supersonic shock",
    "q4": "no judgements",
}
QRELS = [("q1", "d1", 1), ("q2", "d2", 1), ("q2", "d4", 1), ("q3", "d3", 2), ("q3", "d1", 0)]


def beir(root: Path) -> Path:
    write(
        root / "corpus.jsonl",
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, (t, x) in DOCS.items()),
    )
    write(root / "queries.jsonl", "".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in QUERIES.items()))
    write(root / "qrels/test.tsv", "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS))
    return root


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"RAG_HOME": str(tmp_path / "home"), "RAG_EMBED_BACKEND": "hash"}


def test_beir_end_to_end(tmp_path: Path, env: dict[str, str]) -> None:
    ds = beir(tmp_path / "tiny")
    out = run_cli(
        "eval", str(ds), "--mode", "all", "--json", "--per-query", "--save", str(tmp_path / "r.json"), env=env
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["queries"] == 3 and data["queries_without_judgements"] == 1
    assert set(data["results"]) == {"bm25", "dense", "hybrid"}
    for metrics in data["results"].values():
        assert set(metrics) == {"ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert data["results"]["bm25"]["recall@10"] == 1.0  # every relevant doc is in a 4-doc top 10
    assert data["results"]["bm25"]["mrr@10"] == 1.0  # and ranked first
    assert data["per_query"]["bm25"]["q3"]["ndcg@10"] == 1.0
    assert {"p50", "p95"} <= set(data["latency"]["hybrid"]["total"])
    assert json.loads((tmp_path / "r.json").read_text())["results"] == data["results"]
    # the corpus index is cached: a second run does not re-embed
    again = run_cli("eval", str(ds), "--mode", "bm25", "--json", env=env)
    assert json.loads(again.stdout)["index"] == data["index"]
    assert len(list((tmp_path / "home/indexes").iterdir())) == 1


def test_baseline_gate(tmp_path: Path, env: dict[str, str]) -> None:
    ds = beir(tmp_path / "tiny")
    base = tmp_path / "base.json"
    assert run_cli("eval", str(ds), "--mode", "bm25", "--save", str(base), env=env).returncode == 0
    ok = run_cli("eval", str(ds), "--mode", "bm25", "--baseline", str(base), env=env)
    assert ok.returncode == 0 and "no metric dropped" in ok.stderr
    inflated = json.loads(base.read_text())
    inflated["results"]["bm25"]["ndcg@10"] = 1.5
    base.write_text(json.dumps(inflated))
    bad = run_cli("eval", str(ds), "--mode", "bm25", "--baseline", str(base), "--tolerance", "0.01", env=env)
    assert bad.returncode == 9 and "regression: bm25 ndcg@10" in bad.stderr


def test_qa_scorer(tmp_path: Path, env: dict[str, str]) -> None:
    docs = write(tmp_path / "docs/rrf.md", "# RRF\n\nReciprocal rank fusion uses k = 60 by default.\n").parent
    write(docs / "bm25.md", "# BM25\n\nThe BM25 parameter b defaults to 0.75.\n")
    assert run_cli("index", str(docs), env=env).returncode == 0
    qa = write(
        tmp_path / "qa.jsonl",
        "\n".join(
            json.dumps(x)
            for x in [
                {"question": "What k does reciprocal rank fusion use?", "answers": ["60"], "gold_paths": ["rrf.md"]},
                {
                    "question": "What does the BM25 parameter b default to?",
                    "answers": ["0.75"],
                    "gold_paths": ["bm25.md"],
                },
                {
                    "question": "What is the default of the BM25 parameter b here?",
                    "answers": ["nonsense-fact"],
                    "gold_paths": ["x.md"],
                },
                # a name no document holds: declined (it counts for refusal, not for citations)
                {"question": "What does BM25 parameter b default to in Lucene?", "answers": [], "unanswerable": True},
            ]
        ),
    )
    out = run_cli(
        "eval", str(qa), "--llm", "none", "--json", "--per-query", "-k", "1", env={**env, "RAG_RETRIEVE_MODE": "bm25"}
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    r = data["results"]["none"]
    assert r["contains"] == pytest.approx(2 / 3, abs=1e-3)
    assert r["citation_validity"] == 1.0
    assert r["citation_precision"] == pytest.approx(2 / 3, abs=1e-3)
    assert r["refusal"] == 1.0
    rows = data["per_query"]["none"]
    assert rows[0]["contains"] is True and rows[2]["contains"] is False and rows[3]["refused"] is True


def test_eval_errors(tmp_path: Path, env: dict[str, str]) -> None:
    assert run_cli("eval", str(tmp_path / "missing"), env=env).returncode == 2
    (tmp_path / "notbeir").mkdir()
    out = run_cli("eval", str(tmp_path / "notbeir"), env=env)
    assert out.returncode == 2 and "not a BEIR folder" in out.stderr
