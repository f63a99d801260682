"""Indexing without waste (issue 17): each distinct chunk text embedded once, a renamed or copied file's
vectors reused, per-stage seconds in the report, and an ETA from the text still to embed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rag_cli import runtime
from rag_cli.cli.index import Eta
from rag_cli.embed import base as embed_base
from rag_cli.ingest.pipeline import Progress, index_paths
from rag_cli.ingest.stages import ORDER
from rag_cli.store.local.reader import IndexReader
from tests.conftest import write

FOOTER = "This page is part of the widget handbook. Copyright the widget makers, all rights reserved."


class Counting:
    """The hash embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += list(texts)
        return self.inner.embed(texts)  # type: ignore[attr-defined]


def _docs(root: Path) -> Path:
    """Six chapters of one handbook: each its own body, and the same legal section at the end (one chunk
    text, six times: same title, same heading, same words)."""
    for i in range(6):
        body = " ".join(f"Gear {i} turns shaft {j} of machine {i} at speed {i * j}." for j in range(40))
        write(root / f"p{i}.md", f"# Widget handbook\n\n## Chapter {i}\n\n{body}\n\n## Legal\n\n{FOOTER}\n")
    return root


def test_identical_chunks_are_embedded_once(tmp_path: Path, hash_settings: object) -> None:
    emb = Counting(embed_base.create(hash_settings))  # type: ignore[arg-type]
    report = runtime.run(index_paths([_docs(tmp_path / "d")], hash_settings, emb))  # type: ignore[arg-type]
    assert report.chunks_added >= 12
    texts = emb.texts
    assert len(texts) == len(set(texts)) and report.chunks_embedded == len(texts) == report.chunks_added - 5
    stats = report.to_dict()
    assert stats["chunks"]["embedded"] == report.chunks_embedded


def test_a_copied_file_reuses_stored_vectors(tmp_path: Path, hash_settings: object) -> None:
    docs = _docs(tmp_path / "d")
    emb = Counting(embed_base.create(hash_settings))  # type: ignore[arg-type]
    runtime.run(index_paths([docs], hash_settings, emb))  # type: ignore[arg-type]
    copy = tmp_path / "elsewhere" / "p3-copy.md"
    write(copy, (docs / "p3.md").read_text())
    emb.texts.clear()
    report = runtime.run(index_paths([docs, copy.parent], hash_settings, emb))  # type: ignore[arg-type]
    per_file = report.chunks_added
    assert report.files_indexed == 1 and per_file >= 2 and report.chunks_embedded == 0
    assert emb.texts == []
    reader = IndexReader(hash_settings.index_dir)  # type: ignore[attr-defined]
    try:
        conn = reader._conn()
        rows = conn.execute(
            "SELECT f.path, c.text, v.v FROM chunks c JOIN files f ON f.id = c.file_id "
            "JOIN vectors v ON v.id = c.id WHERE f.path LIKE '%p3%'"
        ).fetchall()
    finally:
        reader.close()
    by_text: dict[str, list[bytes]] = {}
    for _, text, blob in rows:
        by_text.setdefault(text, []).append(blob)
    assert len(rows) == 2 * per_file and all(len(v) == 2 and v[0] == v[1] for v in by_text.values())


def test_a_renamed_file_reuses_its_vectors_in_the_same_run(tmp_path: Path, hash_settings: object) -> None:
    """A rename is a removal and an addition in one run (as `rag index --watch` sees it): the vectors of
    the file that leaves serve the one that arrives with its content, before its rows are removed."""
    docs = _docs(tmp_path / "d")
    emb = Counting(embed_base.create(hash_settings))  # type: ignore[arg-type]
    runtime.run(index_paths([docs], hash_settings, emb))  # type: ignore[arg-type]
    (docs / "p3.md").rename(docs / "moved.md")
    emb.texts.clear()
    report = runtime.run(index_paths([docs], hash_settings, emb))  # type: ignore[arg-type]
    assert report.files_indexed == 1 and report.files_removed == 1 and report.chunks_added >= 2
    assert report.chunks_embedded == 0 and emb.texts == []


def test_stages_are_reported(tmp_path: Path, hash_settings: object) -> None:
    report = runtime.run(index_paths([_docs(tmp_path / "d")], hash_settings, embed_base.create(hash_settings)))  # type: ignore[arg-type]
    stages = report.to_dict()["stages"]
    assert list(stages) == list(ORDER)
    assert abs(sum(v["share"] for v in stages.values()) - 1.0) < 0.01
    assert all(v["seconds"] >= 0 for v in stages.values()) and stages["embed"]["seconds"] > 0
    assert all(report.clock.seconds[k] > 0 for k in ("walk", "read", "parse", "chunk", "tokenize", "write"))


def test_eta_follows_text_left_not_files() -> None:
    now = [0.0]
    eta = Eta()
    eta._now = lambda: now[0]  # type: ignore[method-assign]
    eta.total_bytes, eta.read_bytes, eta.queued = 1000, 500, 400  # half the bytes read gave 400 characters
    eta.done(100)  # the first group (model loading): the clock starts after it
    assert eta.seconds_left() is None
    now[0] = 1.0
    eta.done(100)  # 100 characters a second
    # left: 400 queued - 200 embedded, plus 500 unread bytes at 0.8 characters a byte = 600 characters
    assert eta.seconds_left() == 6.0
    # the one bar shown (issue 32 item 11): 200 of the estimated 800 characters embedded, whatever the file count
    assert eta.text_total() == 800 and eta.share_done() == 0.25
    eta.read_bytes, eta.queued = 1000, 800
    eta.done(600)
    assert eta.share_done() == 1.0 and eta.seconds_left() == 0.0


def test_progress_protocol_has_the_eta_events() -> None:
    p = Progress()
    for name in ("plan", "read", "text_queued", "text_done", "note"):
        assert callable(getattr(p, name))


class Recording(Progress):
    def __init__(self) -> None:
        self.chunks = self.queued = self.done = 0
        self.steps: list[int] = []

    def text_queued(self, chars: int) -> None:
        self.queued += chars

    def chunks_done(self, n: int) -> None:
        self.chunks += n
        self.steps.append(n)

    def text_done(self, chars: int) -> None:
        self.done += chars


def test_many_small_files_embed_in_big_length_sorted_rounds(tmp_path: Path, hash_settings: object) -> None:
    """Small files (one chunk each) are embedded together, far past the 64 files one call used to see, in
    rounds of texts of similar length; the progress events add up to the run's chunks and text."""
    root = tmp_path / "many"
    for i in range(600):
        write(root / f"n{i:03}.txt", f"Note {i}\n\n" + " ".join(f"word{j}" for j in range(5 + i % 37)) + ".\n")
    emb = Counting(embed_base.create(hash_settings))  # type: ignore[arg-type]
    calls: list[list[str]] = []
    inner = emb.embed

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        if len(calls) == 1:  # the loaders queue files up meanwhile, as they do behind a real model
            time.sleep(1.0)
        return inner(texts)

    emb.embed = embed  # type: ignore[method-assign]
    prog = Recording()
    report = runtime.run(index_paths([root], hash_settings, emb, progress=prog))  # type: ignore[arg-type]
    assert report.chunks_added == 600
    assert max(len(c) for c in calls) > 64
    # within a call, lengths rise (sorted across the group, interleaved between parallel calls)
    assert all([len(t) for t in c] == sorted(len(t) for t in c) for c in calls)
    assert prog.chunks == 600 and len(prog.steps) > 1
    assert prog.done == prog.queued
