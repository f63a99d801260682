"""Damaged index files are detected with a clear message (never a traceback, never a wrong answer),
and a disk-full write leaves the previous index intact."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, write

HASH = {"RAG_EMBED_BACKEND": "hash"}


def setup_index(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    docs = tmp_path / "docs"
    for i in range(20):
        write(docs / f"f{i}.md", f"# Doc {i}\n\nApples and pears number {i}.\n")
    home = tmp_path / "home"
    env = {"RAG_HOME": str(home), **HASH}
    assert run_cli("index", str(docs), env=env).returncode == 0
    data = next((home / "indexes" / "default").glob("data-*"))
    return docs, data, env


def search(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("search", "apples", "--json", env=env)


def test_truncated_faiss_detected_then_repaired(tmp_path: Path) -> None:
    docs, data, env = setup_index(tmp_path)
    vec = max(data.glob("vectors-*.faiss"))
    vec.write_bytes(vec.read_bytes()[:100])
    out = search(env)
    assert out.returncode == 4 and "damaged" in out.stderr and "rag index PATH" in out.stderr
    assert "Traceback" not in out.stderr
    failed = json.loads(out.stdout)  # --json: an error object, no results
    assert failed["hits"] == [] and failed["exit_code"] == 4 and "damaged" in failed["error"]
    # a plain re-index rebuilds the vector file from the database
    assert run_cli("index", str(docs), env=env).returncode == 0
    assert search(env).returncode == 0


def test_damaged_sqlite_detected(tmp_path: Path) -> None:
    _, data, env = setup_index(tmp_path)
    db = data / "rag.sqlite"
    raw = bytearray(db.read_bytes())
    raw[:100] = b"\x00" * 100  # destroy the header
    db.write_bytes(bytes(raw))
    out = search(env)
    assert out.returncode == 4 and "damaged" in out.stderr and "--rebuild" in out.stderr
    assert "Traceback" not in out.stderr
    docs = tmp_path / "docs"
    out = run_cli("index", str(docs), env=env)
    assert out.returncode == 4 and "--rebuild" in out.stderr
    assert run_cli("index", str(docs), "--rebuild", env=env).returncode == 0
    assert search(env).returncode == 0


def test_missing_manifest_detected(tmp_path: Path) -> None:
    _, data, env = setup_index(tmp_path)
    (data / "manifest.json").unlink()
    out = search(env)
    assert out.returncode == 4 and "manifest missing" in out.stderr and "Traceback" not in out.stderr


def test_disk_full_keeps_old_index(tmp_path: Path) -> None:
    docs, _, env = setup_index(tmp_path)
    before = json.loads(search(env).stdout)["hits"]
    for i in range(200):
        write(docs / f"big{i}.md", f"# Big {i}\n\n" + ("lots of words here " * 400) + "\n")
    limit = 2 * 1024 * 1024  # files over 2 MB cannot be written: the vectors table and WAL outgrow it

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    out = subprocess.run(
        [sys.executable, "-m", "rag_cli", "index", str(docs)],
        env=full,
        capture_output=True,
        text=True,
        preexec_fn=cap,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 1, out.stderr
    assert "cannot write index" in out.stderr and "intact" in out.stderr and "Traceback" not in out.stderr
    after = search(env)
    assert after.returncode == 0 and json.loads(after.stdout)["hits"] == before


def test_disk_full_on_a_small_tmpfs(tmp_path: Path) -> None:
    """A real full file system (a 3 MiB tmpfs holds RAG_HOME): clear error, old index intact, and the
    run after space is freed completes. Needs permission to mount (root in CI's container)."""
    import shutil

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        docs = tmp_path / "docs"
        for i in range(20):
            write(docs / f"f{i}.md", f"# Doc {i}\n\nApples and pears number {i}.\n")
        env = {"RAG_HOME": str(mnt / "home"), **HASH}
        assert run_cli("index", str(docs), env=env).returncode == 0
        before = json.loads(search(env).stdout)["hits"]
        for i in range(300):
            write(docs / f"big{i}.md", f"# Big {i}\n\n" + ("lots of words here " * 400) + "\n")
        out = run_cli("index", str(docs), env=env)
        assert out.returncode == 1, out.stderr
        assert "cannot write index" in out.stderr and "intact" in out.stderr and "Traceback" not in out.stderr
        assert [p.name for p in (mnt / "home").rglob("*") if ".tmp" in p.name] == []  # no partial files
        after = search(env)
        assert after.returncode == 0 and json.loads(after.stdout)["hits"] == before
        # free space: the next run (with fewer files) completes on the same file system
        shutil.rmtree(docs)
        for i in range(20):
            write(docs / f"f{i}.md", f"# Doc {i}\n\nApples and pears number {i}, again.\n")
        again = run_cli("index", str(docs), env=env)
        assert again.returncode == 0, again.stderr
        assert "again" in json.loads(search(env).stdout)["hits"][0]["text"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
