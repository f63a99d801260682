from __future__ import annotations

import itertools

import pytest

from rag_cli.ingest.chunking import ChunkerConfig, chunk_document, word_counter
from rag_cli.types import Block, Document


def doc(*blocks: Block, title: str = "T") -> Document:
    return Document("p.md", title, list(blocks))


def test_small_blocks_packed_within_section() -> None:
    d = doc(Block("a b c", ("H",), 1, 1), Block("d e", ("H",), 3, 3), Block("f g", ("H", "S"), 5, 5))
    chunks = chunk_document(d, word_counter, ChunkerConfig(max_tokens=50, overlap=0))
    assert [(c.text, c.heading, c.start_line, c.end_line) for c in chunks] == [
        ("a b c\n\nd e", ("H",), 1, 3),
        ("f g", ("H", "S"), 5, 5),
    ]


@pytest.mark.parametrize("max_tokens", [20, 32, 64])
def test_every_chunk_fits_budget_including_prefix(max_tokens: int) -> None:
    text = " ".join(f"Sentence number {i} has some words in it." for i in range(60))
    d = doc(Block(text, ("Long Heading Here",), 1, 1), title="A Title")
    chunks = chunk_document(d, word_counter, ChunkerConfig(max_tokens=max_tokens, overlap=8))
    assert len(chunks) > 1
    for c in chunks:
        assert word_counter([c.embedding_text()])[0] <= max_tokens
    # nothing lost: every sentence appears somewhere
    joined = " ".join(c.text for c in chunks)
    for i in range(60):
        assert f"number {i} has" in joined


def test_overlap_repeats_tail_sentences() -> None:
    text = " ".join(f"S{i} w w w." for i in range(20))
    chunks = chunk_document(doc(Block(text, (), 1, 1)), word_counter, ChunkerConfig(max_tokens=24, overlap=8))
    assert len(chunks) >= 3
    for prev, nxt in itertools.pairwise(chunks):
        last_sentence = prev.text.split(". ")[-1].rstrip(".")
        assert last_sentence.split()[0] in nxt.text


def test_huge_single_word_is_cut() -> None:
    d = doc(Block("x" * 5000, (), 1, 1))
    chunks = chunk_document(d, lambda ts: [max(1, len(t) // 4) for t in ts], ChunkerConfig(max_tokens=100, overlap=0))
    assert len(chunks) > 1
    assert "".join(c.text.replace("\n\n", "") for c in chunks) == "x" * 5000
    assert all(len(c.text) // 4 <= 100 for c in chunks)


def test_pages_not_merged() -> None:
    d = doc(Block("one", (), 1, 1, page=1), Block("two", (), 1, 1, page=2))
    chunks = chunk_document(d, word_counter, ChunkerConfig(max_tokens=50, overlap=0))
    assert [(c.text, c.page) for c in chunks] == [("one", 1), ("two", 2)]
    assert chunks[1].location == "p.md#page=2"


def test_ordinals_and_doc_id() -> None:
    d = Document("c.jsonl", "T", [Block("a", (), 1, 1), Block("b " * 40, (), 2, 2)], doc_id="d9")
    chunks = chunk_document(d, word_counter, ChunkerConfig(max_tokens=20, overlap=0))
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert {c.doc_id for c in chunks} == {"d9"}
