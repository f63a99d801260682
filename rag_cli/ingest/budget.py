"""A per-file time budget for loading and chunking.

Parsers of hostile input can take very long (a PDF with a pathological content
stream, HTML nested a million deep). Two layers keep one file from stalling an index:

* cooperative: the loaders and the chunker call :func:`check` in their loops; past the
  deadline it raises :class:`SkipFile`, the file is skipped and reported, and the worker
  thread is free again at once;
* hard: the pipeline stops waiting for a file after the budget plus a grace period and
  skips it even if a parser is stuck inside one call it cannot interrupt (that pool
  thread finishes in the background; a warning says so).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

_local = threading.local()


@contextlib.contextmanager
def limit(seconds: float | None) -> Iterator[None]:
    """Give the loads and chunking inside this block (this thread) ``seconds`` in all (None or <= 0: no limit)."""
    prev = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + seconds if seconds and seconds > 0 else None
    _local.seconds = seconds
    try:
        yield
    finally:
        _local.deadline = prev


def check() -> None:
    """Raise SkipFile when this thread's budget is spent (cheap: call it in loops)."""
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        from .loaders import SkipFile

        raise SkipFile(f"took longer than the {_local.seconds:g} s time budget per file (index.file_timeout)")
