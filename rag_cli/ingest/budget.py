"""A per-file time budget for loading and chunking, that bounds hostile work and not a busy machine.

Parsers of hostile input can take very long (a PDF with a pathological content stream, HTML nested a
million deep). Two layers keep one file from stalling an index:

* cooperative: the loaders and the chunker call :func:`check` in their loops; once this thread has
  spent ``seconds`` of **CPU time** on one unit of work it raises :class:`SkipFile`, the file is
  skipped and reported, and the worker is free again at once. CPU time, not wall time: on a machine
  busy with other work (or with the embedder on the other cores) a thread that waits for a core
  spends none of its budget. A unit is a file, or one document of a multi-document file (a JSON
  Lines record, an mbox message, a document being chunked): the loop calls :func:`progress` after
  each, so a 5,000-record corpus is judged record by record, not as one pathological file;
* hard: the pipeline gives up on a job that has made no progress for twice the budget plus a second
  of wall time *since it started running on a pool thread* (a :class:`Heartbeat`: the time a file
  waits in the queue behind embedding does not count), for a parser stuck inside one call it cannot
  interrupt (that pool thread finishes in the background; a warning says so).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_local = threading.local()


class Heartbeat:
    """When a pool job last showed life: its start on a thread, then each :func:`progress` or
    :func:`check`. ``None`` while the job still waits in the pool's queue."""

    def __init__(self) -> None:
        self.beat: float | None = None

    def stalled(self, seconds: float) -> bool:
        beat = self.beat
        return beat is not None and time.monotonic() - beat > seconds


def beating(heartbeat: Heartbeat, fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` wrapped to start ``heartbeat`` when it starts running, and to feed it from this thread."""

    def run(*args: Any) -> T:
        prev = getattr(_local, "heartbeat", None)
        _local.heartbeat = heartbeat
        heartbeat.beat = time.monotonic()
        try:
            return fn(*args)
        finally:
            _local.heartbeat = prev

    return run


def _cpu() -> float:
    return time.thread_time()


@contextlib.contextmanager
def limit(seconds: float | None) -> Iterator[None]:
    """Give each unit of loading and chunking inside this block (this thread) ``seconds`` of CPU time
    (None or <= 0: no limit)."""
    prev = getattr(_local, "deadline", None), getattr(_local, "seconds", None)
    _local.seconds = seconds if seconds and seconds > 0 else None
    _local.deadline = _cpu() + _local.seconds if _local.seconds else None
    try:
        yield
    finally:
        _local.deadline, _local.seconds = prev


def progress() -> None:
    """One unit of work is done (a record, a message, a document chunked): the budget starts again."""
    seconds = getattr(_local, "seconds", None)
    if seconds:
        _local.deadline = _cpu() + seconds
    _beat()


def _beat() -> None:
    hb = getattr(_local, "heartbeat", None)
    if hb is not None:
        hb.beat = time.monotonic()


def check() -> None:
    """Raise SkipFile when this thread's budget for the current unit is spent (cheap: call it in loops)."""
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and _cpu() > deadline:
        from .loaders import SkipFile

        raise SkipFile(
            f"took more than its time budget of {_local.seconds:g} s of CPU per file or document (index.file_timeout)"
        )
    _beat()
