from __future__ import annotations

import itertools

import pytest

from rag_cli.cli.get import joined
from rag_cli.ingest.chunking import ChunkerConfig, chunk_document, word_counter
from rag_cli.types import Block, Document


def doc(*blocks: Block, title: str = "T") -> Document:
    return Document("p.md", title, list(blocks))


def test_small_blocks_packed_within_section() -> None:
    words = " ".join(f"w{i}" for i in range(10))
    d = doc(Block("a b c", ("H",), 1, 1), Block(words, ("H",), 3, 3), Block("f g", ("H2",), 5, 5))
    chunks = chunk_document(d, word_counter, ChunkerConfig(max_tokens=50, overlap=0))
    assert [(c.text, c.heading, c.start_line, c.end_line) for c in chunks] == [
        (f"a b c\n\n{words}", ("H",), 1, 3),
        ("f g", ("H2",), 5, 5),  # a sibling section is never merged into
    ]


def test_tiny_section_joins_its_subsection() -> None:
    d = doc(Block("Intro line.", ("Guide",), 1, 1), Block("Body " * 20, ("Guide", "Install"), 3, 3))
    chunks = chunk_document(d, word_counter, ChunkerConfig(max_tokens=64, overlap=0))
    assert len(chunks) == 1
    assert chunks[0].heading == ("Guide", "Install") and chunks[0].text.startswith("Intro line.")
    assert (chunks[0].start_line, chunks[0].end_line) == (1, 3)


def test_no_title_only_chunk_on_a_cranfield_like_document() -> None:
    """Cranfield as plain text: a title line, a blank line, an abstract of about the chunk size. The
    title line used to become a chunk of its own (1,009 of 2,407 chunks)."""
    title = "experimental investigation of the aerodynamics of a wing in a slipstream ."
    # an abstract that fits a chunk alone but not with the title line before it: the title line was left alone
    sentences = [f"sentence {i} about the lift of a wing in a propeller slipstream at some angle ." for i in range(11)]
    d = Document("1.txt", title, [Block(title, (), 1, 1), Block(" ".join(sentences), (), 3, 3)])
    chunks = chunk_document(d, word_counter, ChunkerConfig(max_tokens=200, overlap=32))
    assert chunks and all(c.text.strip() != title for c in chunks)
    assert all(word_counter([c.text])[0] >= 40 for c in chunks), [len(c.text.split()) for c in chunks]
    for c in chunks:
        assert word_counter([c.embedding_text()])[0] <= 200
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)


def test_short_lead_fills_with_next_sentences() -> None:
    lead = Block("A short opening line.", (), 1, 1)
    body = Block(" ".join(f"Body sentence {i} goes on here." for i in range(12)), (), 3, 3)
    chunks = chunk_document(doc(lead, body, title="X"), word_counter, ChunkerConfig(max_tokens=40, overlap=0))
    assert chunks[0].text.startswith("A short opening line.\n\nBody sentence 0")
    assert all(word_counter([c.embedding_text()])[0] <= 40 for c in chunks)
    assert " ".join(c.text for c in chunks).count("Body sentence") == 12


def test_small_tail_with_overlap_joins_previous() -> None:
    """With overlap a last chunk can be the carried sentences plus a few words; those words join the
    chunk before when they fit there."""
    text = " ".join(f"S{i} w w." for i in range(9))  # 27 words, split for a 24-word budget
    chunks = chunk_document(
        doc(Block(text, (), 1, 1), Block("y z.", (), 3, 3), title=""),
        word_counter,
        ChunkerConfig(max_tokens=24, overlap=6),
    )
    assert all(word_counter([c.text])[0] <= 24 for c in chunks)
    assert chunks[-1].text.endswith("y z.") and word_counter([chunks[-1].text])[0] > 6


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


def test_overlap_keeps_the_breaks_between_paragraphs_and_lines() -> None:
    """The sentences carried into the next chunk keep their paragraph and line breaks: a definition list's
    term stays on its own (not "renames. octopus"), code lines stay lines."""
    filler = "It tries hard to detect the criss-cross merge ambiguities that older strategies missed."
    blocks = [
        Block(f"{filler} {filler} It does not handle renames.", (), 1, 1),
        Block("octopus", (), 3, 3),
        Block(f"This resolves cases with more than two heads. {filler} {filler}", (), 5, 5),
        Block("git merge -s octopus a b\ngit log --graph", (), 7, 8),
        Block(f"ours {filler} {filler} {filler}", (), 10, 10),
    ]
    chunks = chunk_document(doc(*blocks), word_counter, ChunkerConfig(max_tokens=48, overlap=12))
    carried = [c.text for c in chunks[1:] if c.text.startswith(("It does not", "git merge"))]
    assert len(carried) == 2, [c.text for c in chunks]
    assert carried[0].startswith("It does not handle renames.\n\noctopus\n\nThis resolves")
    assert carried[1].startswith("git merge -s octopus a b\ngit log --graph\n\nours")
    # rag get finds the seam and prints the carried text once
    whole = joined([{"text": c.text} for c in chunks])
    assert whole.count("It does not handle renames.") == 1 and whole.count("git log --graph") == 1


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
