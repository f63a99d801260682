"""Generation slots: how many answers the local model writes at once, and how many may wait for one.

A request past the queue bound is refused at once (429 with ``Retry-After``, estimated from recent
answer times), never queued without bound. Each slot has a number, so a backend can keep one model
copy per slot (llama.cpp contexts are not safe to share between threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator

from .http import HttpError


class Gate:
    def __init__(self, slots: int, queue: int, stopping: asyncio.Event | None = None) -> None:
        self.slots = max(1, slots)
        self.queue = max(0, queue)
        self.free = list(range(self.slots))
        self.waiting = 0
        self.active = 0
        self.stopping = stopping
        self._cond = asyncio.Condition()
        self._recent: deque[float] = deque(maxlen=20)  # seconds per answer

    def retry_after(self) -> float:
        """Seconds until a new request would likely get a slot: the queue ahead of it at the median answer time."""
        typical = sorted(self._recent)[len(self._recent) // 2] if self._recent else 2.0
        return max(1.0, math.ceil(typical * (self.waiting + 1) / self.slots))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """A slot number for the duration of one answer; HttpError 429 when the queue is full, 503 when stopping."""
        if self.stopping is not None and self.stopping.is_set():
            raise HttpError(503, "server shutting down", retry_after=5)
        if not self.free and self.waiting >= self.queue:
            raise HttpError(
                429,
                f"all {self.slots} generation slots busy and {self.waiting} answers waiting",
                retry_after=self.retry_after(),
            )
        self.waiting += 1
        try:
            async with self._cond:
                while not self.free:
                    if self.stopping is not None and self.stopping.is_set():
                        raise HttpError(503, "server shutting down", retry_after=5)
                    await self._cond.wait()
                n = self.free.pop(0)
        finally:
            self.waiting -= 1
        self.active += 1
        t0 = time.perf_counter()
        try:
            yield n
        finally:
            self._recent.append(time.perf_counter() - t0)
            self.active -= 1
            async with self._cond:
                self.free.append(n)
                self.free.sort()
                self._cond.notify()

    async def wake_all(self) -> None:
        """Let waiters see ``stopping``."""
        async with self._cond:
            self._cond.notify_all()
