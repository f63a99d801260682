"""Issue 19: every document format people keep, generated here with the libraries that write them
(python-docx, python-pptx, openpyxl, the standard library's zipfile, csv, json, email and mailbox), then
indexed by the real CLI, searched, and cited with its location; a corrupt file of each kind is skipped
with one warning line and no traceback."""

from __future__ import annotations

import json
import mailbox
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from rag_cli.ingest.loaders import SkipFile, load_bytes
from rag_cli.types import location_of
from tests.conftest import run_cli, write

HASH = {"RAG_EMBED_BACKEND": "hash"}


def make_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = "Quarterly report"
    d.add_heading("Revenue", level=1)
    d.add_paragraph("The zeppelin division sold forty airships this quarter.")
    d.add_heading("Staff", level=2)
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "name", "role"
    table.cell(1, 0).text, table.cell(1, 1).text = "Ada", "navigator"
    d.save(str(path))


def make_pptx(path: Path) -> None:
    import pptx
    from pptx.util import Inches

    prs = pptx.Presentation()
    for title, body in [
        ("Kickoff", "Welcome everyone."),
        ("Roadmap", "Ship the marmalade feature in May."),
        ("Risks", "None known."),
        ("Budget", "The quokka budget is twelve thousand."),
    ]:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    slide.notes_slide.notes_text_frame.text = "Speaker note about wombats."
    box = prs.slides[0].shapes.add_textbox(Inches(1), Inches(1), Inches(3), Inches(1))
    box.text_frame.text = "An extra text box."
    prs.save(str(path))


def make_xlsx(path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Fruit"
    ws.append(["fruit", "colour"])
    ws.append(["apple", "red"])
    ws2 = wb.create_sheet("Inventory")
    ws2.append(["item", "count"])
    ws2.append(["durian", 7])
    ws2.append(["rambutan", 3])
    wb.save(str(path))


def make_odt(path: Path) -> None:
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:text>'
        '<text:h text:outline-level="1">Garden notes</text:h><text:p>The kohlrabi bed needs compost in spring.</text:p>'
        '<text:h text:outline-level="2">Pests</text:h><text:list><text:list-item><text:p>Slugs eat the lettuce.</text:p>'
        "</text:list-item></text:list></office:text></office:body></office:document-content>"
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", content)


def make_epub(path: Path) -> None:
    container = (
        '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>The Lighthouse Book</dc:title></metadata>'
        '<manifest><item id="c1" href="ch1.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="c2" href="text/ch2.xhtml" media-type="application/xhtml+xml"/></manifest>'
        '<spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>'
    )
    ch = "<html><body><h1>{}</h1><p>{}</p></body></html>"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", container)
        z.writestr("OEBPS/content.opf", opf)
        z.writestr("OEBPS/ch1.xhtml", ch.format("Arrival", "The keeper arrived by boat."))
        z.writestr("OEBPS/text/ch2.xhtml", ch.format("The storm", "A gale broke the fresnel lens."))


def make_ipynb(path: Path) -> None:
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"language_info": {"name": "python"}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Analysis\n", "\n", "We load the data."]},
            {
                "cell_type": "code",
                "metadata": {},
                "source": ["import pandas\n", "df = load_pangolin_counts()"],
                "outputs": [],
                "execution_count": 1,
            },
            {"cell_type": "markdown", "metadata": {}, "source": "## Results\n\nPangolins thrive."},
        ],
    }
    path.write_text(json.dumps(nb))


def make_csv(path: Path) -> None:
    rows = ["city,river,population"] + [f"town{i},Rhine,{i * 1000}" for i in range(30)] + ["Basel,Aare-Rhine,178000"]
    path.write_text("\n".join(rows) + "\n")


