"""Issue 19: filters narrow retrieval to part of an index, inside the search (dense and BM25 both, FTS5 and
in-memory BM25, flat and IVF vectors), so k results come back whenever k chunks match; through the CLI,
`rag serve` and the chat's /filter."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from rag_cli import runtime
from rag_cli.config import Settings
from rag_cli.embed.base import create
from rag_cli.ingest.pipeline import index_paths
from rag_cli.pipeline.chat import ChatState
from rag_cli.retrieve.filters import Filter, glob_matches, make_filter, parse_since
from rag_cli.store.local.reader import IndexReader
from tests.conftest import run_cli, write

HASH = {"RAG_EMBED_BACKEND": "hash"}
OLD = time.time() - 30 * 86400


def corpus(root: Path) -> Path:
    """40 files outside ``wanted/`` that match the query strongly, 12 inside that match it weakly: an
    unfiltered top 10 holds none of the wanted ones, so only a filter inside the search returns 10 of them."""
    import random

    rng = random.Random(7)
    vocab = [
        f"{a}{b}"
        for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti")
        for b in ("ba", "do", "fe", "gu", "hi", "jo")
    ]

    def words(n: int) -> str:  # distinct filler, so no two files are near-identical twins
        return " ".join(rng.sample(vocab, n))

    for i in range(40):
        write(root / "noise" / f"n{i}.md", f"# Noise {i}\n\nHeron heron heron marsh heron wading {words(10)}.\n")
    for i in range(12):
        write(root / "wanted" / f"w{i}.md", f"# Wanted {i}\n\nA heron appears among {words(14)}.\n")
    for i in range(6):
        write(root / "wanted" / f"t{i}.txt", f"Text file {i}: a heron and {words(12)}.\n")
    for p in (root / "noise").glob("*.md"):
        os.utime(p, (OLD, OLD))
    return root


@pytest.fixture
def indexed(hash_settings: Settings, tmp_path: Path) -> Settings:
    root = corpus(tmp_path / "docs")
    runtime.run(index_paths([root], hash_settings, create(hash_settings)))
    return hash_settings


def names(reader: IndexReader, scored: list[tuple[int, float]]) -> list[str]:
    return [str(Path(h.path).relative_to(Path(h.path).parents[1])) for h in reader.hits(scored, "x") if h.path]


@pytest.mark.parametrize("memory", [False, True], ids=["fts5", "memory"])
def test_bm25_and_dense_honour_filters_inside_the_search(indexed: Settings, memory: bool) -> None:
    reader = IndexReader(indexed.index_dir, bm25_memory_max=1_000_000 if memory else 0)
    try:
        reader.refresh()
        if memory:
            reader.load_bm25_memory((2.0, 2.0, 1.0))
            assert reader.bm25_memory((2.0, 2.0, 1.0)) is not None
        vec = create(indexed).embed_query("heron marsh")
        assert not any(n.startswith("wanted/") for n in names(reader, reader.bm25("heron marsh", 10)))
        for flt, expect in [
            (Filter(paths=("wanted/*",)), 10),
            (Filter(types=("txt",)), 6),
            (Filter(paths=("wanted/*", "!*.txt")), 10),
            (Filter(since=OLD + 86400), 10),
            (Filter(paths=("nowhere/*",)), 0),
        ]:
            allowed = reader.allowed(flt)
            with reader.snapshot():
                for got in (reader.bm25("heron", 10, allowed=allowed), reader.dense(vec, 10, allowed=allowed)):
                    found = names(reader, got)
                    assert len(found) == expect, (flt, found)
                    for n in found:  # every filter here excludes the noise/ folder (by path, type or age)
                        assert n.startswith("wanted/"), (flt, n)
                        assert n.endswith(".txt") if flt.types else True
                        assert not n.endswith(".txt") if "!*.txt" in flt.paths else True
    finally:
        reader.close()


def test_ivf_index_with_a_narrow_filter_still_returns_k(hash_settings: Settings, tmp_path: Path) -> None:
    """IVF probes a few lists; a filter whose chunks sit in other lists must still find k of them."""
    settings = replace(hash_settings, index_ann_threshold=50, index_ann_nprobe=1)
    root = corpus(tmp_path / "docs")
    runtime.run(index_paths([root], settings, create(settings)))
    reader = IndexReader(settings.index_dir)
    try:
        reader.refresh()
        from rag_cli.store.local.faiss_index import is_ivf

        assert is_ivf(reader._current_index())
        allowed = reader.allowed(Filter(types=("txt",)))
        got = reader.dense(create(settings).embed_query("marsh heron wading"), 5, allowed=allowed)
        assert len(got) == 5 and all(n.endswith(".txt") for n in names(reader, got))
    finally:
        reader.close()


def test_cli_search_and_ask_filters(tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    env = {"RAG_HOME": str(tmp_path / "home"), **HASH}
    assert run_cli("index", str(root), env=env).returncode == 0
    for mode in ("bm25", "dense", "hybrid"):
        out = run_cli("search", "heron marsh", "-k", "10", "--mode", mode, "--path", "wanted/*", "--json", env=env)
        hits = json.loads(out.stdout)["hits"]
        assert len(hits) == 10 and all("/wanted/" in h["path"] for h in hits), (mode, out.stderr)
    out = run_cli("search", "heron", "-k", "10", "--type", "txt", "--files", env=env)
    assert sorted(Path(p).name for p in out.stdout.split()) == [f"t{i}.txt" for i in range(6)]
    out = run_cli("search", "heron", "-k", "50", "--since", "7d", "--files", env=env)
    assert len(out.stdout.split()) == 18 and "/noise/" not in out.stdout
    out = run_cli("ask", "heron", "--llm", "none", "--mode", "bm25", "--type", "txt", "--json", env=env)
    if out.returncode == 0:  # the hash embedder may find nothing relevant enough to answer (exit 7)
        assert all(s["path"].endswith(".txt") for s in json.loads(out.stdout)["sources"])
    else:
        assert out.returncode == 7, out.stderr
    bad = run_cli("search", "heron", "--since", "last tuesday", env=env)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_filters_parse_and_match() -> None:
    assert glob_matches("/a/b/docs/x.md", "docs/*.md") and glob_matches("/a/b/docs/x.md", "*.md")
    assert glob_matches("/a/b/docs/x.md", "b/*.md")  # as in fnmatch, * also crosses folders
    assert not glob_matches("/a/b/docs/x.md", "c/*.md") and not glob_matches("/a/b/docs/x.md", "*.txt")
    assert parse_since("7d", now=1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_since("2026-01-01") == 1767225600.0
    f = make_filter(["docs/*", "!*.pdf"], "MD,.pdf", "2026-01-01")
    assert f.types == ("md", "pdf") and f.paths == ("docs/*", "!*.pdf")
    assert f.allows("/x/docs/a.md", 1767225601) and not f.allows("/x/docs/a.pdf", 1767225601)
    assert not f.allows("/x/docs/a.md", 1767225599) and not f.allows("/x/other/a.md", 1767225601)
    assert not make_filter([], None, None)


def test_chat_filter_command() -> None:
    state = ChatState(k=5, mode="hybrid", llm="none")
    assert state.command("/filter")[0] == "filter: none"
    msg, keep = state.command("/filter path 'docs/*.md' path '!drafts/*' type md since 2026-01-01")
    assert keep and state.filter == Filter(paths=("docs/*.md", "!drafts/*"), types=("md",), since=1767225600.0), msg
    assert "since 2026-01-01" in msg
    assert state.command("/filter since never")[0].startswith("filter not changed")
    assert state.filter is not None
    assert state.command("/filter off")[0].startswith("filter: none") and state.filter is None
    assert "/filter" in state.command("/help")[0]
