"""One file made ready for the embedder: stat, read, hash, load and chunk (blocking; runs on the pool).

:func:`prepare` answers one of: :class:`Prepared` (chunks to embed), :class:`Same` (unchanged since
the last run), :class:`Skip` (with the reason the user is shown), or :class:`Big` for a file that is
read in segments (:mod:`.segments`): :class:`SegmentedFile` then hands out one :class:`Prepared`
part at a time, so a 300 MB file never sits in memory whole.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from ..store.rows import FileState
from ..types import Chunk, Document
from . import budget
from .chunking import ChunkerConfig, chunk_document
from .encoding import EMPTY
from .loaders import LOADERS, SkipFile, load_bytes, load_text
from .segments import file_digest, iter_segments, load_segment, open_regular, segmentable, starts_with_bom
from .stages import NULL, StageClock
from .walk import Found

Counter = Callable[[Sequence[str]], list[int]]


@dataclass
class Prepared:
    found: Found
    size: int
    mtime_ns: int
    digest: str
    kind: str
    chunks: list[Chunk]
    notes: list[str] = field(default_factory=list)
    part: int = 0  # a file read in segments comes in parts 0, 1, ...; ``last`` marks its final one
    last: bool = True

    @property
    def nbytes(self) -> int:
        return sum(len(c.text) for c in self.chunks)


@dataclass
class Skip:
    found: Found
    reason: str
    partial: bool = False  # earlier parts of this file were handed on: the consumer must drop them


@dataclass
class Same:
    found: Found
    size: int
    mtime_ns: int


@dataclass
class Big:
    found: Found
    size: int
    mtime_ns: int


def prepare(
    found: Found,
    state: FileState | None,
    max_bytes: int,
    rebuild: bool,
    count: Counter,
    cfg: ChunkerConfig,
    budget_s: float = 0.0,
    clock: StageClock = NULL,
) -> Prepared | Skip | Same | Big:
    with budget.limit(budget_s):
        try:
            return _prepare_file(found, state, max_bytes, rebuild, count, cfg, clock)
        except SkipFile as exc:  # the time budget ran out in the chunker
            return Skip(found, exc.reason)


def _unreadable(found: Found, exc: OSError) -> Skip:
    if isinstance(exc, PermissionError):
        return Skip(found, "unreadable: permission denied")
    return Skip(found, f"unreadable: {exc.strerror or exc}")


def _prepare_file(
    found: Found,
    state: FileState | None,
    max_bytes: int,
    rebuild: bool,
    count: Counter,
    cfg: ChunkerConfig,
    clock: StageClock,
) -> Prepared | Skip | Same | Big:
    path = found.path
    t_read = time.perf_counter()
    try:
        # opened before anything is looked at: no link anywhere on the path (one swapped in since the walk
        # is refused), no blocking on a FIFO; what is checked is the file that is read
        with open_regular(path) as fh:
            st = os.fstat(fh.fileno())
            if st.st_size > max_bytes:
                return Skip(found, f"too large: {st.st_size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB limit")
            if st.st_size == 0:
                return Skip(found, EMPTY)
            if state and not rebuild and state.size == st.st_size and state.mtime_ns == st.st_mtime_ns:
                return Same(found, st.st_size, st.st_mtime_ns)
            if segmentable(path, st.st_size):
                return Big(found, st.st_size, st.st_mtime_ns)
            data = fh.read(max_bytes + 1)
    except SkipFile as exc:
        return Skip(found, exc.reason)
    except OSError as exc:
        return _unreadable(found, exc)
    finally:
        clock.add("read", time.perf_counter() - t_read)
    if len(data) > max_bytes:
        return Skip(found, "too large")
    with clock.timed("read"):
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if state and not rebuild and state.hash == digest:
        return Same(found, st.st_size, st.st_mtime_ns)
    return _load(found, st.st_size, st.st_mtime_ns, digest, data, count, cfg, clock)


def _load(
    found: Found,
    size: int,
    mtime_ns: int,
    digest: str,
    data: bytes,
    count: Counter,
    cfg: ChunkerConfig,
    clock: StageClock = NULL,
) -> Prepared | Skip:
    """Load and chunk a whole file's bytes; any loader failure is a Skip with its reason."""
    path = found.path
    try:
        with clock.timed("parse"):
            docs = load_bytes(str(path), data)
    except SkipFile as exc:
        return Skip(found, exc.reason)
    except RecursionError:
        return Skip(found, "malformed: nesting too deep")
    except Exception as exc:  # a loader's (or its library's) failure is this file's problem, not the run's
        return Skip(found, f"unreadable {path.suffix.lstrip('.') or 'file'}: {type(exc).__name__}: {str(exc)[:120]}")
    with clock.timed("chunk"):
        chunks = _chunks(docs, count, cfg, 0)
    if not chunks:
        return Skip(found, EMPTY)
    return Prepared(found, size, mtime_ns, digest, docs[0].kind, chunks, [n for d in docs for n in d.notes])


