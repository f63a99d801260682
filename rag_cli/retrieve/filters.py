"""Filters that narrow a search to part of an index: path globs, file types, modification time.

A :class:`Filter` is applied inside the local retrieval, not after it: the index turns it into the
set of chunk ids it allows, FAISS searches only those (an id selector) and BM25 scores only those,
so ``k`` results come back whenever ``k`` chunks match. ``rag search``/``ask``/``chat`` take it as
``--path GLOB`` (repeatable; ``!GLOB`` excludes), ``--type md,pdf`` and ``--since 2026-01-01`` or
``--since 7d``; ``rag serve`` as the ``path``, ``type`` and ``since`` request fields; the MCP
``search`` tool as arguments. Remote sources are not filtered (they search their own documents).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Filter:
    """``paths``: globs on the file path (a glob matches the whole path or any trailing part of it, so
    ``*.md``, ``docs/*`` and ``/abs/docs/**`` all work); ``!GLOB`` excludes. A file must match one
    including glob (if any) and no excluding one. ``types``: extensions without the dot. ``since``:
    the file's modification time is at or after this epoch second."""

    paths: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    since: float | None = None

    def __bool__(self) -> bool:
        return bool(self.paths or self.types or self.since is not None)

    def allows(self, path: str, mtime: float | None = None) -> bool:
        if self.types:
            ext = os.path.splitext(path)[1].lower().lstrip(".")
            if ext not in self.types:
                return False
        if self.since is not None and (mtime is None or mtime < self.since):
            return False
        include, exclude = _compiled(self.paths, _cwd_for(self.paths))
        if include is not None and not include.match(path):
            return False
        return exclude is None or not exclude.match(path)

    def to_dict(self) -> dict[str, Any]:
        """The request fields of ``rag serve`` (and the MCP tool) that carry it."""
        out: dict[str, Any] = {}
        if self.paths:
            out["path"] = list(self.paths)
        if self.types:
            out["type"] = ",".join(self.types)
        if self.since is not None:
            out["since"] = self.since
        return out

    def describe(self) -> str:
        parts = [f"path {' '.join(self.paths)}"] if self.paths else []
        parts += [f"type {','.join(self.types)}"] if self.types else []
        if self.since is not None:
            parts.append("since " + dt.datetime.fromtimestamp(self.since, dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
        return "; ".join(parts) or "none"


MAX_GLOBS = 32
MAX_GLOB_CHARS = 512
MAX_WILDCARDS = 16  # "*" and "?" in one glob: fnmatch's patterns backtrack over each


def _relative(glob: str) -> bool:
    return glob.lstrip("!").startswith(("./", "../"))


def _cwd_for(paths: tuple[str, ...]) -> str:
    """The working directory when a glob is relative to it (part of the compiled filter's cache key)."""
    return os.getcwd() if any(_relative(g) for g in paths) else ""


@functools.lru_cache(maxsize=256)
def _compiled(paths: tuple[str, ...], cwd: str) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """One regular expression for the including globs and one for the excluding ones (None: none), each
    matching a path whole or any trailing part of it after a ``/``: compiled once per filter, not per path."""

    def bare(glob: str) -> str:  # fnmatch's "(?s:BODY)\Z" -> BODY
        glob = os.path.normpath(os.path.join(cwd, glob)) if _relative(glob) else glob
        return fnmatch.translate(glob).removesuffix("\\Z").removeprefix("(?s:")[:-1]

    def one(globs: list[str]) -> re.Pattern[str] | None:
        if not globs:
            return None
        alts = "|".join(f"(?:{bare(g)})" for g in globs)
        return re.compile(f"(?s:(?:.*/)?(?:{alts}))\\Z")

    return one([g for g in paths if not g.startswith("!")]), one([g[1:] for g in paths if g.startswith("!")])


def glob_matches(path: str, glob: str) -> bool:
    """``glob`` matches ``path`` whole or any trailing part of it (``*.md``, ``guides/*.pdf``); a glob
    relative to the working directory (``./docs/*``) is made absolute first."""
    include, _ = _compiled((glob,), _cwd_for((glob,)))
    return include is not None and include.match(path) is not None


def check_globs(globs: tuple[str, ...]) -> None:
    """A UsageError for globs past what a search may ask of every file (a 20,000-star glob held the pool
    and the source's deadline for seconds a query)."""
    if len(globs) > MAX_GLOBS:
        raise UsageError(f"at most {MAX_GLOBS} path globs in one search (got {len(globs)})")
    for g in globs:
        if len(g) > MAX_GLOB_CHARS:
            raise UsageError(f"a path glob is at most {MAX_GLOB_CHARS} characters (got {len(g)})")
        if sum(g.count(c) for c in "*?") > MAX_WILDCARDS:
            raise UsageError(f"a path glob holds at most {MAX_WILDCARDS} wildcards (* and ?)")


def parse_since(value: str | float | None, now: float | None = None) -> float | None:
    """``2026-01-01`` (UTC midnight), ``2026-01-01T12:00``, ``7d``/``12h``/``30m``/``2w`` ago, or epoch
    seconds → epoch seconds; None for none. A moment no calendar date can show (year 10000, an age of
    10^20 days) is a UsageError."""
    if value is None or value == "":
        return None
    when = _since(value, now)
    try:
        dt.datetime.fromtimestamp(when, dt.UTC)
    except (OverflowError, ValueError, OSError):
        raise UsageError(f"--since {str(value)[:40]!r} is outside the calendar (years 1 to 9999)") from None
    return when


def _since(value: str | float, now: float | None) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    m = _AGE.match(text.lower())
    if m:
        return (now if now is not None else time.time()) - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a date (2026-01-01), a time (2026-01-01T12:00) or an age (7d, 12h)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def parse_types(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    out = tuple(dict.fromkeys(t.strip().lower().lstrip(".") for t in items if isinstance(t, str) and t.strip()))
    return out


def make_filter(paths: list[str] | tuple[str, ...] | str | None = None, types: Any = None, since: Any = None) -> Filter:
    """A checked :class:`Filter` from CLI options or request fields (UsageError for bad values)."""
    if isinstance(paths, str):
        paths = [paths]
    globs = tuple(p.strip() for p in paths or [] if isinstance(p, str) and p.strip() not in ("", "!"))
    if paths and not all(isinstance(p, str) for p in paths):
        raise UsageError("path must be a glob or a list of globs")
    check_globs(globs)
    return Filter(paths=globs, types=parse_types(types), since=parse_since(since))
