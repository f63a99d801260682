"""rag's logger: ``logging.getLogger("rag")`` and its children (``rag.serve``, ``rag.serve.access``), one
logfmt line a record on stderr, structured enough to grep and for a log shipper to parse::

    ts=2026-12-05T21:50:01.123Z level=info logger=rag.serve.access method=GET path=/search status=200 ms=12.4

stdout stays for answers and data. Nothing is configured until :func:`setup` runs (the CLI runs it): a library
user's own logging configuration is left alone. The level comes from ``RAG_LOG_LEVEL`` (default ``warning``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO, Any

ROOT = "rag"
LEVELS = ("debug", "info", "warning", "error")
_handler: logging.Handler | None = None  # the one handler setup() installs
_UNQUOTED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@%+,")


def get(name: str = "") -> logging.Logger:
    """``rag`` or ``rag.NAME``."""
    return logging.getLogger(f"{ROOT}.{name}" if name else ROOT)


def value(v: Any) -> str:
    """One logfmt value: bare when it is a plain token, else double-quoted with ``"`` and ``\\`` escaped and
    line breaks shown as ``\\n`` (a log line stays one line whatever a client sent)."""
    s = f"{v:.1f}" if isinstance(v, float) else str(v)
    if s and all(c in _UNQUOTED for c in s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg=...`` and the record's ``fields`` (``extra={"fields": {...}}``)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}"]
        msg = record.getMessage()
        if msg:
            parts.append(f"msg={value(msg)}")
        fields = getattr(record, "fields", None)  # set through `extra`, absent on records of other libraries
        if isinstance(fields, dict):
            parts += [f"{k}={value(v)}" for k, v in fields.items()]
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            parts.append(f"error={value(f'{type(exc).__name__}: {exc}')}")
        return " ".join(parts)


def setup(level: str | None = None, stream: IO[str] | None = None) -> logging.Logger:
    """Configure the ``rag`` logger once: a logfmt handler on ``stream`` (stderr), ``level`` or
    ``RAG_LOG_LEVEL`` (warning). Calling it again changes the level and stream, never adds a second handler."""
    name = (level or os.environ.get("RAG_LOG_LEVEL") or "warning").lower()
    if name not in LEVELS:
        name = "warning"
    global _handler
    log = get()
    log.setLevel(name.upper())
    log.propagate = False
    if _handler is not None:
        log.removeHandler(_handler)
    _handler = logging.StreamHandler(stream or sys.stderr)
    _handler.setFormatter(LogfmtFormatter())
    log.addHandler(_handler)
    return log
