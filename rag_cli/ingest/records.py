"""Loaders for record-shaped files, standard library only: ``.jsonl`` (BEIR documents), ``.csv``/``.tsv`` (rows grouped under the
header), ``.ipynb`` (markdown and code cells; outputs are not indexed), ``.eml`` and ``.mbox`` (subject,
from, date and body; attachments through the other loaders).

A notebook cell is a page (cited ``nb.ipynb#cell=7``); an mbox message is a document of its own
(``#message=3``); a CSV row block keeps its line numbers.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import re
from collections.abc import Iterable, Iterator
from email.message import EmailMessage
from typing import Any

from ..types import Block, Document
from .budget import check, progress
from .html_pages import load_html
from .loaders import (
    SkipFile,
    decode_text,
    load_markdown,
    loader_for,
    register_loader,
    require_text,
    stem_title,
)

ROWS_PER_BLOCK = 20
MAX_ATTACHMENT_DEPTH = 2  # a mail attached to a mail attached to a mail is read; deeper ones are not


# -- CSV / TSV ------------------------------------------------------------------------------------


def table_blocks(
    rows: Iterable[tuple[int, list[str]]], heading: tuple[str, ...] = (), page: int | None = None
) -> list[Block]:
    """Rows of a table (line or row number, cell texts) as blocks of up to ``ROWS_PER_BLOCK`` rows, each row
    ``column: value; ...`` named by the first row with text (the header); a table of a header alone is it."""
    header: list[str] | None = None
    header_at = 0
    blocks: list[Block] = []
    lines: list[str] = []
    first = last = 0
    for at, cells in rows:
        if not any(cells):
            continue
        if header is None:
            header, header_at = [c or f"column {i + 1}" for i, c in enumerate(cells)], at
            continue
        named = [f"{h}: {c}" for h, c in zip(header, cells, strict=False) if c] + [c for c in cells[len(header) :] if c]
        if not lines:
            first = at
        lines.append("; ".join(named))
        last = at
        if len(lines) >= ROWS_PER_BLOCK:
            blocks.append(Block("\n".join(lines), heading, first, last, page))
            lines = []
    if lines:
        blocks.append(Block("\n".join(lines), heading, first, last, page))
    if not blocks and header:
        blocks.append(Block(" | ".join(header), heading, header_at, header_at, page))
    return blocks


def _delimited(path: str, data: bytes, delimiter: str | None) -> list[Document]:
    notes: list[str] = []
    text = decode_text(data, notes)
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    csv.field_size_limit(1 << 24)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)

    def rows() -> Iterator[tuple[int, list[str]]]:
        for row in reader:
            if not reader.line_num & 255:
                check()
            yield reader.line_num, [c.strip() for c in row]

    try:
        blocks = table_blocks(rows())
    except csv.Error as exc:
        raise SkipFile(f"malformed CSV at line {reader.line_num}: {exc}") from None
    kind = "tsv" if delimiter == "\t" else "csv"
    return [Document(path, stem_title(path), require_text(blocks), kind=kind, notes=notes)]


def load_csv(path: str, data: bytes) -> list[Document]:
    return _delimited(path, data, None)


def load_tsv(path: str, data: bytes) -> list[Document]:
    return _delimited(path, data, "\t")


# -- Jupyter notebooks ----------------------------------------------------------------------------


def load_ipynb(path: str, data: bytes) -> list[Document]:
    try:
        nb = json.loads(decode_text(data))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SkipFile(f"malformed notebook: {str(exc)[:80]}") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise SkipFile("malformed notebook: no cells")
    meta = nb["metadata"] if isinstance(nb.get("metadata"), dict) else {}
    info = meta["language_info"] if isinstance(meta.get("language_info"), dict) else {}
    lang = str(info.get("name") or "")
    # the cells as one Markdown text (code cells fenced), so a heading's scope runs across cells; each
    # block is then cited by the cell it starts in
    lines: list[str] = []
    cell_of: list[int] = []
    for n, cell in enumerate(cells, start=1):
        check()
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("markdown", "code"):
            continue
        source = cell.get("source", "")
        text = ("".join(source) if isinstance(source, list) else str(source)).strip("\n")
        if not text.strip():
            continue
        if cell["cell_type"] == "code":
            fence = "````" if "```" in text else "```"
            text = f"{fence}{lang}\n{text}\n{fence}"
        part = [*text.split("\n"), ""]
        lines += part
        cell_of += [n] * len(part)
    if not lines:
        raise SkipFile("empty: no cells with text")
    (doc,) = load_markdown(path, "\n".join(lines).encode())
    blocks = [Block(b.text, b.heading, page=cell_of[min(len(cell_of), b.start_line or 1) - 1]) for b in doc.blocks]
    title = doc.title if doc.title != stem_title(path) else ""
    return [Document(path, title or stem_title(path), require_text(blocks), kind="ipynb")]


# -- mail -----------------------------------------------------------------------------------------


def _message_doc(path: str, msg: EmailMessage, depth: int, page: int | None = None) -> Document:
    subject = str(msg.get("subject", "") or "").strip()
    head = [f"{k}: {v}" for k in ("From", "To", "Date", "Subject") if (v := str(msg.get(k, "") or "").strip())]
    blocks = [Block("\n".join(head), (), page=page)] if head else []
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        blocks += _part_blocks(body, (subject,) if subject else (), page)
    for part in msg.iter_attachments() if depth < MAX_ATTACHMENT_DEPTH else []:
        name = part.get_filename() or ""
        trail = (subject, f"attachment {name}") if subject else (f"attachment {name}",)
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, EmailMessage):
                blocks += [
                    Block(b.text, trail + b.heading, page=page)
                    for b in _message_doc(path, inner, depth + 1, page).blocks
                ]
            continue
        loader = loader_for(name) if name else None
        payload = part.get_payload(decode=True)
        if loader is None or not isinstance(payload, bytes):
            continue
        try:
            for doc in loader(name, payload):
                blocks += [Block(b.text, trail + b.heading, page=page) for b in doc.blocks]
        except SkipFile:
            continue
    return Document(path, subject or stem_title(path), blocks, kind="email")


def _part_blocks(part: Any, trail: tuple[str, ...], page: int | None) -> list[Block]:
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset: the raw bytes as text
        content = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    if not isinstance(content, str) or _binary(content):
        return []  # random bytes declared text/plain are no text: skipped as the same bytes in a .txt are
    if part.get_content_type() == "text/html":
        try:
            (doc,) = load_html("body.html", content.encode())
        except SkipFile:
            return []
        return [Block(b.text, trail + b.heading, page=page) for b in doc.blocks]
    paras = [p.strip() for p in re.split(r"\n\s*\n", content.replace("\r\n", "\n")) if p.strip()]
    return [Block(p, trail, page=page) for p in paras]


def _binary(text: str) -> bool:
    """Text that is mostly undecodable bytes (U+FFFD) or control characters: binary data in a text part."""
    head = text[:4096]
    bad = sum(1 for ch in head if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\n\r\t\f\v"))
    return bad > 0.1 * max(1, len(head))


def _parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def load_eml(path: str, data: bytes) -> list[Document]:
    if b"\x00" in data[:8192]:
        raise SkipFile("binary file (NUL bytes)")
    doc = _message_doc(path, _parse(data), 0)
    doc.blocks = require_text(doc.blocks)
    return [doc]


_FROM_LINE = re.compile(rb"^From \S.*$", re.MULTILINE)


def load_mbox(path: str, data: bytes) -> list[Document]:
    """One document a message (``doc_id`` its Message-ID or number), in file order."""
    if b"\x00" in data[:8192]:
        raise SkipFile("binary file (NUL bytes)")
    starts = [
        m.start() for m in _FROM_LINE.finditer(data) if m.start() == 0 or data[m.start() - 1 : m.start()] == b"\n"
    ]
    if not starts:
        raise SkipFile("malformed mbox: no 'From ' line")
    docs: list[Document] = []
    for n, (a, b) in enumerate(zip(starts, [*starts[1:], len(data)], strict=False), start=1):
        check()
        raw = data[a:b]
        raw = raw[raw.find(b"\n") + 1 :]  # the From_ line is the mbox's, not the message's
        raw = re.sub(rb"^>(>*From )", rb"\1", raw, flags=re.MULTILINE)  # mboxrd unquoting
        msg = _parse(raw)
        doc = _message_doc(path, msg, 0, page=n)
        if not any(b.text.strip() for b in doc.blocks):
            continue
        doc.doc_id = str(msg.get("message-id") or n).strip()
        docs.append(doc)
        progress()
    if not docs:
        raise SkipFile("empty: no messages with text")
    return docs


# -- BEIR JSON Lines --------------------------------------------------------------------------------


def _jsonl_field(obj: dict[str, Any], key: str) -> str | None:
    """A text field: strings as they are, numbers as their text, absent or null as ""; None (the
    line is bad) for lists, objects and booleans, which have no one right text."""
    value = obj.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def load_jsonl(path: str, data: bytes) -> list[Document]:
    """BEIR-style documents: one JSON object a line with ``_id``, ``title`` and ``text``.

    A bad line (not JSON, nested too deep, not an object, no ``text``, a list or object where text
    belongs) is skipped, not the file; a repeated ``_id`` keeps its first document. Both are told
    in the first document's ``notes``."""
    notes: list[str] = []
    text = decode_text(data, notes)
    docs: list[Document] = []
    bad: list[str] = []
    seen: dict[str, int] = {}
    dupes: list[str] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not lineno & 255:
            check()
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad.append(f"line {lineno}: not JSON")
            continue
        except RecursionError:
            bad.append(f"line {lineno}: nested too deep")
            continue
        if not isinstance(obj, dict) or "text" not in obj:
            bad.append(f"line {lineno}: no 'text' field")
            continue
        body, title = _jsonl_field(obj, "text"), _jsonl_field(obj, "title")
        raw_id = obj.get("_id", obj.get("id", lineno))
        doc_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
        if body is None or title is None or doc_id is None:
            bad.append(f"line {lineno}: '_id', 'title' and 'text' must be strings or numbers")
            continue
        body, title = body.strip(), title.strip()
        if not body and not title:
            continue
        if doc_id in seen:
            dupes.append(doc_id)
            continue
        seen[doc_id] = lineno
        paras = [p for p in re.split(r"\n\s*\n", body) if p.strip()] or [title]
        blocks = [Block(p.strip(), (), lineno, lineno) for p in paras]
        docs.append(Document(path, title or doc_id, blocks, kind="jsonl", doc_id=doc_id))
        progress()  # judged record by record: a big corpus is no pathological file
    if not docs:
        raise SkipFile(f"malformed JSONL: no usable document ({bad[0]})" if bad else "empty: no documents")
    docs[0].notes.extend(notes)
    if bad:
        docs[0].notes.append(f"skipped {len(bad)} bad line{'s' * (len(bad) > 1)} ({'; '.join(bad[:3])})")
    if dupes:
        shown = ", ".join(repr(d) for d in dupes[:3])
        docs[0].notes.append(f"{len(dupes)} repeated _id{'s' * (len(dupes) > 1)} ({shown}): kept the first of each")
    return docs


for _ext, _loader in (
    (".jsonl", load_jsonl),
    (".csv", load_csv),
    (".tsv", load_tsv),
    (".ipynb", load_ipynb),
    (".eml", load_eml),
    (".mbox", load_mbox),
):
    register_loader(_ext, _loader)
