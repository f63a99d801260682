from __future__ import annotations

from pathlib import Path

import pytest

from rag_cli.ingest.loaders import SkipFile, decode_text, load_bytes
from tests.conftest import SAMPLE


def test_markdown_headings_paragraphs_and_lines() -> None:
    src = b"---\ntitle: x\n---\n# Guide\n\nIntro para.\n\n## Install\n\nStep one.\nStep two.\n\n```sh\n# not a heading\nmake\n```\n"
    (doc,) = load_bytes("a.md", src)
    assert doc.title == "Guide"
    texts = [(b.text, b.heading, b.start_line, b.end_line) for b in doc.blocks]
    assert texts[0] == ("Intro para.", ("Guide",), 6, 6)
    assert texts[1] == ("Step one.\nStep two.", ("Guide", "Install"), 10, 11)
    assert texts[2][0].startswith("```sh\n# not a heading")
    assert texts[2][1] == ("Guide", "Install")


def test_markdown_setext_heading() -> None:
    (doc,) = load_bytes("a.md", b"Title\n=====\n\nBody text.\n\nSub\n---\n\nMore.\n")
    assert [b.heading for b in doc.blocks] == [("Title",), ("Title", "Sub")]


def test_rst_heading_levels() -> None:
    src = b"Top\n===\n\nIntro.\n\nPart\n----\n\nText of part.\n\n.. a comment\n\nOther\n=====\n\nLast.\n"
    (doc,) = load_bytes("a.rst", src)
    assert doc.title == "Top"
    assert [(b.text, b.heading) for b in doc.blocks] == [
        ("Intro.", ("Top",)),
        ("Text of part.", ("Top", "Part")),
        ("Last.", ("Other",)),
    ]


def test_html_visible_text_only() -> None:
    src = b"""<html><head><title>My Page</title><style>p{}</style><script>var x = 'secret';</script></head>
    <body><nav>menu</nav><h1>Main</h1><p>Hello <b>world</b>.</p><h2>Sub</h2><p>Deep &amp; text</p></body></html>"""
    (doc,) = load_bytes("a.html", src)
    assert doc.title == "My Page"
    joined = " ".join(b.text for b in doc.blocks)
    assert "secret" not in joined and "menu" not in joined and "p{}" not in joined
    assert [(b.text, b.heading) for b in doc.blocks] == [("Hello world.", ("Main",)), ("Deep & text", ("Main", "Sub"))]


def test_pdf_pages_kept() -> None:
    docs = load_bytes(str(SAMPLE / "guides/local-llms.pdf"), (SAMPLE / "guides/local-llms.pdf").read_bytes())
    (doc,) = docs
    assert doc.title == "Running Language Models Locally"
    assert {b.page for b in doc.blocks} == {1, 2}
    assert any("Q4_K_M" in b.text and b.page == 1 for b in doc.blocks)


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"%PDF-1.4\ngarbage", "malformed PDF"),
        (b"not a pdf at all", "malformed PDF"),
    ],
)
def test_bad_pdf_skipped(data: bytes, reason: str) -> None:
    with pytest.raises(SkipFile, match=reason):
        load_bytes("x.pdf", data)


def test_code_split_at_definitions() -> None:
    src = b"import os\n\n\ndef alpha():\n    return 1\n\n\nclass Beta:\n    def m(self):\n        pass\n"
    (doc,) = load_bytes("m.py", src)
    assert doc.kind == "code:python"
    heads = [b.heading for b in doc.blocks]
    assert ("def alpha",) in heads and ("class Beta",) in heads


def test_jsonl_beir_documents() -> None:
    src = b'{"_id": "d1", "title": "T1", "text": "first"}\nnot json\n{"_id": "d2", "title": "", "text": "second"}\n'
    docs = load_bytes("c.jsonl", src)
    assert [(d.doc_id, d.title, d.blocks[0].text) for d in docs] == [("d1", "T1", "first"), ("d2", "d2", "second")]


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"\x00\x01\x02binary\x00", "binary"),
        (b"   \n\n  ", "empty"),
    ],
)
def test_bad_text_skipped(data: bytes, reason: str) -> None:
    with pytest.raises(SkipFile, match=reason):
        load_bytes("x.txt", data)


def test_decode_bom_and_crlf() -> None:
    assert decode_text(b"\xef\xbb\xbfa\r\nb") == "a\nb"
    assert decode_text("hé".encode("utf-16")) == "hé"


def test_text_paragraph_lines() -> None:
    (doc,) = load_bytes("t.txt", b"Title line\n\npara one\ncontinues\n\n\npara two\n")
    assert [(b.start_line, b.end_line) for b in doc.blocks] == [(1, 1), (3, 4), (7, 7)]


def test_html_page_chrome_is_not_indexed() -> None:
    """Issue 21, 10: the Git manual's footer ("Last updated 2024-05-31") was indexed with every page."""
    page = (
        b'<html><head><title>T</title></head><body><h1>Intro</h1><div class="paragraph"><p>Body text.</p></div>'
        b'<div id="footer"><div id="footer-text">Last updated 2024-05-31</div><div>nested</div></div>'
        b"<p>After the footer.</p><footer>Copyright 2024</footer><nav><div>menu</div></nav>"
        b'<div class="sidebar"><ul class="menu"><li>home</li></ul></div><p>Tail.</p></body></html>'
    )
    (doc,) = load_bytes("p.html", page)
    text = " ".join(b.text for b in doc.blocks)
    assert text == "Body text. After the footer. Tail."


