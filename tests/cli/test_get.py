"""`rag get PATH[:LINE[-LINE]]` (issue 19): what a citation points at, as the index holds it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_cli.cli.get import joined, parse_target
from tests.conftest import run_cli, write

HASH = {"RAG_EMBED_BACKEND": "hash"}


@pytest.mark.parametrize(
    ("target", "parsed"),
    [
        ("docs/a.md", ("docs/a.md", None, None, None)),
        ("docs/a.md:12", ("docs/a.md", 12, 12, None)),
        ("docs/a.md:12-30", ("docs/a.md", 12, 30, None)),
        ("r.pdf#page=3", ("r.pdf", None, None, 3)),
        ("deck.pptx#slide=4", ("deck.pptx", None, None, 4)),
        ("C:odd:name.md", ("C:odd:name.md", None, None, None)),
    ],
)
def test_parse_target(target: str, parsed: tuple[object, ...]) -> None:
    assert parse_target(target) == parsed


def test_joined_prints_an_overlap_once() -> None:
    chunks = [{"text": "alpha beta gamma delta epsilon zeta"}, {"text": "gamma delta epsilon zeta eta theta"}]
    assert joined(chunks) == "alpha beta gamma delta epsilon zeta\n\neta theta"
    assert joined([{"text": "short"}, {"text": "short seam"}]) == "short\n\nshort seam"  # under 20 characters: kept


@pytest.fixture
def indexed(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    paras = [f"Paragraph {i} talks about topic number {i} with several words of filler text." for i in range(1, 41)]
    doc = write(tmp_path / "docs" / "long.md", "# Long\n\n" + "\n\n".join(paras) + "\n")
    env = {"RAG_HOME": str(tmp_path / "home"), **HASH}
    assert run_cli("index", str(doc.parent), "--chunk-tokens", "60", "--chunk-overlap", "10", env=env).returncode == 0
    return doc, env


def test_get_document_and_range(indexed: tuple[Path, dict[str, str]]) -> None:
    doc, env = indexed
    out = run_cli("get", str(doc), env=env)
    assert out.returncode == 0, out.stderr
    for i in (1, 20, 40):
        assert out.stdout.count(f"Paragraph {i} talks") == 1  # the whole document, overlaps printed once
    # a cited line: the chunk that holds it, not the whole document
    line = 2 + 2 * 20 - 1  # paragraph 20's line
    part = run_cli("get", f"{doc}:{line}", env=env)
    assert part.returncode == 0 and "Paragraph 20 talks" in part.stdout and "Paragraph 1 talks" not in part.stdout
    data = json.loads(run_cli("get", f"{doc}:{line}-{line + 8}", "--json", env=env).stdout)
    assert data["path"] == str(doc) and data["start_line"] == line and data["chunks"]
    assert all(c["start_line"] <= line + 8 and c["end_line"] >= line for c in data["chunks"])


def test_get_errors(indexed: tuple[Path, dict[str, str]]) -> None:
    doc, env = indexed
    for target, words in [
        ("nowhere.md", "is not in index"),
        (f"{doc}:99999", "has no indexed text"),
        (f"{doc}:30-20", "ends before it starts"),
    ]:
        out = run_cli("get", target, env=env)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr
