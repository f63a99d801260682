"""Loaders for office documents and e-books: ``.docx``, ``.pptx``, ``.xlsx`` (python-docx, python-pptx,
openpyxl: the ``office`` extra), ``.odt`` and ``.epub`` (zip + XML/HTML, standard library only).

Structure becomes chunk metadata: Word headings and OpenDocument ``text:h`` are the heading trail; a
slide is a page (cited ``deck.pptx#slide=4``) under its title; a sheet is a page (``book.xlsx#sheet=2``)
under its name, its rows grouped under the header row; an e-book chapter is a page (``#chapter=3``).
A missing library skips its files with a reason that says what to install. Every format here is a zip:
one that would unpack to more than ``MAX_UNPACKED`` bytes is skipped before it is opened.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from xml.etree import ElementTree as ET

from ..types import Block, Document
from .budget import check
from .html_pages import load_html
from .loaders import SkipFile, register_loader, require_text, stem_title
from .records import table_blocks

MAX_UNPACKED = 512 << 20  # a zip that unpacks past this is a bomb or not a document
MAX_CELLS = 2_000_000  # cells read of one workbook


def _zip(data: bytes, kind: str) -> zipfile.ZipFile:
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise SkipFile(f"malformed {kind}: not a zip container ({exc})") from None
    if sum(i.file_size for i in z.infolist()) > MAX_UNPACKED:
        raise SkipFile(f"{kind} unpacks to over {MAX_UNPACKED >> 20} MiB")
    return z


def _need(module: str, package: str, ext: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SkipFile(f"{ext} needs {package}: pip install 'rag-cli[office]'") from None


def _open(make: Any, kind: str) -> Any:
    """A library's document object; its many kinds of failure on a damaged file are one SkipFile."""
    try:
        return make()
    except SkipFile:
        raise
    except Exception as exc:
        raise SkipFile(f"malformed {kind}: {type(exc).__name__}: {str(exc)[:80]}") from None


def _clean(text: str) -> str:
    return re.sub(r"[ \t\r\f\v]+", " ", text).strip()


# -- Word -----------------------------------------------------------------------------------------


def load_docx(path: str, data: bytes) -> list[Document]:
    docx = _need("docx", "python-docx", ".docx")
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    _zip(data, "docx").close()
    doc = _open(lambda: docx.Document(io.BytesIO(data)), "docx")
    title = _clean(doc.core_properties.title or "")
    trail: list[tuple[int, str]] = []
    headings: list[tuple[int | None, str]] = []
    blocks: list[Block] = []
    for n, el in enumerate(doc.element.body.iterchildren()):
        if not n & 255:
            check()
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(el, doc)
            text = _clean(para.text)
            if not text:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            level = 1 if style == "Title" else int(m.group(1)) if (m := re.match(r"Heading (\d)", style)) else 0
            if level:
                while trail and trail[-1][0] >= level:
                    trail.pop()
                trail.append((level, text))
                headings.append((None, text))
                title = title or text
                continue
            blocks.append(Block(text, tuple(t for _, t in trail)))
        elif tag == "tbl":
            # each row on a line of its own, its cells named by the header row ("City: Paris; Cap: 190"), as
            # CSV and spreadsheet rows are: a quote or a verified number keeps what it is; a Word document has
            # no line numbers, so the row numbers are not kept as lines
            rows = [(r, [_clean(c.text) for c in row.cells]) for r, row in enumerate(Table(el, doc).rows, start=1)]
            blocks += [
                replace(b, start_line=None, end_line=None) for b in table_blocks(rows, tuple(t for _, t in trail))
            ]
    return [Document(path, title or stem_title(path), require_text(blocks, headings), kind="docx")]


# -- PowerPoint -----------------------------------------------------------------------------------


