"""The one place that owns concurrency: the event loop, the bounded thread pool and its metrics.

The event loop only orchestrates. Anything that blocks (model inference, FAISS
search, SQLite, file reads and writes, big JSON parsing) goes through
:func:`run_blocking`, which runs it on a single bounded ``ThreadPoolExecutor``
whose size comes from settings (``RAG_WORKERS``; default: the number of cores).

Usage::

    from rag_cli import runtime

    async def main():
        vec = await runtime.run_blocking(model.encode, texts, stage="embed")

    runtime.run(main(), workers=4)

Metrics kept here (and exported by ``rag serve`` on ``/metrics``):

* per-stage timings (``timings.record``; ``run_blocking(..., stage=NAME)`` records one),
* event-loop lag measured by :class:`LoopLagMonitor`,
* pool active and queued counts (:class:`BoundedPool`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .config import cpu_count as cpu_count  # re-exported: for the modules that size by cores
from .config import default_workers

T = TypeVar("T")


class BoundedPool:
    """A ThreadPoolExecutor that counts its active and queued jobs."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rag-pool")
        self._lock = threading.Lock()
        self.active = 0
        self.queued = 0
        self.max_queued = 0
        self.completed = 0

    def _wrap(self, fn: Callable[..., T], args: tuple[Any, ...]) -> Callable[[], T]:
        def job() -> T:
            with self._lock:
                self.queued -= 1
                self.active += 1
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self.active -= 1
                    self.completed += 1

        return job

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        with self._lock:
            self.queued += 1
            self.max_queued = max(self.max_queued, self.queued)
        return self._executor.submit(self._wrap(fn, args))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)


class Timings:
    """Per-stage durations in milliseconds of this process: the latest ``keep`` samples per stage (a server
    runs for weeks). A request's own figures travel with it (``QueryContext.timings``, ``SearchResult.timings``)."""

    def __init__(self, keep: int = 1024) -> None:
        self.samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=keep))
        self._lock = threading.Lock()

    def record(self, stage: str, ms: float) -> None:
        with self._lock:
            self.samples[stage].append(ms)


class LoopLagMonitor:
    """Measures how late the event loop wakes up a task that sleeps ``interval`` seconds.

    A loop that something blocks shows up as lag; ``max_ms`` and ``p99_ms`` summarise it.
    """

    def __init__(self, interval: float = 0.02, keep: int = 60000) -> None:  # 20 minutes of samples
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=keep)
        self.max_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, (loop.time() - t0 - self.interval) * 1000)
            self.samples.append(lag)
            self.max_ms = max(self.max_ms, lag)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def percentile(self, q: float) -> float:
        if not self.samples:
            return 0.0
        data = sorted(self.samples)
        idx = min(len(data) - 1, round(q / 100 * (len(data) - 1)))
        return data[idx]

    def reset(self) -> None:
        self.samples.clear()
        self.max_ms = 0.0

    def summary(self) -> dict[str, float]:
        return {
            "p50": round(self.percentile(50), 2),
            "p99": round(self.percentile(99), 2),
            "max": round(self.max_ms, 2),
        }


_pool: BoundedPool | None = None
_pool_lock = threading.Lock()
timings = Timings()
loop_lag = LoopLagMonitor()


def configure(workers: int | None = None) -> BoundedPool:
    """(Re)create the shared pool with ``workers`` threads (default: settings/cores)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool = BoundedPool(workers or default_workers())
        return _pool


def pool() -> BoundedPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = BoundedPool(default_workers())
        return _pool


_abandoned = 0


def note_abandoned() -> None:
    """A pool job was given up on (it cannot be interrupted and keeps running in its thread)."""
    global _abandoned
    _abandoned += 1


def abandoned() -> int:
    """How many pool jobs were given up on; the CLI then exits without joining pool threads."""
    return _abandoned


_dropped: list[BoundedPool] = []


def drop_pool() -> None:
    """Cancel queued jobs and forget the pool (running jobs finish; a new pool is made on next use)."""
    global _pool
    with _pool_lock:
        _dropped[:] = [p for p in _dropped if p.active]  # a dropped pool is kept only while a job of it runs
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
            _dropped.append(_pool)
            _pool = None


def busy() -> int:
    """Pool jobs still running, in the pool and in pools dropped after an interruption (an embedding batch
    cannot be stopped midway: an interrupted command need not wait for it at exit)."""
    with _pool_lock:
        _dropped[:] = [p for p in _dropped if p.active]
        pools = [p for p in (_pool, *_dropped) if p is not None]
    return sum(p.active for p in pools)


async def run_aside(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on a thread of its own, not on the pool: clean-up that must not queue behind the
    pool's running jobs (an interrupted index's rollback while embedding batches still run)."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def target() -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # handed to the awaiting task
            done.set_exception(exc)

    threading.Thread(target=target, name="rag-aside", daemon=True).start()
    return await asyncio.wrap_future(done)


async def run_blocking(fn: Callable[..., T], *args: Any, stage: str | None = None) -> T:
    """Run ``fn(*args)`` on the bounded pool and await it without blocking the loop."""
    fut = pool().submit(fn, *args)
    t0 = time.perf_counter()
    try:
        return await asyncio.wrap_future(fut)
    finally:
        if stage:
            timings.record(stage, (time.perf_counter() - t0) * 1000)


def run(coro: Coroutine[Any, Any, T], *, workers: int | None = None, monitor: bool = True) -> T:
    """Run ``coro`` on a new event loop with the shared pool, lag monitor and clean shutdown.

    Ctrl-C (asyncio.run's own handling) and SIGTERM cancel ``coro``, so its ``finally``
    blocks run; then queued pool jobs are dropped and ``KeyboardInterrupt`` or
    :class:`~rag_cli.errors.Terminated` is raised for the CLI to map to 130 or 143.
    """
    from .errors import Terminated

    if workers:
        configure(workers)
    terminated = threading.Event()
    old_term = signal.getsignal(signal.SIGTERM)

    async def main() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def on_term() -> None:
            terminated.set()
            if task is not None:
                task.cancel()

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not on the main thread
            loop.add_signal_handler(signal.SIGTERM, on_term)
        if monitor:
            loop_lag.start()
        try:
            return await coro
        finally:
            if monitor:
                await loop_lag.stop()

    try:
        return asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        drop_pool()
        if terminated.is_set():
            raise Terminated() from None
        raise
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, old_term)
