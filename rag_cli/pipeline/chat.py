"""Chat state: history, follow-up condensation, and slash commands (the REPL itself is in cli/chat.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..retrieve.fanout import MODES

_FOLLOW = re.compile(
    r"^(and|also|but|so|then|what about|how about|why|how come|same for|more on|tell me more|explain)\b|"
    r"\b(it|its|it's|they|them|their|this|that|these|those|he|she|him|her|there|former|latter|one)\b",
    re.IGNORECASE,
)

HELP = """Commands:
  /sources     show the sources of the last answer
  /k N         passages per answer (now {k})
  /mode M      dense | bm25 | hybrid (now {mode})
  /llm NAME    local | openai | none (now {llm})
  /filter ...  narrow to part of the index: /filter path 'docs/*.md' type md,pdf since 7d
               (repeat path; '!GLOB' excludes); /filter off; /filter shows it (now {filter})
  /reset       forget the conversation
  /help        this help
  /exit        leave (Ctrl-D works too)"""


def is_follow_up(question: str) -> bool:
    return bool(_FOLLOW.search(question)) or len(question.split()) <= 3


def follow_on(previous: str | None, question: str) -> str:
    """The retrieval query for ``question`` after the standalone query ``previous`` (None: first turn).

    A follow-up ("what about its default?", "and BM25?") leans on the last turn; joining the
    two keeps the topic for retrieval while the LLM still sees the question as asked.
    """
    if not previous or not is_follow_up(question):
        return question
    return f"{previous} {question}"


def condense(questions: list[str]) -> str:
    """The retrieval query for the last of a conversation's ``questions`` (earliest first)."""
    query: str | None = None
    for q in questions:
        query = follow_on(query, q)
    return query or ""


@dataclass
class ChatState:
    k: int
    mode: str
    llm: str
    turns: list[tuple[str, str, str]] = field(default_factory=list)  # (question, retrieval query, answer)
    last: Any = None
    filter: Any = None  # a retrieve.filters.Filter, or None for the whole index

    def standalone(self, question: str) -> str:
        """The retrieval query for ``question``: a follow-up is joined with the previous standalone query."""
        return follow_on(self.turns[-1][1] if self.turns else None, question)

    def command(self, line: str) -> tuple[str, bool]:
        """Run a slash command; returns (message, keep_going)."""
        parts = line.strip().split()
        cmd, args = parts[0].lower(), parts[1:]
        if cmd in ("/exit", "/quit"):
            return "", False
        if cmd == "/help":
            return HELP.format(k=self.k, mode=self.mode, llm=self.llm, filter=self._filter_text()), True
        if cmd == "/filter":
            return self._set_filter(line.strip()[len(parts[0]) :].strip()), True
        if cmd == "/reset":
            self.turns.clear()
            self.last = None
            return "conversation reset", True
        if cmd == "/k":
            if len(args) != 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= 50:
                return "usage: /k N (1-50)", True
            self.k = int(args[0])
            return f"k = {self.k}", True
        if cmd == "/mode":
            if len(args) != 1 or args[0] not in MODES:
                return f"usage: /mode {' | '.join(MODES)}", True
            self.mode = args[0]
            return f"mode = {self.mode}", True
        if cmd == "/llm":
            from ..llm.base import names

            if len(args) != 1 or args[0] not in names():
                return f"usage: /llm {' | '.join(names())}", True
            self.llm = args[0]
            return f"llm = {self.llm}", True
        if cmd == "/sources":
            if self.last is None:
                return "no answer yet", True
            from ..text import rel

            cited = set(self.last.citations)
            lines = [
                f"[{s['n']}]{'*' if s['n'] in cited else ' '} {s['url'] or rel(s['location'])} — {s['title']}".rstrip(
                    " —"
                )
                for s in self.last.source_dicts()
            ]
            if cited:
                lines.append("(* cited in the answer)")
            return "\n".join(lines) or "no sources", True
        return f"unknown command {cmd} (try /help)", True

    def _filter_text(self) -> str:
        return self.filter.describe() if self.filter else "none"

    def _set_filter(self, rest: str) -> str:
        """``/filter path GLOB ... type md,pdf since 7d``, ``/filter off``, or ``/filter`` to show it."""
        import shlex

        from ..errors import UsageError
        from ..retrieve.filters import make_filter

        if not rest:
            return f"filter: {self._filter_text()}"
        if rest.lower() in ("off", "none", "clear"):
            self.filter = None
            return "filter: none (the whole index)"
        try:
            words = shlex.split(rest)
        except ValueError as exc:
            return f"usage: /filter path GLOB type md,pdf since 7d ({exc})"
        paths: list[str] = []
        types: str | None = None
        since: str | None = None
        it = iter(words)
        for key in it:
            value = next(it, None)
            if value is None or key not in ("path", "type", "since"):
                return "usage: /filter path GLOB [path GLOB ...] type md,pdf since 7d | /filter off"
            if key == "path":
                paths.append(value)
            elif key == "type":
                types = value
            else:
                since = value
        try:
            self.filter = make_filter(paths, types, since) or None
        except UsageError as exc:
            return f"filter not changed: {exc.message}"
        return f"filter: {self._filter_text()}"
