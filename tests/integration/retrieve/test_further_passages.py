"""An answer reads further passages of its first documents from a real local index (retrieve/within.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag_cli import runtime
from rag_cli.config import Settings, replace
from rag_cli.embed.base import create
from rag_cli.ingest.pipeline import index_paths
from rag_cli.pipeline.answer import answer
from rag_cli.retrieve.service import Retrieval
from tests.conftest import write

OPTIONS = "The archive command compresses with zstd when its zstd option is given. " * 4


def _ask(settings: Settings, question: str) -> Any:
    async def go() -> Any:
        async with Retrieval(settings) as r:
            return [ev async for ev in answer(question, r, settings, backends=["none"])][-1].data

    return runtime.run(go())


def test_another_passage_of_the_page_found_joins_the_passages_answered_from(
    hash_settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    write(
        docs / "archive.md",
        "# Archive\n\n## Options\n\n"
        + OPTIONS
        + "\n\n## Attributes\n\nFiles with the export-ignore attribute are kept out of the tarballs.\n",
    )
    write(docs / "other.md", "# Other\n\nBranches are cheap to create and archive nothing.\n")
    settings = replace(
        hash_settings, chunk_max_tokens=40, chunk_overlap=0, answer_k=1, answer_min_score=-1.0, answer_min_evidence=0.0
    )
    runtime.run(index_paths([docs], settings, create(settings)))
    question = "Which zstd archive option keeps files out?"
    with_further = _ask(settings, question)
    without = _ask(replace(settings, answer_further_documents=0), question)
    assert len(without.retrieved) == 1 and "export-ignore" not in without.retrieved[0].text
    found = [h for h in with_further.retrieved if h.source == "document"]
    assert found and all(h.path == without.retrieved[0].path for h in found)
    assert any("export-ignore" in h.text for h in found)
    assert "further_ms" in with_further.timings and "further_ms" not in without.timings