def load_pptx(path: str, data: bytes) -> list[Document]:
    pptx = _need("pptx", "python-pptx", ".pptx")
    _zip(data, "pptx").close()
    prs = _open(lambda: pptx.Presentation(io.BytesIO(data)), "pptx")
    title = _clean(prs.core_properties.title or "")
    blocks: list[Block] = []
    for n, slide in enumerate(prs.slides, start=1):
        check()
        head_shape = slide.shapes.title
        head = _clean(head_shape.text_frame.text) if head_shape is not None and head_shape.has_text_frame else ""
        title = title or head
        parts: list[str] = []
        for shape in slide.shapes:
            if head_shape is not None and shape.shape_id == head_shape.shape_id:
                continue
            if shape.has_text_frame:
                parts += [t for p in shape.text_frame.paragraphs if (t := _clean("".join(r.text for r in p.runs)))]
            if getattr(shape, "has_table", False) and shape.has_table:
                parts += [" | ".join(_clean(c.text) for c in row.cells) for row in shape.table.rows]
        if slide.has_notes_slide:
            notes = _clean(slide.notes_slide.notes_text_frame.text or "")
            if notes:
                parts.append(f"Notes: {notes}")
        text = "\n".join(p for p in parts if p.strip(" |")) or head
        if text:
            blocks.append(Block(text, (head,) if head and text != head else (), page=n))
    return [Document(path, title or stem_title(path), require_text(blocks), kind="pptx")]


# -- Excel ----------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _clean(str(value))


def load_xlsx(path: str, data: bytes) -> list[Document]:
    openpyxl = _need("openpyxl", "openpyxl", ".xlsx")
    _zip(data, "xlsx").close()
    wb = _open(lambda: openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True), "xlsx")
    blocks: list[Block] = []
    cells = 0

    def rows(ws: Any) -> Iterator[tuple[int, list[str]]]:
        nonlocal cells
        for r, values in enumerate(ws.iter_rows(values_only=True), start=1):
            cells += len(values)
            if not r & 255:
                check()
            if cells > MAX_CELLS:
                raise SkipFile(f"workbook over {MAX_CELLS:,} cells")
            yield r, [_cell(v) for v in values]

    try:
        for n, ws in enumerate(wb.worksheets, start=1):
            blocks += table_blocks(rows(ws), (ws.title,), n)
    finally:
        wb.close()
    return [Document(path, stem_title(path), require_text(blocks), kind="xlsx")]


# -- OpenDocument text ----------------------------------------------------------------------------

_ODF_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_ODF_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_DC = "http://purl.org/dc/elements/1.1/"


MAX_MEMBER = 64 << 20  # bytes one XML/HTML part of a document may unpack to (a 20 MB document's text, marked up)


def _open_member(z: zipfile.ZipFile, name: str, kind: str) -> io.BufferedReader:
    """One member opened for reading, refused past :data:`MAX_MEMBER` by what it declares and, as it is
    read, by what it yields (a header's size can lie)."""
    try:
        info = z.getinfo(name)
    except KeyError:
        raise SkipFile(f"malformed {kind}: no {name}") from None
    if info.file_size > MAX_MEMBER:
        raise SkipFile(f"{kind}: {name} unpacks to {info.file_size >> 20} MiB, over {MAX_MEMBER >> 20} MiB")
    return io.BufferedReader(_Capped(z.open(info), MAX_MEMBER, f"{kind}: {name}"))


def _member(z: zipfile.ZipFile, name: str, kind: str) -> bytes:
    """One member's bytes (:func:`_open_member`)."""
    with _open_member(z, name, kind) as fh:
        return fh.read()


def _xml(z: zipfile.ZipFile, name: str, kind: str) -> ET.Element:
    data = _member(z, name, kind)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise SkipFile(f"malformed {kind}: {name}: {exc}") from None


class _Capped(io.RawIOBase):
    """A zip member read through a byte cap (its header's size can lie)."""

    def __init__(self, fh: Any, cap: int, what: str) -> None:
        self.fh, self.left, self.what = fh, cap, what

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n: int = self.fh.readinto(buf)
        self.left -= n
        if self.left < 0:
            raise SkipFile(f"{self.what} unpacks to over {MAX_MEMBER >> 20} MiB")
        return n

    def close(self) -> None:
        self.fh.close()
        super().close()


def load_odt(path: str, data: bytes) -> list[Document]:
    """Paragraphs and headings of ``content.xml``, parsed incrementally: each heading or paragraph is read
    at its end and dropped, so memory follows the longest paragraph, not the document (a 306 KB file whose
    150 MiB ``content.xml`` peaked at 1.9 GB parsed whole)."""
    z = _zip(data, "odt")
    title = ""
    if "meta.xml" in z.namelist():
        t = _xml(z, "meta.xml", "odt").find(f".//{{{_DC}}}title")
        title = _clean(t.text or "") if t is not None else ""
    with _open_member(z, "content.xml", "odt") as stream:
        try:
            blocks, headings, first = _odt_body(stream)
        except ET.ParseError as exc:
            raise SkipFile(f"malformed odt: content.xml: {exc}") from None
    return [Document(path, title or first or stem_title(path), require_text(blocks, headings), kind="odt")]


