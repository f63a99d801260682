"""The per-file time budget: a file that takes too long to load or chunk is skipped and reported,
the rest of the index is built, and the process exits promptly even if a parser is stuck."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rag_cli.ingest import budget
from rag_cli.ingest.loaders import SkipFile, load_bytes
from tests.conftest import run_cli, write


def test_cooperative_budget_stops_a_long_parse() -> None:
    big = ("# Title\n\n" + "\n".join(f"line {i} with some words" for i in range(400_000))).encode()
    with budget.limit(0.001), pytest.raises(SkipFile, match="time budget"):
        time.sleep(0.002)
        load_bytes("big.md", big)
    load_bytes("small.md", b"# ok\n\nfine\n")  # outside the block there is no limit


@pytest.mark.slow
def test_stuck_and_slow_files_are_skipped_and_the_rest_indexed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "good.md", "# Good\n\nbananas are yellow\n")
    write(docs / "trap.stuck", "never loaded")
    # 6.7 MB: under the 8 MiB from which a file is read in segments (each with its own budget), and several
    # times the budget to load and chunk even on a fast machine (0.45 s here, 2026-12)
    write(docs / "huge.md", "# Huge\n\n" + "\n\n".join(f"paragraph {i} " + "word " * 30 for i in range(40_000)))
    env = {
        "RAG_HOME": str(tmp_path / "home"),
        "RAG_EMBED_BACKEND": "hash",
        "RAG_PLUGINS": "tests.plugins.stuck_loader",
        "RAG_INDEX_FILE_TIMEOUT": "0.1",
        "RAG_TEST_STUCK_SECONDS": "60",
    }
    t0 = time.monotonic()
    out = run_cli("index", str(docs), "--json", env=env, timeout=50)
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert "parser stuck" in reasons["trap.stuck"]
    assert "time budget" in reasons["huge.md"]
    assert report["files"]["indexed"] == 1
    assert elapsed < 50  # did not wait the stuck parser's 60 s at exit
    found = run_cli("search", "bananas", "--json", env=env)
    assert json.loads(found.stdout)["hits"][0]["path"].endswith("good.md")
