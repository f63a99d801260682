"""The ``none`` backend: no generation; the answer quotes the best evidence with its passage numbers.

Fully offline, instant, and the last resort of a fallback chain. It quotes the evidence sentences the
answer pipeline ranked best (rag_cli/pipeline/evidence.py: the same quotes a generating backend's answer ends
with); given none, the sentence of each top passage sharing the most words with the question.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from ..config import Settings
from ..text import STOP_WORDS as _STOP
from ..text import WORD as _WORD
from ..text import quote_line
from .base import BaseBackend, Prompt, register

_SENT = re.compile(r"(?<=[.!?])\s+")


def _terms(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP}


class ExtractiveBackend(BaseBackend):
    name = "none"
    wants_evidence = False  # it quotes: a shorter prompt gains it nothing
    quotes = True  # its answer is the evidence quoted: nothing to add after it

    def __init__(self, max_passages: int = 3) -> None:
        self.max_passages = max_passages

    def context_tokens(self) -> int:
        return 1_000_000

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def answer(self, prompt: Prompt) -> str:
        if prompt.quotes:
            return "\n".join(quote_line(n, text) for n, text in prompt.quotes)
        q = _terms(prompt.question)
        parts = []
        for n, hit in enumerate(prompt.passages[: self.max_passages], start=1):
            sentences = [s.strip() for s in _SENT.split(" ".join(hit.text.split())) if s.strip()]
            if not sentences:
                continue
            best = max(sentences, key=lambda s: (len(q & _terms(s)), -abs(len(s) - 160)))
            parts.append(f'"{best}" [{n}]')
        return "\n".join(parts)

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        yield self.answer(prompt)


def _factory(settings: Settings, services: dict[str, Any]) -> ExtractiveBackend:
    return ExtractiveBackend()


register("none", _factory)
