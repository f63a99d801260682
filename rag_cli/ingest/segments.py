"""Big text files in bounded pieces: read, load and chunk one segment at a time.

A file over :data:`SEGMENT_BYTES` whose format is line-based (plain text, Markdown, reStructuredText,
source code, JSON Lines) is not read whole: it is cut into segments of about that size at a blank
line (else at a line end, else at a character boundary), and each segment is loaded and chunked on
its own, with its line numbers shifted to the file's. Memory then grows with the segment, not with
the file, and no single parse holds the GIL (and the event loop) for seconds. Markdown headings carry
over: blocks at the start of a segment keep the heading trail the previous segment ended under.

HTML and PDF are not line-based; they are loaded whole (within ``--max-file-mb``).
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from ..types import Document
from . import budget
from .loaders import LOADERS, SkipFile, load_code, load_markdown, load_rst, load_text
from .records import load_jsonl

SEGMENT_BYTES = 8 * 2**20
_LINE_BASED = (load_text, load_markdown, load_rst, load_code, load_jsonl)
_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-16/32: a newline byte can sit inside a character


def segmentable(path: str | Path, size: int) -> bool:
    """True when ``path`` is big enough to be read in segments and its loader is line-based."""
    return size > SEGMENT_BYTES and LOADERS.get(Path(path).suffix.lower(), load_text) in _LINE_BASED


def file_digest(path: str | Path, limit: int) -> tuple[str, int]:
    """The blake2b-128 of the file's content read in 1 MiB blocks, and its byte count (at most ``limit``+1)."""
    h = hashlib.blake2b(digest_size=16)
    n = 0
    with open_regular(path) as fh:
        while n <= limit and (block := fh.read(2**20)):
            h.update(block)
            n += len(block)
            budget.progress()  # reading is progress: a slow disk is no stuck parser
    return h.hexdigest(), n


def _cut(buf: bytes, final: bool) -> int:
    """Where to end a segment taken from ``buf``: after a blank line in its last quarter, else after
    its last line end, else before a UTF-8 character that starts in the last bytes."""
    if final:
        return len(buf)
    window = len(buf) * 3 // 4
    for sep in (b"\n\n", b"\n"):
        at = buf.rfind(sep, window)
        if at >= 0:
            return at + len(sep)
    at = len(buf)
    while at > len(buf) - 4 and at > 0 and 0x80 <= buf[at - 1] <= 0xBF:  # back over continuation bytes
        at -= 1
    return at - 1 if at > 0 and buf[at - 1] >= 0xC0 else at


def iter_segments(fh: BinaryIO, size: int | None = None) -> Iterator[tuple[bytes, int]]:
    """Yield (bytes, number of the segment's first line) covering the whole stream, in order."""
    size = size or SEGMENT_BYTES
    line = 1
    carry = b""
    while True:
        block = fh.read(max(0, size - len(carry)))
        buf = carry + block
        if not buf:
            return
        final = not block or len(buf) < size
        at = _cut(buf, final) or len(buf)
        seg, carry = buf[:at], buf[at:]
        yield seg, line
        line += seg.count(b"\n")
        if final and not carry:
            return


def load_segment(
    loader: Callable[[str, bytes], list[Document]],
    path: str,
    data: bytes,
    first_line: int,
    title: str | None,
    heading: tuple[str, ...],
) -> list[Document]:
    """Load one segment as the file's loader would, shifted to line ``first_line``; a segment after
    the first keeps the file's ``title`` and opens under ``heading`` (where the previous one ended)."""
    try:
        docs = loader(path, data)
    except SkipFile as exc:
        if exc.reason.startswith("empty"):
            return []
        raise
    shift = first_line - 1
    out = []
    for doc in docs:
        blocks = []
        opening = True
        for b in doc.blocks:
            if b.heading:
                opening = False
            blocks.append(
                replace(
                    b,
                    heading=heading if opening and not b.heading else b.heading,
                    start_line=None if b.start_line is None else b.start_line + shift,
                    end_line=None if b.end_line is None else b.end_line + shift,
                )
            )
        keep_title = title if title is not None and doc.doc_id is None else doc.title
        out.append(replace(doc, title=keep_title, blocks=blocks))
    return out


_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def open_regular(path: str | Path) -> BinaryIO:
    """``path`` (absolute, resolved by the walk) opened for reading without following a link in *any*
    component and without blocking on a FIFO; a SkipFile if it is no longer a regular file.

    The walk lists files first and they are opened later: a folder on the way swapped for a link in
    between (``mv d/sub d/.x; ln -s /secret d/sub``) must not carry a file from outside the indexed
    folders into the index. Each folder is opened from its parent's descriptor with ``O_NOFOLLOW |
    O_DIRECTORY`` and the file from the last one with ``O_NOFOLLOW``, so a link anywhere is refused.
    Where ``dir_fd`` is not supported, the opened file's real path must be the one the walk saw."""
    import stat

    path = Path(path)
    if os.open in os.supports_dir_fd and path.is_absolute():
        fd = _open_beneath(path)
    else:
        fd = os.open(path, _FLAGS | getattr(os, "O_NONBLOCK", 0))
        if os.path.realpath(path) != os.path.abspath(path):
            os.close(fd)
            raise SkipFile("a link on its path changed since the walk; not followed")
    fh = open(fd, "rb")  # noqa: SIM115 - the caller closes it
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise SkipFile("not a regular file")
    return fh


def _open_beneath(path: Path) -> int:
    parts = path.parts
    dir_flags = _FLAGS | getattr(os, "O_DIRECTORY", 0)
    fd = os.open(parts[0], dir_flags)
    try:
        for name in parts[1:-1]:
            try:
                nxt = os.open(name, dir_flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise SkipFile(
                        f"the folder {name!r} on its path became a link since the walk; not followed"
                    ) from None
                raise
            os.close(fd)
            fd = nxt
        try:
            return os.open(parts[-1], _FLAGS | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SkipFile("it became a link since the walk; not followed") from None
            raise
    finally:
        os.close(fd)


def starts_with_bom(fh: BinaryIO) -> bool:
    head = fh.read(4)
    fh.seek(0)
    return head.startswith(_BOMS)