def mail(subject: str, body: str, attach: tuple[str, bytes] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.com", "bob@example.com", subject
    msg["Date"] = "Fri, 19 Dec 2008 10:00:00 +0000"
    msg.set_content(body)
    if attach:
        msg.add_attachment(attach[1], maintype="text", subtype="markdown", filename=attach[0])
    return msg


def make_eml(path: Path) -> None:
    msg = mail(
        "Offsite planning", "Let us meet at the observatory.", ("agenda.md", b"# Agenda\n\nTelescope tour at noon.\n")
    )
    path.write_bytes(bytes(msg))


def make_mbox(path: Path) -> None:
    box = mailbox.mbox(str(path))
    box.add(mail("First", "Nothing to see."))
    box.add(mail("Second", "The narwhal migration starts Tuesday.\nFrom the north, as usual."))
    box.add(mail("Third", "Lunch?"))
    box.flush()
    box.close()


# name, maker, query (bm25), a word of the text it finds, location suffix of that hit
FORMATS = [
    ("report.docx", make_docx, "zeppelin airships", "zeppelin", "report.docx"),
    ("deck.pptx", make_pptx, "marmalade feature", "marmalade", "deck.pptx#slide=2"),
    ("book.xlsx", make_xlsx, "durian", "durian", "book.xlsx#sheet=2"),
    ("garden.odt", make_odt, "kohlrabi compost", "kohlrabi", "garden.odt"),
    ("light.epub", make_epub, "fresnel lens gale", "fresnel", "light.epub#chapter=2"),
    ("nb.ipynb", make_ipynb, "pangolin counts", "load_pangolin_counts", "nb.ipynb#cell=2"),
    ("towns.csv", make_csv, "Basel Aare", "Basel", "towns.csv:2"),
    ("offsite.eml", make_eml, "telescope tour", "Telescope", "offsite.eml"),
    ("list.mbox", make_mbox, "narwhal migration", "narwhal", "list.mbox#message=2"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("formats") / "docs"
    root.mkdir()
    for name, maker, *_ in FORMATS:
        maker(root / name)
    return root


@pytest.fixture(scope="module")
def home(corpus: Path) -> Path:
    home = corpus.parent / "home"
    out = run_cli("index", str(corpus), "--json", env={"RAG_HOME": str(home), **HASH})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["skipped"] == [] and report["files"]["indexed"] == len(FORMATS), report
    return home


@pytest.mark.parametrize(
    ("name", "query", "word", "location"), [(f[0], f[2], f[3], f[4]) for f in FORMATS], ids=[f[0] for f in FORMATS]
)
def test_each_format_is_indexed_searchable_and_cited(
    home: Path, name: str, query: str, word: str, location: str
) -> None:
    out = run_cli("search", query, "--mode", "bm25", "-k", "3", "--json", env={"RAG_HOME": str(home), **HASH})
    assert out.returncode == 0, out.stderr
    top = json.loads(out.stdout)["hits"][0]
    assert top["path"].endswith("/" + name) and word in top["text"], top
    assert location_of(top["path"], top["page"], top["start_line"]).endswith(location), top


def test_structure_flows_into_headings(corpus: Path) -> None:
    (docx_doc,) = load_bytes("r.docx", (corpus / "report.docx").read_bytes())
    assert docx_doc.title == "Quarterly report"
    assert [b.heading for b in docx_doc.blocks] == [("Revenue",), ("Revenue", "Staff")]
    # a Word table's rows are named by its header row, like a spreadsheet's (issue 32 items 5 and 11)
    assert docx_doc.blocks[1].text == "name: Ada; role: navigator" and docx_doc.blocks[1].start_line is None
    (deck,) = load_bytes("d.pptx", (corpus / "deck.pptx").read_bytes())
    assert [(b.page, b.heading) for b in deck.blocks][:2] == [(1, ("Kickoff",)), (2, ("Roadmap",))]
    assert "Notes: Speaker note about wombats." in deck.blocks[-1].text
    assert "An extra text box." in deck.blocks[0].text
    (book,) = load_bytes("b.xlsx", (corpus / "book.xlsx").read_bytes())
    assert [(b.heading, b.text) for b in book.blocks] == [
        (("Fruit",), "fruit: apple; colour: red"),
        (("Inventory",), "item: durian; count: 7\nitem: rambutan; count: 3"),
    ]
    (odt,) = load_bytes("g.odt", (corpus / "garden.odt").read_bytes())
    assert odt.title == "Garden notes" and odt.blocks[-1].heading == ("Garden notes", "Pests")
    (epub,) = load_bytes("l.epub", (corpus / "light.epub").read_bytes())
    assert epub.title == "The Lighthouse Book" and [b.heading for b in epub.blocks] == [("Arrival",), ("The storm",)]
    (nb,) = load_bytes("n.ipynb", (corpus / "nb.ipynb").read_bytes())
    assert (
        nb.title == "Analysis"
        and nb.blocks[1].text.startswith("```python\n")
        and nb.blocks[-1].heading == ("Analysis", "Results")
    )
    (eml,) = load_bytes("o.eml", (corpus / "offsite.eml").read_bytes())
    assert eml.title == "Offsite planning" and "From: ann@example.com" in eml.blocks[0].text
    assert any(b.heading[:2] == ("Offsite planning", "attachment agenda.md") for b in eml.blocks)
    msgs = load_bytes("l.mbox", (corpus / "list.mbox").read_bytes())
    assert [d.title for d in msgs] == ["First", "Second", "Third"]
    assert "From the north, as usual." in msgs[1].blocks[-1].text  # the body's own 'From ' line is kept


CORRUPT = {
    "bad.docx": b"PK\x03\x04 not really a zip",
    "bad.pptx": b"\x00\x01garbage",
    "bad.xlsx": b"PK\x05\x06" + b"\x00" * 18,
    "bad.odt": b"plain text pretending",
    "bad.epub": b"PK\x03\x04",
    "bad.ipynb": b'{"cells": [',
    "bad.csv": b'a,b\n"unterminated,\x00\x00\x00',
    "bad.eml": b"\x00\x00\x00\x00binary",
    "bad.mbox": b"no from line here\n",
}


def test_corrupt_files_are_skipped_with_one_line_each(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    for name, data in CORRUPT.items():
        write(root / name, data)
    write(root / "good.md", "# Fine\n\nA readable file.\n")
    out = run_cli("index", str(root), env={"RAG_HOME": str(tmp_path / "home"), **HASH})
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    warned = [ln for ln in out.stderr.splitlines() if ln.startswith("warning: skipped")]
    assert sorted(ln.split(":")[1].strip().rsplit("/", 1)[-1] for ln in warned) == sorted(CORRUPT), out.stderr
    assert "indexed 1 files" in out.stderr


def test_missing_library_is_a_clear_skip_reason(monkeypatch: pytest.MonkeyPatch, corpus: Path) -> None:
    import builtins

    real = builtins.__import__

    def no_docx(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "docx" or name.startswith("docx."):
            raise ImportError("No module named 'docx'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_docx)
    monkeypatch.delitem(__import__("sys").modules, "docx", raising=False)
    with pytest.raises(SkipFile, match=r"needs python-docx: pip install 'rag-cli\[office\]'"):
        load_bytes("r.docx", (corpus / "report.docx").read_bytes())


def test_zip_bomb_is_refused_before_opening(tmp_path: Path) -> None:
    from rag_cli.ingest import office

    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b"\x00" * (office.MAX_UNPACKED + 1))
    with pytest.raises(SkipFile, match="unpacks to over"):
        load_bytes("bomb.docx", path.read_bytes())
