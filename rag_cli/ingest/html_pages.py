"""HTML pages: the text of the document, without scripts, styles and page chrome (a site's footer, sidebar,
navigation), in blocks under their headings. Registered for ``.html``, ``.htm`` and ``.xhtml``."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ..types import Block, Document
from .budget import check
from .encoding import SkipFile, decode_text
from .loaders import register_loader, require_text, stem_title

# page chrome that is not the document: a site footer ("Last updated ...", copyright), a sidebar, a
# menu. Matched on the element's id, class tokens or ARIA role; <footer> and <nav> are chrome by tag.
_CHROME = frozenset(
    {
        "footer",
        "footer-text",
        "site-footer",
        "page-footer",
        "sidebar",
        "navbar",
        "menu",
        "breadcrumbs",
        "contentinfo",
        "navigation",
        "banner",
    }
)


def _is_chrome(attrs: list[tuple[str, str | None]]) -> bool:
    for key, value in attrs:
        if key in ("id", "class", "role") and value and any(t.lower() in _CHROME for t in value.split()):
            return True
    return False


class _HTMLText(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "nav", "footer"})
    CHROME_TAGS = frozenset({"div", "section", "aside", "header", "ul"})
    BLOCK = frozenset(
        {
            "p",
            "div",
            "li",
            "ul",
            "ol",
            "pre",
            "section",
            "article",
            "main",
            "header",
            "footer",
            "nav",
            "aside",
            "blockquote",
            "table",
            "tr",
            "td",
            "th",
            "dd",
            "dt",
            "dl",
            "br",
            "hr",
            "figure",
            "figcaption",
            "form",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "details",
            "summary",
            "body",
            "html",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skip_depth = 0
        self.skip_stack: list[str] = []
        self.in_title = False
        self.title = ""
        self.buf: list[str] = []
        self.buf_line = 0
        self.blocks: list[Block] = []
        self.trail: list[tuple[int, str]] = []
        self.headings: list[tuple[int | None, str]] = []
        self.heading_level = 0
        self.heading_buf: list[str] = []
        self.pre = 0

    def flush(self) -> None:
        text = "".join(self.buf)
        if not self.pre:
            text = re.sub(r"[ \t\r\f\v]+", " ", text)
            text = "\n".join(ln.strip() for ln in text.split("\n"))
            text = re.sub(r"\n{2,}", "\n", text).strip()
        if text.strip():
            line = self.getpos()[0]
            self.blocks.append(Block(text, tuple(t for _, t in self.trail), self.buf_line or line, line))
        self.buf = []
        self.buf_line = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP or (not self.skip_stack and tag in self.CHROME_TAGS and _is_chrome(attrs)):
            self.skip_stack.append(tag)
            return
        if tag in self.skip_stack:  # nested inside a skipped element of its kind: its end tag must not end the skip
            self.skip_stack.append(tag)
            return
        if tag == "title":
            self.in_title = True
            return
        if self.skip_stack:
            return
        if tag in self.BLOCK:
            self.flush()
        if tag == "pre":
            self.pre += 1
        if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.heading_level = int(tag[1])
            self.heading_buf = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
            return
        if self.skip_stack:
            if tag in self.skip_stack:
                while self.skip_stack and self.skip_stack.pop() != tag:
                    pass
            return
        if tag == "pre" and self.pre:
            self.flush()
            self.pre -= 1
            return
        if self.heading_level and tag == f"h{self.heading_level}":
            # Sphinx and MkDocs end each heading with a permalink mark "¶": not part of its name
            name = re.sub(r"\s+", " ", "".join(self.heading_buf)).strip().rstrip("¶").strip()
            level = self.heading_level
            self.heading_level = 0
            self.buf = []
            if name:
                while self.trail and self.trail[-1][0] >= level:
                    self.trail.pop()
                self.trail.append((level, name))
                self.headings.append((self.getpos()[0], name))
            return
        if tag in self.BLOCK:
            self.flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr") and not self.skip_stack:
            self.buf.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
            return
        if self.skip_stack:
            return
        if self.heading_level:
            self.heading_buf.append(data)
            return
        if not self.buf and data.strip():
            self.buf_line = self.getpos()[0]
        self.buf.append(data)


def load_html(path: str, data: bytes) -> list[Document]:
    notes: list[str] = []
    text = decode_text(data, notes)
    parser = _HTMLText()
    try:
        for start in range(0, len(text), 65536):  # in slices, so the time budget is checked
            check()
            parser.feed(text[start : start + 65536])
        parser.close()
    except Exception as exc:  # html.parser is lenient; anything it raises means malformed beyond repair
        raise SkipFile(f"malformed HTML: {exc}") from None
    parser.flush()
    title = re.sub(r"\s+", " ", parser.title).strip()
    blocks = parser.blocks
    if not title and parser.trail:
        title = parser.trail[0][1]
    headings = parser.headings or ([(None, title)] if title else [])
    return [Document(path, title or stem_title(path), require_text(blocks, headings), kind="html", notes=notes)]


for _ext in (".html", ".htm", ".xhtml"):
    register_loader(_ext, load_html)
