"""Hardening, round two (issue 29, items 10, 11, 13, 14): hostile documents that cost memory or chunks,
and inputs that ended sessions with an internal error."""

from __future__ import annotations

import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from rag_cli.ingest import office
from rag_cli.ingest.loaders import SkipFile, load_bytes
from tests.conftest import run_cli, write

_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)


def _odt(paragraphs: int, spans: int) -> bytes:
    """An .odt whose content.xml is mostly markup: ``paragraphs`` paragraphs of ``spans`` styled spans."""
    span = '<text:span text:style-name="T{0}" text:class-names="a b c d">w{0} </text:span>'
    para = "<text:p text:style-name='P1'>" + "".join(span.format(j) for j in range(spans)) + "</text:p>"
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        with z.open("content.xml", "w", force_zip64=True) as fh:
            fh.write(f'<?xml version="1.0"?><office:document-content {_NS}><office:body><office:text>'.encode())
            fh.write(b'<text:h text:outline-level="1">Big</text:h>')
            block = (para * 100).encode()
            for _ in range(paragraphs // 100):
                fh.write(block)
            fh.write(b"</office:text></office:body></office:document-content>")
    return buf.getvalue()


def test_a_big_odt_parses_in_bounded_memory() -> None:
    """Issue 29, item 10: a small .odt unpacking to a 150 MiB content.xml peaked at 1.9 GB parsed whole.
    Parsed incrementally, the peak follows what the document says, not its markup."""
    data = _odt(paragraphs=12_000, spans=30)  # content.xml ~30 MiB, of which ~1.7 MiB text
    size = zipfile.ZipFile(__import__("io").BytesIO(data)).getinfo("content.xml").file_size
    tracemalloc.start()
    try:
        (doc,) = load_bytes("big.odt", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(doc.blocks) == 12_000
    print(f"\n.odt: content.xml {size / 2**20:.1f} MiB, {len(data) / 1e3:.0f} KB file, peak {peak / 2**20:.1f} MiB")
    # the ElementTree of the whole file took ~10x its size; the text alone (with its blocks) is a few MiB
    assert peak < size / 2, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB content.xml"


def test_an_odt_member_past_the_cap_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(office, "MAX_MEMBER", 1 << 20)
    with pytest.raises(SkipFile, match=r"content\.xml unpacks to"):
        load_bytes("big.odt", _odt(paragraphs=1_000, spans=30))


def test_an_epub_spine_that_repeats_a_chapter_reads_it_once() -> None:
    """Issue 29, item 14: a 1.6 KB EPUB listing one chapter 700 times gave 5,600 chunks."""
    container = (
        '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="c.opf" media-type="application/oebps-package+xml"/></rootfiles>'
        "</container>"
    )
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata/>'
        '<manifest><item id="c1" href="ch1.xhtml" media-type="application/xhtml+xml"/></manifest><spine>'
        + '<itemref idref="c1"/>' * 700
        + "</spine></package>"
    )
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", container)
        z.writestr("c.opf", opf)
        z.writestr("ch1.xhtml", "<html><body><h1>One</h1><p>The only chapter, about lighthouses.</p></body></html>")
    (doc,) = load_bytes("book.epub", buf.getvalue())
    assert len(doc.blocks) == 1


def test_an_email_body_of_random_bytes_is_not_indexed() -> None:
    """Issue 29, item 11: 60 KB of random bytes declared text/plain became 136 garbage chunks."""
    noise = os.urandom(60_000).replace(b"\x00", b"\x01")
    mail = b"From: a@example.com\nSubject: Invoice\nContent-Type: text/plain; charset=utf-8\n\n" + noise
    (doc,) = load_bytes("m.eml", mail)
    assert all(len(b.text) < 200 for b in doc.blocks), [len(b.text) for b in doc.blocks]
    with pytest.raises(SkipFile):  # the same bytes as a text file: skipped too
        load_bytes("m.txt", noise)


@pytest.mark.slow
def test_huge_numbers_and_far_dates_are_usage_errors(tmp_path: Path) -> None:
    """Issue 29, item 13: `rag get f.txt:<5000 digits>` and `/filter since 9999-12-31T23:59:59-14:00` in
    `rag chat` ended in an internal error."""
    env = {"RAG_HOME": str(tmp_path / "home"), "RAG_EMBED_BACKEND": "hash"}
    docs = write(tmp_path / "d" / "f.txt", "Herons hunt fish.\n").parent
    assert run_cli("index", str(docs), env=env).returncode == 0
    out = run_cli("get", str(docs / "f.txt") + ":" + "9" * 5000, env=env)
    assert out.returncode == 2 and "line or part number" in out.stderr, out.stderr
    for since in ("9999-12-31T23:59:59-14:00", "99999999999999999999d"):
        out = run_cli("search", "herons", "--since", since, env=env)
        assert out.returncode == 2 and "outside the calendar" in out.stderr, out.stderr
    chat = run_cli("chat", "--llm", "none", input="/filter since 9999-12-31T23:59:59-14:00\n/filter\n", env=env)
    assert chat.returncode == 0, chat.stderr
    assert "filter not changed" in chat.stdout + chat.stderr and "internal error" not in chat.stderr.lower()
