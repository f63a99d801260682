"""A per-source circuit breaker.

closed -> (``failures`` consecutive failures) -> open -> (``cooldown`` seconds)
-> half-open: one trial call; success closes it, failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
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
