"""Remote sources count (issue 15): a remote source's relevant hit reaches the top of the fused list,
against a real index, a real aiohttp source and a real `rag serve` on 127.0.0.1."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, run_cli, write
from tests.fakeserver import FakeSearchServer
from tests.serving import start_serve

HASH = {"RAG_EMBED_BACKEND": "hash"}
QUERY = "how does reciprocal rank fusion merge lists"


@pytest.fixture(scope="module")
def sample_hash_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("fedhome")
    out = run_cli("index", str(SAMPLE), env={"RAG_HOME": str(home), **HASH})
    assert out.returncode == 0, out.stderr
    return home


def wiki_source(kb: FakeSearchServer) -> str:
    """rag.toml lines for the fake search server's /ok as an `http` source named wiki."""
    return f"""
[[sources]]
name = "wiki"
type = "http"
url = "{kb.url("/ok")}?q={{query}}"
results = "data.results"
fields = {{ text = "snippet", title = "title", url = "link", score = "score" }}
"""


def test_http_source_hit_reaches_the_top(sample_hash_home: Path, tmp_path: Path) -> None:
    with FakeSearchServer() as kb:
        cfg = write(tmp_path / "rag.toml", wiki_source(kb))
        out = run_cli(
            "search", QUERY, "--json", "-k", "5", "--config", str(cfg), env={"RAG_HOME": str(sample_hash_home), **HASH}
        )
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)["hits"]
    assert [h["source"] for h in hits[:2]].count("wiki") == 1, [h["source"] for h in hits]
    wiki = next(h for h in hits if h["source"] == "wiki")
    assert wiki["url"] == "http://fake/0" and wiki["source_scores"] == {"wiki": 1.0}
    local = next(h for h in hits if h["source"] != "wiki")
    assert set(local["source_scores"]) <= {"dense", "bm25"} and local["source_scores"]


def test_rag_source_shard_hit_reaches_the_top(sample_hash_home: Path, tmp_path: Path) -> None:
    shard_home = tmp_path / "shard"
    doc = write(
        tmp_path / "shard_docs" / "rrf.md",
        "# Reciprocal rank fusion\n\nReciprocal rank fusion merges ranked "
        "lists by summing 1/(k + rank) over the lists in which a document appears.\n",
    )
    assert run_cli("index", str(doc.parent), env={"RAG_HOME": str(shard_home), **HASH}).returncode == 0
    s = start_serve(shard_home, tmp_path, env=HASH)
    try:
        cfg = write(tmp_path / "rag.toml", f'[[sources]]\nname = "shard1"\ntype = "rag"\nurl = "{s.url("")}"\n')
        out = run_cli(
            "search", QUERY, "--json", "-k", "5", "--config", str(cfg), env={"RAG_HOME": str(sample_hash_home), **HASH}
        )
    finally:
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(timeout=30)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["degraded"] == []
    hits = data["hits"]
    top = [h for h in hits[:3] if h["source"] == "shard1"]
    assert top and top[0]["path"].endswith("rrf.md"), [(h["source"], h["path"]) for h in hits]
    assert {"shard1.dense", "shard1.bm25"} & set(top[0]["source_scores"])


def test_a_filter_reaches_a_rag_source_and_leaves_out_one_that_cannot_filter(
    sample_hash_home: Path, tmp_path: Path
) -> None:
    """`--path`/`--type` are sent to a remote `rag serve` (its hits obey them); an `http` source cannot apply
    them, so it is left out of that search with a degradation rather than letting its hits past the filter."""
    shard_home = tmp_path / "shard"
    docs = tmp_path / "shard_docs"
    write(
        docs / "rrf.md",
        "# Reciprocal rank fusion\n\nReciprocal rank fusion merges ranked lists by summing "
        "1/(k + rank) over the lists in which a document appears.\n",
    )
    write(
        docs / "rrf.txt",
        "Reciprocal rank fusion notes\n\nReciprocal rank fusion merges ranked lists of "
        "documents from several retrievers into one list.\n",
    )
    assert run_cli("index", str(docs), env={"RAG_HOME": str(shard_home), **HASH}).returncode == 0
    s = start_serve(shard_home, tmp_path, env=HASH)
    env = {"RAG_HOME": str(sample_hash_home), **HASH}
    try:
        with FakeSearchServer() as kb:
            shard = f'[[sources]]\nname = "shard1"\ntype = "rag"\nurl = "{s.url("")}"\n'
            cfg = write(tmp_path / "rag.toml", shard + wiki_source(kb))
            plain = run_cli("search", QUERY, "--json", "-k", "20", "--config", str(cfg), env=env)
            out = run_cli("search", QUERY, "--json", "-k", "20", "--type", "txt", "--config", str(cfg), env=env)
    finally:
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(timeout=30)
    assert plain.returncode == 0 and out.returncode == 0, out.stderr
    unfiltered = json.loads(plain.stdout)["hits"]
    assert {"shard1", "wiki"} <= {h["source"] for h in unfiltered}
    assert any(h["source"] == "shard1" and h["path"].endswith("rrf.md") for h in unfiltered)
    data = json.loads(out.stdout)
    shard = [h for h in data["hits"] if h["source"] == "shard1"]
    assert shard and all(h["path"].endswith(".txt") for h in shard), [(h["source"], h["path"]) for h in shard]
    assert all(h["source"] != "wiki" for h in data["hits"])
    assert [d["source"] for d in data["degraded"]] == ["wiki"] and "--path/--type/--since" in data["degraded"][0][
        "reason"
    ]
    assert all(h["path"].endswith(".txt") for h in data["hits"] if h["source"] in ("dense", "bm25", "hybrid"))
