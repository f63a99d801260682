"""Plain data that flows between the modules: documents, chunks, hits."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Block:
    """A structural piece of a document: a paragraph, a list, a code block, a page part.

    ``heading`` is the trail of headings above the block (outermost first).
    Lines are 1-based and inclusive; ``page`` is 1-based for paged formats.
    """

    text: str
    heading: tuple[str, ...] = ()
    start_line: int | None = None
    end_line: int | None = None
    page: int | None = None


@dataclass(slots=True)
class Document:
    """A loaded document: its path, title and blocks.

    ``doc_id`` distinguishes several documents that live in one file (BEIR ``.jsonl``).
    """

    path: str
    title: str
    blocks: list[Block]
    kind: str = "text"
    doc_id: str | None = None
    notes: list[str] = field(default_factory=list)  # what the loader dropped or changed, for the user


# what a ``page`` is in each paged format, for the location a citation shows (``deck.pptx#slide=4``)
PART_LABELS = {".pptx": "slide", ".xlsx": "sheet", ".epub": "chapter", ".ipynb": "cell", ".mbox": "message"}


def location_of(path: str, page: int | None, start_line: int | None) -> str:
    """``path#page=N`` (or the format's own part: slide, sheet, chapter, cell, message), ``path:LINE`` or ``path``."""
    if page is not None:
        dot = path.rfind(".")
        label = PART_LABELS.get(path[dot:].lower(), "page") if dot >= 0 else "page"
        return f"{path}#{label}={page}"
    if start_line is not None:
        return f"{path}:{start_line}"
    return path


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines, U+2028, U+0085, tabs) as one space: a title or
    heading from a document then cannot start a line of its own in a prompt or a Sources list."""
    return " ".join(text.split())


def _flat_labels(obj: Chunk | Hit) -> None:
    if not all(h.isprintable() for h in (obj.title, *obj.heading)):  # cheap for the usual clean labels
        obj.title = one_line(obj.title)
        obj.heading = tuple(one_line(h) for h in obj.heading)


@dataclass(slots=True)
class Chunk:
    """A unit of retrieval: text that fits the embedding model, with where it came from."""

    path: str
    text: str
    title: str = ""
    heading: tuple[str, ...] = ()
    start_line: int | None = None
    end_line: int | None = None
    page: int | None = None
    doc_id: str | None = None
    ordinal: int = 0

    def __post_init__(self) -> None:
        _flat_labels(self)

    def embedding_text(self) -> str:
        """What the embedder sees: the title and heading trail, then the text."""
        trail = " > ".join(x for x in (self.title, *self.heading) if x)
        return f"{trail}\n{self.text}" if trail else self.text

    @property
    def location(self) -> str:
        return location_of(self.path, self.page, self.start_line)


@dataclass(slots=True)
class Hit:
    """One retrieved passage, from any source. ``chunk_id`` is None for remote hits."""

    text: str
    score: float
    source: str
    path: str | None = None
    title: str = ""
    url: str | None = None
    chunk_id: int | None = None
    heading: tuple[str, ...] = ()
    start_line: int | None = None
    end_line: int | None = None
    page: int | None = None
    doc_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _flat_labels(self)  # an index written before titles were flattened, a remote source

    @property
    def key(self) -> str:
        """Identity used to merge duplicates across sources."""
        if self.chunk_id is not None and self.path is not None:
            return f"chunk:{self.path}:{self.chunk_id}"
        if self.url:
            return f"url:{self.url}"
        if self.path:
            return f"path:{self.path}:{self.start_line}:{self.page}:{hash(self.text)}"
        return f"text:{hash(self.text)}"

    @property
    def location(self) -> str:
        if self.url:
            return self.url
        return location_of(self.path or "", self.page, self.start_line)

    def to_dict(self) -> dict[str, Any]:
        # built by hand: dataclasses.asdict deep-copies recursively, a measurable cost per served hit
        d = {f: getattr(self, f) for f in _HIT_FIELDS}
        d["heading"] = list(self.heading)
        d.update(copy.deepcopy(self.extra) if self.extra else {})
        return d

    @classmethod
    def from_dict(cls, item: dict[str, Any], *, source: str | None = None, keep_extra: bool = True) -> Hit:
        """A hit from its :meth:`to_dict` form as another ``rag serve`` sent it: wrongly typed fields are
        dropped; ``source`` replaces the sender's; unknown keys go to ``extra`` if ``keep_extra``."""

        def typed(name: str, kind: type) -> Any:
            value = item.get(name)
            return value if isinstance(value, kind) else None

        try:
            score = float(item.get("score") or 0.0)
        except (TypeError, ValueError):
            score = 0.0
        heading = item.get("heading")
        extra = (
            {k: v for k, v in item.items() if k not in _HIT_FIELDS and k not in ("rank", "location")}
            if keep_extra
            else {}
        )
        return cls(
            text=str(item.get("text") or ""),
            score=score,
            source=source if source is not None else str(item.get("source") or ""),
            path=typed("path", str),
            title=str(item.get("title") or ""),
            url=typed("url", str),
            chunk_id=typed("chunk_id", int),
            heading=tuple(str(h) for h in heading) if isinstance(heading, list) else (),
            start_line=typed("start_line", int),
            end_line=typed("end_line", int),
            page=typed("page", int),
            doc_id=typed("doc_id", str),
            extra=extra,
        )


_HIT_FIELDS = tuple(f.name for f in fields(Hit) if f.name != "extra")


@dataclass(slots=True)
class Degradation:
    """A source that did not contribute, and why."""

    source: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason}
