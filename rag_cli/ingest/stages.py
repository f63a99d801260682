"""Where indexing time goes: seconds of work per stage (walk, read, parse, chunk, tokenize, embed, write).

Stages run on several pool threads at once and overlap (the next files are read while a group is
embedded), so the seconds are work, summed over threads, not wall time; ``share`` is each stage's part
of that work. Tokenizing happens inside chunking (the chunker counts tokens as it cuts): ``chunk`` is
reported without it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

ORDER = ("walk", "read", "parse", "chunk", "tokenize", "embed", "write")


class StageClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(ORDER, 0.0)
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t)

    def counting(self, count: Callable[[Sequence[str]], list[int]]) -> Callable[[Sequence[str]], list[int]]:
        """``count`` (the tokenizer's token counter) timed as ``tokenize``."""

        def timed_count(texts: Sequence[str]) -> list[int]:
            with self.timed("tokenize"):
                return count(texts)

        return timed_count

    def report(self) -> dict[str, dict[str, float]]:
        s = dict(self.seconds)
        s["chunk"] = max(0.0, s.get("chunk", 0.0) - s.get("tokenize", 0.0))
        total = sum(s.values()) or 1.0
        return {k: {"seconds": round(v, 3), "share": round(v / total, 3)} for k, v in s.items()}


NULL = StageClock()  # for callers that do not report stages


def timed_call(clock: StageClock, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with clock.timed(stage):
            return fn(*args, **kwargs)

    return call
