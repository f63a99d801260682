"""How any store writes a chunk's fields and reads them back: the heading trail's separator, file paths and
text made storable (a Linux file name is bytes), the words keyword search looks for, and a file's stored
state. The local store (SQLite) and PostgreSQL share these, so an index moved between them reads the same."""

from __future__ import annotations

import re

from ..text import STOP_WORDS as _STOP
from ..text import WORD as _TOKEN


class FileState:
    """What an index holds of one file: its row id, path, size, modification time and content hash."""

    __slots__ = ("hash", "id", "mtime_ns", "path", "size")

    def __init__(self, id: int, path: str, size: int, mtime_ns: int, hash: str) -> None:
        self.id, self.path, self.size, self.mtime_ns, self.hash = id, path, size, mtime_ns, hash


def query_words(text: str) -> list[str]:
    """The words keyword search looks for: lower-cased, stop words dropped (unless nothing else is left), once each."""
    words = [w.lower() for w in _TOKEN.findall(text)]
    kept = [w for w in words if w not in _STOP] or words
    return list(dict.fromkeys(kept))[:64]


HEADING_SEP = " > "

# SQLite text is UTF-8, but a Linux file name is bytes: Python hands undecodable bytes over as lone
# surrogates (U+DC80-U+DCFF, PEP 383), which SQLite cannot store. files.path keeps them losslessly by
# writing each as U+E000 followed by U+E100 + byte, and a literal U+E000 as two of them, so every
# path that is valid UTF-8 and holds no U+E000 is stored unchanged.
_PATH_ESC = "\ue000"
_PATH_ENCODE = re.compile("[\ue000\udc80-\udcff]")
_PATH_DECODE = re.compile("\ue000([\ue000\ue180-\ue1ff])")
_SURROGATE = re.compile("[\ud800-\udfff]")


def path_to_db(path: str) -> str:
    """``path`` (possibly with surrogate-escaped bytes) as text SQLite can store; see :func:`path_from_db`."""
    return _PATH_ENCODE.sub(
        lambda m: _PATH_ESC + (_PATH_ESC if m.group() == _PATH_ESC else chr(ord(m.group()) + 0x500)), path
    )


def path_from_db(text: str) -> str:
    """The file-system path that :func:`path_to_db` stored (undecodable bytes back as surrogates)."""
    if _PATH_ESC not in text:
        return text
    return _PATH_DECODE.sub(lambda m: _PATH_ESC if m.group(1) == _PATH_ESC else chr(ord(m.group(1)) - 0x500), text)


def text_to_db(text: str) -> str:
    """Document text (titles come from file names) with any lone surrogate written as ``\\xNN``."""
    if not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}" if m.group() >= "\udc80" else "\ufffd", text)
