"""Hostile input: loaders and the chunker never crash or hang on arbitrary bytes (hypothesis)."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_cli.ingest.chunking import ChunkerConfig, chunk_document, word_counter
from rag_cli.ingest.loaders import LOADERS, SkipFile, load_bytes

EXTS = [
    ".md",
    ".txt",
    ".rst",
    ".html",
    ".pdf",
    ".py",
    ".jsonl",
    ".go",
    ".docx",
    ".pptx",
    ".xlsx",
    ".odt",
    ".epub",
    ".ipynb",
    ".csv",
    ".tsv",
    ".eml",
    ".mbox",
]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_and_chunk(ext: str, data: bytes) -> None:
    t0 = time.perf_counter()
    try:
        docs = load_bytes(f"x{ext}", data)
    except SkipFile as exc:
        assert exc.reason
        return
    for d in docs:
        for c in chunk_document(d, word_counter, ChunkerConfig(max_tokens=64, overlap=8)):
            assert len(c.embedding_text().split()) <= 64
    assert time.perf_counter() - t0 < 10


@FUZZ
@given(ext=st.sampled_from(EXTS), data=st.binary(max_size=4096))
def test_random_bytes(ext: str, data: bytes) -> None:
    load_and_chunk(ext, data)


@FUZZ
@given(ext=st.sampled_from(EXTS), text=st.text(max_size=3000))
def test_random_text(ext: str, text: str) -> None:
    load_and_chunk(ext, text.encode("utf-8", "replace"))


@FUZZ
@given(depth=st.integers(1, 5000), tag=st.sampled_from(["div", "p", "h2", "pre", "script", "li"]))
def test_deep_html_nesting(depth: int, tag: str) -> None:
    load_and_chunk(".html", (f"<{tag}>" * depth + "deep text" + f"</{tag}>" * depth).encode())


def test_huge_single_line_and_nul_bytes() -> None:
    load_and_chunk(".txt", b"word " * 200_000)
    load_and_chunk(".md", b"# T\n\n" + b"x" * 1_000_000)
    load_and_chunk(".txt", b"abc\x00def" * 1000)


@FUZZ
@given(junk=st.binary(min_size=1, max_size=2048))
def test_malformed_pdfs(junk: bytes) -> None:
    load_and_chunk(".pdf", b"%PDF-1.4\n" + junk + b"\n%%EOF\n")


def test_every_registered_extension_survives_garbage() -> None:
    for ext in LOADERS:
        load_and_chunk(ext, b"\xff\xfe\x00garbage\x00\x01" * 50)


# zip members each office format reads: random content inside a valid container reaches the parsers
MEMBERS = {
    ".docx": ["[Content_Types].xml", "_rels/.rels", "word/document.xml"],
    ".pptx": ["[Content_Types].xml", "_rels/.rels", "ppt/presentation.xml"],
    ".xlsx": ["[Content_Types].xml", "_rels/.rels", "xl/workbook.xml"],
    ".odt": ["content.xml", "meta.xml"],
    ".epub": ["META-INF/container.xml", "OEBPS/content.opf", "OEBPS/ch1.xhtml"],
}


@FUZZ
@given(
    ext=st.sampled_from(sorted(MEMBERS)),
    parts=st.lists(st.binary(max_size=600), min_size=3, max_size=3),
    xml=st.booleans(),
)
def test_office_containers_with_random_members(ext: str, parts: list[bytes], xml: bool) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in zip(MEMBERS[ext], parts, strict=False):
            z.writestr(name, (b'<?xml version="1.0"?><a>' + body + b"</a>") if xml else body)
    load_and_chunk(ext, buf.getvalue())


@FUZZ
@given(
    cells=st.lists(
        st.fixed_dictionaries(
            {
                "cell_type": st.sampled_from(["markdown", "code", "raw", 3]),
                "source": st.one_of(st.text(max_size=200), st.lists(st.text(max_size=50), max_size=4)),
            }
        ),
        max_size=8,
    )
)
def test_notebooks_of_random_cells(cells: list[dict[str, object]]) -> None:
    import json

    load_and_chunk(".ipynb", json.dumps({"cells": cells, "metadata": {}}).encode())
