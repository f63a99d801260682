"""Where output goes and how it looks: stdout for answers and data, stderr for humans.

Colour and live rendering happen only when the stream is a terminal and
``NO_COLOR`` is unset. Tests swap the streams through :class:`Env`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Any


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
        self.stdout.write(text + end)
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def warn(self, text: str) -> None:
        if self.stderr_tty and self.color:
            self.stderr.write(f"\x1b[33mwarning:\x1b[0m {text}\n")
        else:
            self.stderr.write(f"warning: {text}\n")
        self.stderr.flush()

    def json(self, obj: Any) -> None:
        self.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
        self.stdout.flush()


env = Env()


def set_env(new: Env) -> None:
    global env
    env = new


def get_env() -> Env:
    return env


def rel(path: str | None) -> str:
    """``path`` relative to the working directory when it lies below it."""
    if not path:
        return ""
    try:
        cwd = os.getcwd()
    except OSError:
        return path
    if path.startswith(cwd + os.sep):
        return path[len(cwd) + 1 :]
    return path
