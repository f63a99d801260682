"""Hardening, round two (issue 29): a hostile tree. A folder swapped for a link between the walk and the
reads must not carry files from outside the indexed folders into the index (the race through the real CLI:
``test_hardening.py::test_a_folder_swapped_for_a_link_mid_run_brings_nothing_in``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_cli.ingest.chunking import ChunkerConfig
from rag_cli.ingest.loaders import SkipFile
from rag_cli.ingest.prepare import Skip, prepare
from rag_cli.ingest.segments import open_regular
from rag_cli.ingest.walk import walk
from tests.conftest import write


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