def _chunks(docs: list[Document], count: Counter, cfg: ChunkerConfig, first_ordinal: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for doc in docs:
        for ch in chunk_document(doc, count, cfg):
            ch.ordinal = first_ordinal + len(chunks)
            chunks.append(ch)
        budget.progress()  # a multi-document file is judged document by document
    return chunks


class SegmentedFile:
    """A :class:`Big` file read one segment at a time: :meth:`digest` first (unchanged files stop
    there), then :meth:`next_part` until it returns None. Every method blocks: call on the pool."""

    def __init__(self, big: Big, max_bytes: int, count: Counter, cfg: ChunkerConfig, clock: StageClock = NULL) -> None:
        self.big, self.max_bytes, self.count, self.cfg, self.clock = big, max_bytes, count, cfg, clock
        self.loader = LOADERS.get(big.found.path.suffix.lower(), load_text)
        self.fh: BinaryIO | None = None
        self.segments: Iterator[tuple[bytes, int]] | None = None
        self.title: str | None = None
        self.heading: tuple[str, ...] = ()
        self.ordinal = 0
        self.parts = 0
        self.kind = "text"
        self.hash = ""

    def digest(self) -> str:
        with self.clock.timed("read"):
            self.hash, n = file_digest(self.big.found.path, self.max_bytes)
        if n > self.max_bytes:
            raise SkipFile("too large")
        return self.hash

    def open(self) -> bool:
        """Open for reading; False when the file is UTF-16/32 (a newline byte may sit inside a
        character), which is then loaded whole."""
        self.fh = open_regular(self.big.found.path)
        if starts_with_bom(self.fh):
            return False
        self.segments = iter_segments(self.fh)
        return True

    def next_part(self, budget_s: float) -> tuple[list[Chunk], list[str]] | None:
        """The chunks and loader notes of the next segment with text, or None at the end."""
        assert self.segments is not None
        with budget.limit(budget_s):
            t = time.perf_counter()
            for data, first_line in self.segments:
                self.clock.add("read", time.perf_counter() - t)
                with self.clock.timed("parse"):
                    docs = load_segment(
                        self.loader, str(self.big.found.path), data, first_line, self.title, self.heading
                    )
                t = time.perf_counter()
                if not docs:
                    continue
                if self.title is None:
                    self.title, self.kind = docs[0].title, docs[0].kind
                last_blocks = docs[-1].blocks
                self.heading = last_blocks[-1].heading if last_blocks else self.heading
                with self.clock.timed("chunk"):
                    chunks = _chunks(docs, self.count, self.cfg, self.ordinal)
                t = time.perf_counter()
                self.ordinal += len(chunks)
                if chunks:
                    self.parts += 1
                    return chunks, [n for d in docs for n in d.notes]
        return None

    def whole(self) -> Prepared | Skip:
        """Load the file in one piece (the UTF-16/32 case)."""
        assert self.fh is not None
        self.fh.seek(0)
        data = self.fh.read(self.max_bytes + 1)
        return _load(
            self.big.found, self.big.size, self.big.mtime_ns, self.hash, data, self.count, self.cfg, self.clock
        )

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def segment_errors(exc: BaseException) -> str | None:
    """The skip reason for an exception out of a segment, or None to let it propagate."""
    if isinstance(exc, SkipFile):
        return exc.reason
    if isinstance(exc, RecursionError):
        return "malformed: nesting too deep"
    if isinstance(exc, OSError):
        return f"unreadable: {exc.strerror or exc}"
    if isinstance(exc, Exception):
        return f"unreadable: {type(exc).__name__}: {str(exc)[:120]}"
    return None
