"""The real `rag` command in a subprocess: exit codes, stdout vs stderr, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, write

HASH = {"RAG_EMBED_BACKEND": "hash"}


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"RAG_HOME": str(home), **HASH, **extra}


def docs(root: Path) -> Path:
    write(root / "a.md", "# Alpha\n\nApples are red.\n")
    write(root / "b.txt", "Bananas are yellow.\n")
    return root


def test_version_and_help() -> None:
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("rag ")
    out = run_cli("--help")
    assert out.returncode == 0 and "index" in out.stdout and "search" in out.stdout


def test_missing_path_is_clean_error(tmp_path: Path) -> None:
    out = run_cli("index", str(tmp_path / "nope"), env=env_for(tmp_path / "h"))
    assert out.returncode == 2
    assert out.stdout == ""
    assert "no such file or directory" in out.stderr and "Traceback" not in out.stderr


def test_index_json_on_stdout_summary_on_stderr(tmp_path: Path) -> None:
    root = docs(tmp_path / "d")
    write(root / "bin.txt", b"\x00\x01")
    home = tmp_path / "h"
    out = run_cli("index", str(root), "--json", env=env_for(home))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["files"] == {"seen": 3, "indexed": 2, "unchanged": 0, "removed": 0, "skipped": 1}
    assert data["skipped"][0]["path"].endswith("bin.txt") and "binary" in data["skipped"][0]["reason"]
    assert {"added", "removed", "embedded"} == set(data["chunks"]) and data["seconds"] >= 0 and "chunks_per_s" in data
    assert data["chunks"]["embedded"] <= data["chunks"]["added"] and set(data["stages"]) >= {"embed", "write"}
    assert "warning: skipped" in out.stderr and "bin.txt" in out.stderr
    plain = run_cli("index", str(root), env=env_for(home))
    assert plain.returncode == 0 and plain.stdout == ""
    assert "2 unchanged" in plain.stderr and "\x1b[" not in plain.stderr


def test_search_outputs(tmp_path: Path) -> None:
    root = docs(tmp_path / "d")
    home = tmp_path / "h"
    assert run_cli("index", str(root), env=env_for(home)).returncode == 0
    out = run_cli("search", "bananas", "-k", "1", env=env_for(home))
    assert out.returncode == 0 and "b.txt" in out.stdout and "\x1b[" not in out.stdout
    files = run_cli("search", "apples bananas", "--files", env=env_for(home))
    lines = files.stdout.splitlines()
    assert len(lines) == len(set(lines)) == 2 and all(Path(p).is_absolute() for p in lines)
    timed = run_cli("search", "apples", "--timings", "--mode", "bm25", env=env_for(home))
    assert "timings:" in timed.stderr and "source.bm25=" in timed.stderr and "loop_lag_max=" in timed.stderr
    stdin = run_cli("search", "-", "--json", env=env_for(home), input="apples\n")
    assert json.loads(stdin.stdout)["query"] == "apples"


def test_search_without_index(tmp_path: Path) -> None:
    out = run_cli("search", "x", env=env_for(tmp_path / "h"))
    assert out.returncode == 3 and "rag index" in out.stderr and "Traceback" not in out.stderr


def test_fingerprint_mismatch_exit_code(tmp_path: Path) -> None:
    root = docs(tmp_path / "d")
    home = tmp_path / "h"
    assert run_cli("index", str(root), env=env_for(home)).returncode == 0
    out = run_cli("index", str(root), "--chunk-tokens", "64", env=env_for(home))
    assert out.returncode == 4 and "--rebuild" in out.stderr
    out = run_cli("index", str(root), "--chunk-tokens", "64", "--rebuild", env=env_for(home))
    assert out.returncode == 0


def test_usage_errors(tmp_path: Path) -> None:
    out = run_cli("search", "x", "--mode", "fuzzy", env=env_for(tmp_path / "h"))
    assert out.returncode in (2, 3) and "Traceback" not in out.stderr
    out = run_cli("search", "x", "-k", "0")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    bad = write(tmp_path / "bad.toml", "[retrieve\n")
    out = run_cli("search", "x", "--config", str(bad), env=env_for(tmp_path / "h"))
    assert out.returncode == 2 and "invalid TOML" in out.stderr


def test_indexes_list_info_drop(tmp_path: Path) -> None:
    root = docs(tmp_path / "d")
    home = tmp_path / "h"
    assert run_cli("index", str(root), "--index", "one", env=env_for(home)).returncode == 0
    assert run_cli("index", str(root), "--index", "two", env=env_for(home)).returncode == 0
    listed = json.loads(run_cli("indexes", "--json", env=env_for(home)).stdout)
    assert [i["name"] for i in listed["indexes"]] == ["one", "two"]
    assert listed["indexes"][0]["files"] == 2
    info = json.loads(run_cli("indexes", "info", "one", "--json", env=env_for(home)).stdout)
    assert info["chunks"] >= 2 and info["fingerprint"]["embedder"]["backend"] == "hash"
    refused = run_cli("indexes", "drop", "one", env=env_for(home))
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert run_cli("indexes", "drop", "one", "--yes", env=env_for(home)).returncode == 0
    listed = json.loads(run_cli("indexes", "--json", env=env_for(home)).stdout)
    assert [i["name"] for i in listed["indexes"]] == ["two"]
    assert run_cli("indexes", "drop", "one", "--yes", env=env_for(home)).returncode == 3


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_modes(tmp_path: Path, mode: str) -> None:
    root = docs(tmp_path / "d")
    home = tmp_path / "h"
    assert run_cli("index", str(root), env=env_for(home)).returncode == 0
    out = run_cli("search", "yellow bananas", "--mode", mode, "--json", env=env_for(home))
    data = json.loads(out.stdout)
    assert data["mode"] == mode and data["hits"][0]["path"].endswith("b.txt")


def test_empty_files_are_counted_not_warned_of_one_by_one(tmp_path: Path) -> None:
    """Issue 32 item 11: every empty __init__.py warned on every run."""
    docs = tmp_path / "docs"
    (docs / "pkg").mkdir(parents=True)
    (docs / "pkg" / "__init__.py").write_text("")
    (docs / "pkg" / "mod.py").write_text("def area(r):\n    return 3.14159 * r * r\n")
    out = run_cli("index", str(docs), env=env_for(tmp_path / "home"))
    assert out.returncode == 0, out.stderr
    assert "__init__.py" not in out.stderr and "1 skipped (1 empty)" in out.stderr, out.stderr
    data = json.loads(run_cli("index", str(docs), "--json", "--rebuild", env=env_for(tmp_path / "home")).stdout)
    assert [s["reason"] for s in data["skipped"]] == ["empty: no text"]  # still listed for scripts
