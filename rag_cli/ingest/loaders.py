"""Loaders: bytes of a file in, :class:`Document` objects out.

One function per format, registered by file extension in ``LOADERS``. A loader
raises :class:`SkipFile` with a short reason for input it cannot use (binary,
undecodable, empty, malformed); the pipeline reports it and moves on.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

from ..types import Block, Document
from .budget import check
from .encoding import EMPTY
from .encoding import SkipFile as SkipFile  # re-exported: what loaders raise
from .encoding import decode_text as decode_text

Loader = Callable[[str, bytes], list[Document]]

CODE_EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".jsx": "javascript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".scala": "scala",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".sql": "sql",
    ".r": "r",
    ".lua": "lua",
    ".pl": "perl",
    ".hs": "haskell",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".clj": "clojure",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".ini": "ini",
    ".cfg": "ini",
}


def require_text(blocks: list[Block], headings: list[tuple[int | None, str]] | None = None) -> list[Block]:
    """The blocks with text; a file of headings alone (``# Release checklist``) is its headings, one
    block (``headings``: line and text of each), so its words stay searchable. SkipFile when neither."""
    kept = [b for b in blocks if b.text.strip()]
    if not kept:
        names = [(line, name.strip()) for line, name in headings or [] if name.strip()]
        if names:
            return [Block("\n".join(n for _, n in names), (), names[0][0], names[-1][0])]
        raise SkipFile(EMPTY)
    return kept


def _paragraphs(lines: list[str], first_line: int, heading: tuple[str, ...], page: int | None = None) -> list[Block]:
    """Split ``lines`` at blank lines into blocks; ``first_line`` is the 1-based number of lines[0]."""
    out: list[Block] = []
    start: int | None = None
    buf: list[str] = []
    for i, line in enumerate(lines):
        if not i & 255:
            check()
        if line.strip():
            if start is None:
                start = i
            buf.append(line.rstrip())
        elif buf:
            out.append(Block("\n".join(buf), heading, first_line + start, first_line + i - 1, page))  # type: ignore[operator]
            buf, start = [], None
    if buf and start is not None:
        out.append(Block("\n".join(buf), heading, first_line + start, first_line + len(lines) - 1, page))
    return out


def stem_title(path: str) -> str:
    return Path(path).stem.replace("_", " ").replace("-", " ").strip()


_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def load_markdown(path: str, data: bytes) -> list[Document]:
    notes: list[str] = []
    md = _Markdown(decode_text(data, notes).split("\n"))
    md.read()
    return [
        Document(path, md.title or stem_title(path), require_text(md.blocks, md.headings), kind="markdown", notes=notes)
    ]


class _Markdown:
    """Markdown read into blocks under their heading trail: paragraphs, fenced code whole, ATX and setext
    headings; YAML front matter skipped."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.i = self._after_front_matter()
        self.trail: list[tuple[int, str]] = []
        self.blocks: list[Block] = []
        self.para: list[str] = []
        self.para_start = 0
        self.title = ""
        self.headings: list[tuple[int | None, str]] = []

    def _after_front_matter(self) -> int:
        if self.lines and self.lines[0].strip() == "---":
            for j in range(1, min(len(self.lines), 200)):
                if self.lines[j].strip() in ("---", "..."):
                    return j + 1
        return 0

    def heading(self) -> tuple[str, ...]:
        return tuple(t for _, t in self.trail)

    def flush(self, end: int) -> None:
        if self.para:
            self.blocks.append(Block("\n".join(self.para), self.heading(), self.para_start + 1, end))
            self.para = []

    def set_heading(self, level: int, name: str) -> None:
        while self.trail and self.trail[-1][0] >= level:
            self.trail.pop()
        self.trail.append((level, name))
        self.headings.append((self.i + 1, name))
        if level == 1 and not self.title:
            self.title = name

    def read(self) -> None:
        lines = self.lines
        while self.i < len(lines):
            if not self.i & 255:
                check()
            line = lines[self.i]
            if (fence := _FENCE.match(line)) is not None:
                self.fenced(fence.group(1))
            elif (m := _ATX.match(line)) is not None:
                self.flush(self.i)
                self.set_heading(len(m.group(1)), m.group(2).strip())
            elif not self.setext(line):
                self.text(line)
            self.i += 1
        self.flush(len(lines))

    def fenced(self, marker: str) -> None:
        """A fenced code block, kept whole (the fence lines included); ``i`` ends on its closing fence."""
        self.flush(self.i)
        start = self.i
        self.i += 1
        while self.i < len(self.lines) and not self.lines[self.i].strip().startswith(marker):
            self.i += 1
        body = "\n".join(self.lines[start : self.i + 1])
        self.blocks.append(Block(body, self.heading(), start + 1, min(self.i + 1, len(self.lines))))

    def setext(self, line: str) -> bool:
        """A heading underlined with = or - (``i`` moves onto the underline), if this line starts one."""
        nxt = self.lines[self.i + 1] if self.i + 1 < len(self.lines) else ""
        if not line.strip() or self.para or not re.fullmatch(r"\s*(=+|-+)\s*", nxt) or len(nxt.strip()) < 2:
            return False
        self.set_heading(1 if nxt.strip()[0] == "=" else 2, line.strip())
        self.i += 1
        return True

    def text(self, line: str) -> None:
        if line.strip():
            if not self.para:
                self.para_start = self.i
            self.para.append(line.rstrip())
        else:
            self.flush(self.i)


_RST_ADORN = re.compile(r"""^([=\-~^"'`#*+:.!$%&,/;<>?@\\_|])\1{2,}\s*$""")


def load_rst(path: str, data: bytes) -> list[Document]:
    notes: list[str] = []
    text = decode_text(data, notes)
    lines = text.split("\n")
    styles: list[tuple[str, bool]] = []
    headings: list[tuple[int | None, str]] = []
    trail: list[tuple[int, str]] = []
    blocks: list[Block] = []
    para: list[str] = []
    para_start = 0
    title = ""

    def flush(end: int) -> None:
        nonlocal para
        if para:
            blocks.append(Block("\n".join(para), tuple(t for _, t in trail), para_start + 1, end))
            para = []

    i = 0
    while i < len(lines):
        if not i & 255:
            check()
        line = lines[i]
        over = _RST_ADORN.match(line)
        # overline + title + underline
        if over and i + 2 < len(lines) and lines[i + 1].strip() and _RST_ADORN.match(lines[i + 2]):
            name, style = lines[i + 1].strip(), (line.strip()[0], True)
            step = 3
        elif (
            line.strip()
            and not para
            and i + 1 < len(lines)
            and _RST_ADORN.match(lines[i + 1])
            and len(lines[i + 1].rstrip()) >= len(line.rstrip())
        ):
            name, style, step = line.strip(), (lines[i + 1].strip()[0], False), 2
        else:
            name = ""
            step = 0
        if name:
            flush(i)
            if style not in styles:
                styles.append(style)
            level = styles.index(style) + 1
            while trail and trail[-1][0] >= level:
                trail.pop()
            trail.append((level, name))
            headings.append((i + 1 + (step == 3), name))
            if not title:
                title = name
            i += step
            continue
        if line.strip().startswith("..") and not line.strip().startswith(".. code") and "::" not in line:
            # comments and targets carry no prose
            flush(i)
            i += 1
            continue
        if line.strip():
            if not para:
                para_start = i
            para.append(line.rstrip())
        else:
            flush(i)
        i += 1
    flush(len(lines))
    return [Document(path, title or stem_title(path), require_text(blocks, headings), kind="rst", notes=notes)]


def load_text(path: str, data: bytes) -> list[Document]:
    notes: list[str] = []
    text = decode_text(data, notes)
    lines = text.split("\n")
    blocks = _paragraphs(lines, 1, ())
    return [Document(path, _text_title(lines) or stem_title(path), require_text(blocks), kind="text", notes=notes)]


# a first line that is a header field (``Date: Fri, 19 Dec 2008``, ``From: ...``), a rule, or that runs on
# (ends in a comma or colon) is not a title: the file name is a better one
_NOT_TITLE = re.compile(r"^(?:[A-Za-z][\w-]{0,30}:\s|[-=_*#~+.\s]+$)|[;,:]$")


def _text_title(lines: list[str]) -> str:
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if not first or len(first) > 120 or _NOT_TITLE.search(first):
        return ""
    return first


_DEF = re.compile(
    r"^(?:@|(?:async\s+)?def\s|class\s|function\s|func\s|fn\s|pub\s|impl\s|struct\s|enum\s|trait\s|"
    r"interface\s|type\s|export\s|public\s|private\s|protected\s|static\s|module\s|package\s|const\s|let\s|var\s)"
)
_NAME = re.compile(r"(?:def|class|function|func|fn|struct|enum|trait|interface|type|impl|module)\s+([A-Za-z_][\w.]*)")


def load_code(path: str, data: bytes) -> list[Document]:
    """Source code: split at top-level definitions; each block's heading names the definition."""
    notes: list[str] = []
    text = decode_text(data, notes)
    lines = text.split("\n")
    blocks: list[Block] = []
    start = 0
    in_decorator = False

    def emit(s: int, e: int) -> None:
        body = "\n".join(lines[s:e]).strip("\n")
        if not body.strip():
            return
        m = _NAME.search(body)
        head = (m.group(0),) if m else ()
        # keep paragraphs inside long top-level blocks apart so the chunker can split them
        for b in _paragraphs(lines[s:e], s + 1, head):
            blocks.append(b)

    for i, line in enumerate(lines):
        if not i & 255:
            check()
        if i > start and line and not line[0].isspace() and _DEF.match(line) and not in_decorator:
            emit(start, i)
            start = i
        in_decorator = line.startswith("@")
    emit(start, len(lines))
    lang = CODE_EXTENSIONS.get(Path(path).suffix.lower(), "code")
    return [Document(path, Path(path).name, require_text(blocks), kind=f"code:{lang}", notes=notes)]


def load_pdf(path: str, data: bytes) -> list[Document]:
    try:
        from pypdf import PdfReader
    except ImportError:  # pragma: no cover - pypdf is a dependency
        raise SkipFile("pdf support needs pypdf") from None
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise SkipFile("malformed PDF: no %PDF header")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise SkipFile("encrypted PDF")
        meta_title = ""
        try:
            if reader.metadata and reader.metadata.title:
                meta_title = str(reader.metadata.title).strip()
        except Exception:
            meta_title = ""
        blocks: list[Block] = []
        for pageno, page in enumerate(reader.pages, start=1):
            check()
            text = page.extract_text() or ""
            text = text.replace("\x00", "")
            lines = text.replace("\r", "\n").split("\n")
            blocks.extend(_paragraphs(lines, 1, (), page=pageno))
    except SkipFile:
        raise
    except Exception as exc:  # pypdf on hostile input: NotImplementedError (unknown /Encrypt handler or
        # filter), its DeprecationError, KeyError, RecursionError ...: every one means this PDF cannot be read
        kind = "unsupported" if isinstance(exc, NotImplementedError) else "malformed"
        raise SkipFile(f"{kind} PDF: {type(exc).__name__}: {str(exc)[:80]}") from None
    if not blocks:
        raise SkipFile("empty: PDF has no extractable text")
    title = meta_title or next((b.text.split("\n")[0] for b in blocks), "")[:120]
    return [Document(path, title or stem_title(path), blocks, kind="pdf")]


LOADERS: dict[str, Loader] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".mdx": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".rst": load_rst,
    ".pdf": load_pdf,
    **{ext: load_code for ext in CODE_EXTENSIONS},
}


def register_loader(extension: str, loader: Loader) -> None:
    """Register ``loader`` for files ending in ``extension`` (with the dot)."""
    LOADERS[extension.lower()] = loader


def loader_for(path: str | Path) -> Loader | None:
    return LOADERS.get(Path(path).suffix.lower())


def load_bytes(path: str, data: bytes) -> list[Document]:
    """Load ``data`` read from ``path`` with the loader for its extension (text if none)."""
    loader = loader_for(path) or load_text
    return loader(path, data)


# formats in modules of their own register themselves (imported last: they use this module's helpers)
from . import html_pages, office, records  # noqa: E402, F401
