"""Shared resilience for every part that calls something that may fail: jittered backoff for retries, the
``Retry-After`` header read, a per-source circuit breaker, and URL redaction for messages (a URL in an error
may carry a password or the user's query). Below retrieval, generation and storage, which all use it."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://([^\s/?#'\"<>]*)[^\s'\"<>]*")


def redact_urls(text: str) -> str:
    """``text`` with every URL cut to its scheme and host (no user:password, path or query, where
    ``${ENV}`` secrets and the user's query go): ``https://kb.example/…``."""

    def cut(m: re.Match[str]) -> str:
        host = m.group(2).rsplit("@", 1)[-1]
        return f"{m.group(1)}://{host}/…" if m.group(0) != f"{m.group(1)}://{host}" else m.group(0)

    return _URL.sub(cut, text)


def backoff(attempt: int, base: float = 0.1, cap: float = 2.0) -> float:
    """Full jitter: a random wait in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header (seconds or a date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class CircuitBreaker:
    """A per-source circuit breaker: open after ``failures`` in a row, one trial call after ``cooldown``."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(self, failures: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = max(1, failures)
        self.cooldown = cooldown
        self.clock = clock
        self.consecutive = 0
        self.opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return self.CLOSED
        if self.clock() - self.opened_at >= self.cooldown:
            return self.HALF_OPEN
        return self.OPEN

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one trial at a time."""
        state = self.state
        if state == self.CLOSED:
            return True
        if state == self.HALF_OPEN and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self._trial = False

    def failure(self) -> None:
        self.consecutive += 1
        if self._trial or self.consecutive >= self.threshold:
            self.opened_at = self.clock()
        self._trial = False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self.opened_at))