def _odt_body(stream: Any) -> tuple[list[Block], list[tuple[int | None, str]], str]:
    """(blocks, headings, first heading) of the ``office:body/office:text`` in an ODF content stream."""
    body, h, p = f"{{{_ODF_OFFICE}}}text", f"{{{_ODF_TEXT}}}h", f"{{{_ODF_TEXT}}}p"
    trail: list[tuple[int, str]] = []
    headings: list[tuple[int | None, str]] = []
    blocks: list[Block] = []
    first = ""
    stack: list[ET.Element] = []
    inside = False  # within office:text
    para = 0  # depth of open headings/paragraphs: their inner spans stay until the paragraph ends
    seen_body = False
    for n, (event, el) in enumerate(ET.iterparse(stream, events=("start", "end"))):
        if not n & 1023:
            check()
        if event == "start":
            stack.append(el)
            inside = inside or el.tag == body
            para += el.tag in (h, p)
            continue
        stack.pop()
        if el.tag == body:
            inside, seen_body = False, True
        if inside and el.tag in (h, p):
            para -= 1
            text = _clean("".join(el.itertext()))
            if text and el.tag == h:
                level = int(el.get(f"{{{_ODF_TEXT}}}outline-level") or 1)
                while trail and trail[-1][0] >= level:
                    trail.pop()
                trail.append((level, text))
                headings.append((None, text))
                first = first or text
            elif text and para == 0:
                blocks.append(Block(text, tuple(t for _, t in trail)))
        elif el.tag in (h, p):
            para -= 1
        if para == 0 and stack:
            stack[-1].remove(el)  # read (or outside the text): let it go
    if not seen_body:
        raise SkipFile("malformed odt: no text body")
    return blocks, headings, first


# -- EPUB -----------------------------------------------------------------------------------------

_OPF = "http://www.idpf.org/2007/opf"
_CONTAINER = "urn:oasis:names:tc:opendocument:xmlns:container"


def load_epub(path: str, data: bytes) -> list[Document]:
    """Chapters in reading order (the package's spine), each read by the HTML loader: a chapter is a page
    under its first heading."""
    z = _zip(data, "epub")
    rootfile = _xml(z, "META-INF/container.xml", "epub").find(f".//{{{_CONTAINER}}}rootfile")
    if rootfile is None or not rootfile.get("full-path"):
        raise SkipFile("malformed epub: no rootfile in META-INF/container.xml")
    opf_path = rootfile.get("full-path", "")
    opf = _xml(z, opf_path, "epub")
    base = posixpath.dirname(opf_path)
    t = opf.find(f".//{{{_DC}}}title")
    title = _clean(t.text or "") if t is not None else ""
    items = {i.get("id"): i.get("href") for i in opf.iter(f"{{{_OPF}}}item")}
    blocks: list[Block] = []
    chapter = 0
    read: set[str] = set()  # a spine that lists one chapter 700 times reads it once
    for ref in opf.iter(f"{{{_OPF}}}itemref"):
        check()
        href = items.get(ref.get("idref"))
        if not href:
            continue
        name = posixpath.normpath(posixpath.join(base, href.split("#")[0]))
        if name in read:
            continue
        read.add(name)
        try:
            html = _member(z, name, "epub")
        except SkipFile as exc:
            if "no " + name in exc.reason:
                continue
            raise
        try:
            (doc,) = load_html(name, html)
        except SkipFile:  # a cover image page or an empty separator
            continue
        chapter += 1
        head = doc.blocks[0].heading[0] if doc.blocks and doc.blocks[0].heading else doc.title
        for b in doc.blocks:
            trail = b.heading if b.heading and b.heading[0] == head else (head, *b.heading)
            blocks.append(Block(b.text, tuple(x for x in trail if x), page=chapter))
    return [Document(path, title or stem_title(path), require_text(blocks), kind="epub")]


for _ext, _loader in (
    (".docx", load_docx),
    (".pptx", load_pptx),
    (".xlsx", load_xlsx),
    (".odt", load_odt),
    (".epub", load_epub),
):
    register_loader(_ext, _loader)
