"""Hardening, round two (issue 29): a hostile tree. A folder swapped for a link between the walk and the
reads must not carry files from outside the indexed folders into the index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_cli.ingest.chunking import ChunkerConfig
from rag_cli.ingest.loaders import SkipFile
from rag_cli.ingest.prepare import Skip, prepare
from rag_cli.ingest.segments import open_regular
from rag_cli.ingest.walk import walk
from tests.conftest import run_cli, write


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "d"
    write(root / "aaa" / "first.md", "# First\n\nan ordinary page about herons\n")
    write(root / "zzz" / "note.md", "# Note\n\nan ordinary page about egrets\n")
    secret = tmp_path / "secret"
    write(secret / "note.md", "# Secret\n\nthe launch code is 4417-ALPHA\n")
    return root, secret


def test_a_folder_swapped_for_a_link_after_the_walk_is_not_followed(tmp_path: Path) -> None:
    root, secret = _tree(tmp_path)
    found = [f for f in walk([root]) if f.path.name == "note.md"]
    assert len(found) == 1
    (root / "zzz").rename(root / ".real")
    (root / "zzz").symlink_to(secret, target_is_directory=True)
    item = prepare(found[0], None, 10**6, False, lambda ts: [len(t.split()) for t in ts], ChunkerConfig())
    assert isinstance(item, Skip), item
    assert "link" in item.reason
    with pytest.raises(SkipFile, match="link"):
        open_regular(found[0].path)


def test_a_file_swapped_for_a_link_after_the_walk_is_not_followed(tmp_path: Path) -> None:
    root, secret = _tree(tmp_path)
    (target,) = [f for f in walk([root]) if f.path.name == "note.md"]
    target.path.unlink()
    target.path.symlink_to(secret / "note.md")
    with pytest.raises(SkipFile, match="link"):
        open_regular(target.path)


@pytest.mark.slow
def test_rag_index_racing_a_folder_swap_indexes_nothing_from_outside(tmp_path: Path) -> None:
    root, secret = _tree(tmp_path)
    for i in range(50):
        write(root / "aaa" / f"page{i:03}.md", f"# Page {i}\n\nordinary text {i}\n")
    write(root / "aaa" / "0000.swap", "the first file read: it swaps d/zzz for a link to the secret folder\n")
    env = {"RAG_HOME": str(tmp_path / "home"), "RAG_EMBED_BACKEND": "hash", "RAG_PLUGINS": "tests.plugins.swap_loader",
           "RAG_TEST_SWAP_DIR": str(root / "zzz"), "RAG_TEST_SWAP_TARGET": str(secret)}  # fmt: skip
    out = run_cli("index", str(root), "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert (root / "zzz").is_symlink(), "the plugin did not swap the folder: the test tests nothing"
    report = json.loads(out.stdout)
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert "link" in reasons.get("note.md", ""), report["skipped"]
    found = run_cli("search", "launch code alpha", "--json", "-k", "50", env=env)
    assert found.returncode == 0, found.stderr
    assert not any("4417" in h["text"] for h in json.loads(found.stdout)["hits"])
    got = run_cli("get", str(root / "zzz" / "note.md"), env=env)
    assert "4417" not in got.stdout
