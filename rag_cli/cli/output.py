"""Where output goes and how it looks: stdout for answers and data, stderr for humans.

Colour and live rendering happen only when the stream is a terminal and
``NO_COLOR`` is unset. Tests swap the streams through :class:`Env`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ..text import clean as clean  # re-exported for the commands
from ..text import rel as rel

# JSON escapes C0 itself; these it would keep as they are (see text.clean for why each is unsafe)
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def json_text(obj: Any, **kw: Any) -> str:
    """``obj`` as JSON; C0 controls are escaped by JSON itself, DEL, C1, bidi overrides and lone
    surrogates are escaped here too (``\\u009b``), so the text is valid UTF-8 and inert on a terminal."""
    text = json.dumps(obj, ensure_ascii=False, default=str, **kw)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def text_arg(text: str) -> str:
    """A question or query from argv or stdin with undecodable bytes (kept as lone surrogates by
    Python) replaced by U+FFFD, so it embeds, searches and prints like any other text."""
    if not _SURROGATES.search(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode("utf-8", "replace").decode()


_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass
class Env:
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)

    def _tty(self, stream: IO[str]) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def read_stdin(self) -> str:
        """All of stdin as text; bytes that are not UTF-8 become U+FFFD instead of an exception."""
        buf = getattr(self.stdin, "buffer", None)
        if buf is not None:
            data: bytes = buf.read()
            return data.decode("utf-8", "replace")
        return text_arg(self.stdin.read())

    def read_stdin_bytes(self, limit: int) -> bytes:
        """At most ``limit`` bytes of stdin (a text stream without a buffer is encoded back)."""
        buf = getattr(self.stdin, "buffer", None)
        if buf is not None:
            got: bytes = buf.read(limit)
            return got
        return self.stdin.read(limit).encode("utf-8", "surrogateescape")[:limit]

    def stdin_lines(self) -> Iterator[str]:
        buf = getattr(self.stdin, "buffer", None)
        for line in buf if buf is not None else self.stdin:
            yield text_arg(line.decode("utf-8", "replace") if isinstance(line, bytes) else line).rstrip("\r\n")

    @property
    def stdout_tty(self) -> bool:
        return self._tty(self.stdout)

    @property
    def stderr_tty(self) -> bool:
        return self._tty(self.stderr)

    @property
    def stdin_tty(self) -> bool:
        return self._tty(self.stdin)

    @property
    def color(self) -> bool:
        return not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"

    def console(self, stream: str = "stdout") -> Any:
        """A Rich console on ``stream``; plain (no colour, no markup effects) off a TTY."""
        from rich.console import Console

        f = self.stdout if stream == "stdout" else self.stderr
        tty = self._tty(f)
        return Console(
            file=f,
            force_terminal=tty and self.color,
            no_color=not (tty and self.color),
            color_system="auto" if tty and self.color else None,
            highlight=False,
            soft_wrap=not tty,
        )

    def out(self, text: str = "", end: str = "\n") -> None:
        self.stdout.write(clean(text) + end)
        self.stdout.flush()

    def write(self, text: str) -> None:
        """Write streamed text (answer tokens) to stdout as it comes, cleaned."""
        self.stdout.write(clean(text))
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(clean(text) + "\n")
        self.stderr.flush()

    def warn(self, text: str) -> None:
        text = clean(text)
        if self.stderr_tty and self.color:
            self.stderr.write(f"\x1b[33mwarning:\x1b[0m {text}\n")
        else:
            self.stderr.write(f"warning: {text}\n")
        self.stderr.flush()

    def json(self, obj: Any) -> None:
        self.stdout.write(json_text(obj) + "\n")
        self.stdout.flush()


env = Env()


def set_env(new: Env) -> None:
    global env
    env = new


def get_env() -> Env:
    return env
