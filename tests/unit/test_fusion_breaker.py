from __future__ import annotations

import pytest

from rag_cli.retrieve.breaker import CircuitBreaker
from rag_cli.retrieve.fusion import dedupe, rrf
from rag_cli.types import Hit


def h(name: str, source: str = "s") -> Hit:
    return Hit(text=name, score=0.0, source=source, path=f"/{name}", chunk_id=ord(name[0]))


def test_rrf_hand_computed() -> None:
    # a: rank 1 in x, rank 2 in y -> 1/61 + 1/62 ; b: rank 2 in x -> 1/62 ; c: rank 1 in y -> 1/61
    out = rrf({"x": [h("a"), h("b")], "y": [h("c"), h("a")]}, k=60)
    assert [o.text for o in out] == ["a", "c", "b"]
    assert out[0].score == pytest.approx(1 / 61 + 1 / 62, abs=1e-6)
    assert out[0].source == "x+y" and out[0].extra["sources"] == ["x", "y"]
    assert out[1].score == pytest.approx(1 / 61, abs=1e-6)


@pytest.mark.parametrize(
    "weights,first",
    [({"x": 1.0, "y": 1.0}, "a"), ({"x": 1.0, "y": 3.0}, "c"), ({"x": 3.0, "y": 1.0}, "a")],
)
def test_rrf_weights(weights: dict[str, float], first: str) -> None:
    out = rrf({"x": [h("a"), h("b")], "y": [h("c"), h("d")]}, weights=weights)
    assert out[0].text == first


def test_rrf_merges_duplicates_and_limits() -> None:
    out = rrf({"x": [h("a"), h("a"), h("b")], "y": [h("a")]}, limit=1)
    assert len(out) == 1 and out[0].score == pytest.approx(2 / 61, abs=1e-6)


def test_url_duplicates_merge() -> None:
    u1 = Hit(text="t1", score=1, source="w", url="http://x/1")
    u2 = Hit(text="t1 other snippet", score=1, source="v", url="http://x/1")
    out = rrf({"w": [u1], "v": [u2]})
    assert len(out) == 1
    assert dedupe([u1, u2]) == [u1]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=3, cooldown=10, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    clock.t = 10.0
    assert b.state == "half-open"
    assert b.allow() and not b.allow()  # one trial at a time
    b.failure()
    assert b.state == "open"
    clock.t = 20.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()
