"""A busy machine must never silently drop data (issue 29, item 2): the per-file time budget bounds hostile
work, not a file that waits for a core or behind the embedder, nor a big corpus of many small documents."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from rag_cli import runtime
from rag_cli.config import Settings, replace
from rag_cli.embed.base import create
from rag_cli.ingest import budget, records
from rag_cli.ingest.loaders import LOADERS, SkipFile, load_bytes, load_text, register_loader
from rag_cli.ingest.pipeline import index_paths
from rag_cli.types import Document
from tests.conftest import run_cli, write


def test_waiting_spends_no_budget_and_work_does() -> None:
    with budget.limit(0.05):
        time.sleep(0.2)  # waiting for a core (or a lock, or the disk) is not work done on the file
        budget.check()
        with pytest.raises(SkipFile, match="time budget"):
            t = time.thread_time()
            while time.thread_time() - t < 0.2:
                budget.check()


def test_a_corpus_of_many_records_is_judged_record_by_record(monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock of CPU time that each look at it advances by 10 ms: the corpus costs ~30 s of it under a budget of
    # 0.05 s, the same on any machine. Real CPU time made this flaky: a CI run counted more than 0.25 s in one unit
    # of a corpus whose 60,000 records cost ~0.6 s in all on an idle machine.
    clock = [0.0]

    def cpu() -> float:
        clock[0] += 0.01
        return clock[0]

    monkeypatch.setattr(budget, "_cpu", cpu)
    corpus = "".join(
        json.dumps({"_id": str(i), "title": f"t{i}", "text": f"record {i} " * 20}) + "\n" for i in range(3_000)
    ).encode()
    with budget.limit(0.05):
        docs = load_bytes("corpus.jsonl", corpus)
    assert clock[0] > 2.0, "the corpus must cost more than one budget for the test to mean anything"
    assert len(docs) == 3_000
    monkeypatch.setattr(records, "progress", lambda: None)  # judged as one unit, the same corpus is too long
    with budget.limit(0.05), pytest.raises(SkipFile, match="time budget"):
        load_bytes("corpus.jsonl", corpus)


def test_the_hard_layer_counts_time_running_not_time_queued() -> None:
    hb = budget.Heartbeat()
    assert not hb.stalled(0.0)  # still queued: no clock runs
    started = threading.Event()

    def job() -> None:
        started.set()

    budget.beating(hb, job)()
    assert started.is_set() and hb.beat is not None


def test_files_waiting_for_a_busy_pool_are_not_skipped(hash_settings: Settings, tmp_path: Path) -> None:
    """The hard time-out used to start when a file was handed to the pool: files queued behind other work
    (the embedder on every core) were skipped as "parser stuck" (16 ordinary files of this repository with
    RAG_INDEX_FILE_TIMEOUT=2). Here both workers are busy for 2.5 s when indexing starts."""
    docs = tmp_path / "docs"
    write(docs / "a.busy", "# First\n\nthe file whose loading fills the pool\n")
    for i in range(4):
        write(docs / f"f{i}.md", f"# File {i}\n\nordinary text number {i}\n")
    settings = replace(hash_settings, index_file_timeout=0.2)  # a hard time-out of 1.4 s
    busy = []

    def fill_the_pool(path: str, data: bytes) -> list[Document]:
        busy.extend(runtime.pool().submit(time.sleep, 2.5) for _ in range(2))  # the files after this one wait
        return load_text(path, data)

    register_loader(".busy", fill_the_pool)
    runtime.configure(2)
    try:
        report = runtime.run(index_paths([docs], settings, create(settings)))
    finally:
        LOADERS.pop(".busy")
        runtime.configure()
    assert len(busy) == 2 and all(f.done() for f in busy)
    assert report.skipped == []
    assert report.files_indexed == 5


@pytest.mark.slow
def test_eval_fails_when_its_corpus_was_not_indexed(tmp_path: Path) -> None:
    data = tmp_path / "set"
    write(
        data / "corpus.jsonl",
        "".join(json.dumps({"_id": f"d{i}", "title": "t", "text": "alpha beta " * 10}) + "\n" for i in range(1, 30)),
    )
    write(data / "queries.jsonl", '{"_id": "q1", "text": "alpha"}\n')
    write(data / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    env = {"RAG_HOME": str(tmp_path / "home"), "RAG_EMBED_BACKEND": "hash", "RAG_INDEX_MAX_FILE_MB": "0.001"}
    out = run_cli("eval", str(data), "--mode", "bm25", env=env, timeout=120)
    assert out.returncode == 3, (out.returncode, out.stdout, out.stderr)
    assert "not fully indexed" in out.stderr and "too large" in out.stderr
    assert "ndcg" not in out.stdout.lower()
