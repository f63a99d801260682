"""QueryBatcher: concurrent queries share batches, duplicates share work, errors reach every waiter."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from rag_cli import runtime
from rag_cli.embed.batcher import QueryBatcher
from rag_cli.embed.hashing import HashEmbedder


class Recording(HashEmbedder):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.fail = fail

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.gate.wait(5)
        self.calls.append(list(texts))
        if self.fail:
            raise RuntimeError("model broke")
        return self.embed(texts)


def test_concurrent_queries_are_batched_and_deduplicated() -> None:
    emb = Recording()
    b = QueryBatcher(emb, max_batch=4)

    async def go() -> list[np.ndarray]:
        first = asyncio.create_task(b.embed("q0"))
        await asyncio.sleep(0.05)  # q0 is now being encoded, alone
        rest = [asyncio.create_task(b.embed(f"q{i % 5 + 1}")) for i in range(10)]
        await asyncio.sleep(0.05)
        emb.gate.set()
        return [await first, *[await t for t in rest]]

    vecs = runtime.run(go(), workers=2)
    assert emb.calls[0] == ["q0"]
    # the 10 waiting calls were 5 distinct queries: encoded once each, in batches of at most 4
    assert sorted(q for call in emb.calls[1:] for q in call) == ["q1", "q2", "q3", "q4", "q5"]
    assert [len(c) for c in emb.calls[1:]] == [4, 1]
    for i, v in enumerate(vecs[1:]):
        assert np.allclose(v, emb.embed_query(f"q{i % 5 + 1}"))


def test_cache_hits_skip_the_model_and_lru_evicts() -> None:
    emb = Recording()
    emb.gate.set()
    b = QueryBatcher(emb, cache_size=2)

    async def go() -> None:
        for q in ["a", "b", "a", "c", "b"]:
            await b.embed(q)

    runtime.run(go(), workers=1)
    # "a" hit; "c" evicted "b" (the least recently used), so "b" is encoded again
    assert emb.calls == [["a"], ["b"], ["c"], ["b"]]
    assert b.hits == 1


def test_errors_reach_every_waiter_and_are_not_cached() -> None:
    emb = Recording(fail=True)
    b = QueryBatcher(emb)

    async def go() -> list[BaseException | np.ndarray]:
        tasks = [asyncio.create_task(b.embed(q)) for q in ["x", "y", "x"]]
        await asyncio.sleep(0.02)
        emb.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = runtime.run(go(), workers=1)
    assert all(isinstance(r, RuntimeError) for r in out)
    emb.fail = False
    assert runtime.run(b.embed("x"), workers=1).shape == (emb.dim,)


def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    emb = Recording()
    b = QueryBatcher(emb)

    async def go() -> np.ndarray:
        impatient = asyncio.create_task(b.embed("z"))
        patient = asyncio.create_task(b.embed("z"))
        await asyncio.sleep(0.02)
        impatient.cancel()
        emb.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        return await patient

    assert runtime.run(go(), workers=1).shape == (emb.dim,)


class Concurrent(HashEmbedder):
    """Records how many encode calls run at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.running = self.peak = 0
        self.calls: list[list[str]] = []
        self.release = threading.Event()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.calls.append(list(texts))
        self.release.wait(5)
        with self.lock:
            self.running -= 1
        return self.embed(texts)


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_parallel_calls_use_the_cores_and_never_more(parallel: int) -> None:
    """Up to ``parallel`` encode calls run at once (one per core in serve); the rest wait in small batches."""
    emb = Concurrent()
    b = QueryBatcher(emb, max_batch=2, parallel=parallel)

    async def go() -> list[np.ndarray]:
        tasks = [asyncio.create_task(b.embed(f"q{i}")) for i in range(9)]
        await asyncio.sleep(0.1)  # every worker has started its first call and is blocked in it
        started = emb.peak
        emb.release.set()
        out = await asyncio.gather(*tasks)
        assert started == parallel
        return out

    vecs = runtime.run(go(), workers=4)
    assert emb.peak == parallel
    assert sorted(q for c in emb.calls for q in c) == [f"q{i}" for i in range(9)]
    assert max(len(c) for c in emb.calls) <= 2
    for i, v in enumerate(vecs):
        assert np.allclose(v, emb.embed_query(f"q{i}"))
