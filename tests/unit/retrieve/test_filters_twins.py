"""`rag index --include/--exclude` and twins collapsed in results (issue 21, item 7)."""

from __future__ import annotations

import json
from pathlib import Path

from rag_cli.ingest.walk import IndexRules, walk
from rag_cli.retrieve.fusion import collapse_twins
from rag_cli.types import Hit
from tests.conftest import run_cli, write

PAGE = (
    "git-revert creates a new commit that undoes the changes of an earlier commit, leaving the history "
    "intact; use git-reset to move the branch instead."
)


def _tree(root: Path) -> Path:
    write(root / "docs/a.md", "# A\n\nalpha words here\n")
    write(root / "docs/drafts/b.md", "# B\n\nbeta words here\n")
    write(root / "notes.txt", "gamma words here\n")
    write(root / "src/tool.py", "def tool():\n    return 1\n")
    return root


def _names(root: Path, **kw: list[str]) -> list[str]:
    return sorted(f.path.relative_to(root.resolve()).as_posix() for f in walk([root], filters=IndexRules(**kw)))


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    assert _names(root) == ["docs/a.md", "docs/drafts/b.md", "notes.txt", "src/tool.py"]
    assert _names(root, include=["*.md"]) == ["docs/a.md", "docs/drafts/b.md"]
    assert _names(root, exclude=["drafts/"]) == ["docs/a.md", "notes.txt", "src/tool.py"]
    assert _names(root, include=["docs/**"], exclude=["*.py", "docs/drafts/"]) == ["docs/a.md"]
    # a file named on the command line is always kept
    assert [f.path.name for f in walk([root / "notes.txt"], filters=IndexRules(include=["*.md"]))] == ["notes.txt"]


def test_index_exclude_removes_what_it_no_longer_covers(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    env = {"RAG_HOME": str(tmp_path / "h"), "RAG_EMBED_BACKEND": "hash"}
    out = run_cli("index", str(root), "--json", env=env)
    assert out.returncode == 0 and json.loads(out.stdout)["files"]["indexed"] == 4, out.stderr
    out = run_cli("index", str(root), "--exclude", "*.py", "--exclude", "drafts/", "--json", env=env)
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["files"]["removed"] == 2 and data["files"]["unchanged"] == 2, data
    out = run_cli("search", "beta", "--json", "--mode", "bm25", env=env)
    assert all("drafts" not in h["path"] for h in json.loads(out.stdout)["hits"])


def _hit(path: str, text: str, score: float, title: str = "", line: int | None = None) -> Hit:
    return Hit(
        text=text, score=score, source="bm25", path=path, chunk_id=hash(path) % 1000, title=title, start_line=line
    )


def test_twins_take_one_slot() -> None:
    hits = [
        _hit("man/revert.html", PAGE, 3.0, "git-revert", 12),
        _hit("txt/revert.txt", PAGE.replace(";", ","), 2.9),
        _hit("reset.html", "git-reset moves the branch head to another commit and can rewrite the index.", 2.0),
        _hit("revert-copy.html", "Title. " + PAGE, 1.5, "git-revert", 12),
    ]
    out = collapse_twins(hits, 5)
    assert [h.path for h in out] == ["man/revert.html", "reset.html"]
    # the same name in another format or folder; a copy under another name (same title, same line)
    assert out[0].extra["twins"] == ["txt/revert.txt", "revert-copy.html:12"]
    assert [h.path for h in collapse_twins(hits, 1)] == ["man/revert.html"]
    # short passages are never twins (a heading, a one-line definition)
    short = [_hit("a.md", "Install it", 2.0), _hit("a.txt", "Install it", 1.0)]
    assert len(collapse_twins(short, 5)) == 2


def test_different_documents_sharing_a_passage_are_each_a_result() -> None:
    """An option described on two pages (git-init's and git-clone's --initial-branch, an included section):
    each page is a result of its own, and page-level rankings keep both (gitdocs nDCG@10 +0.023)."""
    shared = "Use the specified name for the initial branch in the newly created repository; default from init.defaultBranch."
    hits = [
        _hit("git-init.html", shared, 2.0, "git-init", 40),
        _hit("git-clone.html", shared, 1.9, "git-clone", 77),
        _hit("git-init-db.html", shared, 1.8, "git-init-db", 40),
    ]
    assert [h.path for h in collapse_twins(hits, 5)] == ["git-init.html", "git-clone.html", "git-init-db.html"]
    assert not any("twins" in h.extra for h in hits)


def test_search_collapses_twin_files(tmp_path: Path) -> None:
    root = tmp_path / "m"
    write(root / "git-revert.html", f"<html><head><title>git-revert</title></head><body><p>{PAGE}</p></body></html>")
    write(root / "git-revert.txt", f"git-revert\n\n{PAGE}\n")
    write(root / "git-reset.txt", "git-reset\n\nReset moves the current branch head and can rewrite the index.\n")
    env = {"RAG_HOME": str(tmp_path / "h"), "RAG_EMBED_BACKEND": "hash"}
    assert run_cli("index", str(root), env=env).returncode == 0
    hits = json.loads(run_cli("search", "undo a commit with revert", "--json", env=env).stdout)["hits"]
    revert = [h for h in hits if "git-revert" in h["path"]]
    assert len(revert) == 1 and revert[0]["twins"] and "git-revert" in revert[0]["twins"][0]
    off = json.loads(
        run_cli("search", "undo a commit with revert", "--json", env={**env, "RAG_RETRIEVE_COLLAPSE_TWINS": "0"}).stdout
    )["hits"]
    assert len([h for h in off if "git-revert" in h["path"]]) == 2