@pytest.mark.parametrize(
    ("first", "title"),
    [
        ("Release notes", "Release notes"),
        ("What is RAG?", "What is RAG?"),
        ("Date: Fri, 19 Dec 2008 10:00:00 +0000", "notes"),
        ("From: someone@example.com", "notes"),
        ("==========", "notes"),
        ("This file explains how the build works.", "This file explains how the build works."),
        ("The options are as follows:", "notes"),
        ("x" * 130, "notes"),
    ],
)
def test_plain_text_title(first: str, title: str) -> None:
    """Issue 21, 10: a plain-text title came from the first line whatever it was (a mail header)."""
    (doc,) = load_bytes("notes.txt", f"{first}\n\nThe body of the file.\n".encode())
    assert doc.title == title


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        ("Café crème, naïve façade: the résumé costs 5 € — «déjà vu».\n\nSecond paragraph über alles.", "cp1252"),
        ("Überprüfung der Größe: Äpfel, Öl und Süßigkeiten kosten 3 Mark.\n", "latin-1"),
        ("日本語のテキストファイルです。検索できるはずです。\n", "shift_jis"),
        ("Naïve café\n", "cp1252"),
        ("Le garçon a mangé une crêpe à la crème brûlée, très délicieuse.\n", "cp1252"),
        ("El niño comió piñata en España, ¿sí?\n", "cp1252"),
        ("Привет, мир! Это текстовый файл в старой кодировке Windows.\n", "cp1251"),
        ("Příliš žluťoučký kůň úpěl ďábelské ódy.\n", "cp1250"),
        ("Zażółć gęślą jaźń, pchnąć w tę łódź jeża.\n", "cp1250"),
        ("Árvíztűrő tükörfúrógép, magyar őű.\n", "cp1250"),
        ("Καλημέρα κόσμε, αυτό είναι ένα αρχείο.\n", "cp1253"),
    ],
)
def test_non_utf8_text_is_decoded_and_told(raw: str, encoding: str) -> None:
    """Issue 19: a Windows-1252 / Latin-1 file was skipped as 'undecodable: not valid utf-8'."""
    (doc,) = load_bytes("old.txt", raw.encode(encoding))
    text = "\n\n".join(b.text for b in doc.blocks)
    assert text == raw.strip()
    assert len(doc.notes) == 1 and doc.notes[0].startswith("not UTF-8: decoded as ")


def test_utf8_text_has_no_note() -> None:
    (doc,) = load_bytes("new.txt", "Café crème\n".encode())
    assert doc.notes == [] and doc.blocks[0].text == "Café crème"


@pytest.mark.parametrize(
    ("name", "data", "text"),
    [
        ("a.md", b"# Release checklist\n", "Release checklist"),
        ("b.md", b"# Plan\n\n## Steps\n", "Plan\nSteps"),
        ("c.rst", b"Title\n=====\n", "Title"),
        ("d.html", b"<html><head><title>Only a title</title></head><body></body></html>", "Only a title"),
    ],
)
def test_heading_only_files_are_indexed(name: str, data: bytes, text: str) -> None:
    """Issue 19: a Markdown file holding only a heading was skipped as 'empty: no text'."""
    (doc,) = load_bytes(name, data)
    assert [b.text for b in doc.blocks] == [text]


def test_a_sphinx_build_is_indexed_once_by_its_pages(tmp_path: Path) -> None:
    """Issue 32 item 11: a Sphinx HTML build's searchindex.js blob and its _sources/*.rst.txt twins are left out
    (they took half the top hits and put raw reST into answers); its pages are indexed, their headings without
    the permalink mark."""
    from rag_cli.ingest.html_pages import load_html
    from rag_cli.ingest.walk import walk

    build = tmp_path / "html"
    (build / "_sources" / "library").mkdir(parents=True)
    (build / "_static").mkdir()
    (build / "library").mkdir()
    (build / "searchindex.js").write_text("Search.setIndex({docnames:['index']})")
    (build / "objects.inv").write_bytes(b"# Sphinx inventory")
    (build / "_sources" / "library" / "json.rst.txt").write_text(":mod:`json` --- JSON encoder\n=====\n")
    (build / "_static" / "doctools.js").write_text("var x = 1;")
    page = "<html><body><h1>json — JSON encoder<a class='headerlink' href='#json'>¶</a></h1><p>Use json.loads.</p></body></html>"
    (build / "library" / "json.html").write_text(page)
    (build / "genindex.html").write_text("<html><body><p>Index</p></body></html>")
    found = sorted(str(f.path.relative_to(build)) for f in walk([build]))
    assert found == ["library/json.html"]
    doc = load_html(str(build / "library" / "json.html"), page.encode())[0]
    assert doc.blocks[0].heading == ("json — JSON encoder",)
    # a folder with a searchindex.js of its own but no Sphinx build around it is walked as usual
    other = tmp_path / "app"
    other.mkdir()
    (other / "searchindex.js").write_text("var index = {};")
    assert [f.path.name for f in walk([other])] == ["searchindex.js"]
