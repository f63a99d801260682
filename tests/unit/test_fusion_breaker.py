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


# -- fuse: every source one fair voice (issue 15) ----------------------------------------------------

from rag_cli.retrieve.fusion import fuse  # noqa: E402


def local(key: str, score: float, source: str) -> Hit:
    return Hit(text=key, score=score, source=source, path=f"/d/{key}.md", chunk_id=hash(key) % 1000)


def test_fuse_local_only_is_weighted_rrf_of_the_two_methods() -> None:
    dense = [local("a", 0.9, "dense"), local("b", 0.8, "dense")]
    bm25 = [local("b", 7.0, "bm25"), local("c", 5.0, "bm25")]
    out = fuse({"dense": dense, "bm25": bm25}, {"dense": "dense", "bm25": "bm25"}, {"dense": 1.0, "bm25": 1.5}, k=60)
    got = {h.text: h.score for h in out}
    assert got == {"b": round(1 / 62 + 1.5 / 61, 6), "a": round(1 / 61, 6), "c": round(1.5 / 62, 6)}
    assert [h.text for h in out] == ["b", "c", "a"]
    b = out[0]
    assert b.source == "dense+bm25" and b.extra["source_scores"] == {"dense": 0.8, "bm25": 7.0}


def test_fuse_http_source_is_a_peer_of_the_index() -> None:
    """Before: a locally double-matched chunk (1/61 + 1.5/61) outranked every remote hit (1/61)."""
    dense = [local("a", 0.9, "dense"), local("b", 0.8, "dense")]
    bm25 = [local("a", 9.0, "bm25"), local("b", 8.0, "bm25")]
    remote = [
        Hit(text="r1", score=42.0, source="wiki", url="http://kb/1"),
        Hit(text="r2", score=3.0, source="wiki", url="http://kb/2"),
    ]
    kinds = {"dense": "dense", "bm25": "bm25", "wiki": "http"}
    out = fuse({"dense": dense, "bm25": bm25, "wiki": remote}, kinds, {"dense": 1.0, "bm25": 1.5, "wiki": 1.0}, k=60)
    assert [h.text for h in out] == ["a", "r1", "b", "r2"]
    assert out[0].score == round(1 / 61, 6) and out[1].score == round(1 / 61, 6)
    assert out[1].source == "wiki" and out[1].extra["source_scores"] == {"wiki": 42.0}
    assert out[0].source == "dense+bm25" and out[0].extra["source_scores"] == {"dense": 0.9, "bm25": 9.0}
    # a weight of 2 puts the remote list first
    out = fuse({"dense": dense, "bm25": bm25, "wiki": remote}, kinds, {"dense": 1.0, "bm25": 1.5, "wiki": 2.0}, k=60)
    assert [h.text for h in out][:2] == ["r1", "r2"] and out[0].score == round(2 / 61, 6)


def test_fuse_rag_shards_pool_by_method_scores() -> None:
    """Another index's hits are ranked with ours by their dense and BM25 scores, as one index."""
    dense = [local("a", 0.70, "dense")]
    bm25 = [local("a", 4.0, "bm25")]
    shard = [Hit(text="s", score=0.03, source="shard1", path="/x/s.md", chunk_id=5,
                 extra={"source_scores": {"dense": 0.85, "bm25": 6.0}}),
             Hit(text="t", score=0.01, source="shard1", path="/x/t.md", chunk_id=6,
                 extra={"source_scores": {"dense": 0.60}})]  # fmt: skip
    kinds = {"dense": "dense", "bm25": "bm25", "shard1": "rag"}
    out = fuse({"dense": dense, "bm25": bm25, "shard1": shard}, kinds, {"dense": 1.0, "bm25": 1.5, "shard1": 1.0}, k=60)
    assert [h.text for h in out] == ["s", "a", "t"]
    assert out[0].score == round(1 / 61 + 1.5 / 61, 6) and out[1].score == round(1 / 62 + 1.5 / 62, 6)
    assert out[2].score == round(1 / 63, 6)
    assert out[0].source == "shard1" and out[0].extra["source_scores"] == {"shard1.dense": 0.85, "shard1.bm25": 6.0}
    assert out[1].source == "dense+bm25"


def test_fuse_bm25_of_a_tiny_shard_counts_by_rank() -> None:
    """A one-document index scores every word near 0 (idf clamped): its BM25 list is merged by rank."""
    dense = [local("a", 0.60, "dense"), local("b", 0.50, "dense")]
    bm25 = [local("a", 17.0, "bm25"), local("b", 11.0, "bm25")]
    shard = [Hit(text="s", score=0.04, source="kb", path="/x/s.md", chunk_id=1,
                 extra={"source_scores": {"dense": 0.84, "bm25": 7.8e-06}})]  # fmt: skip
    kinds = {"dense": "dense", "bm25": "bm25", "kb": "rag"}
    out = fuse({"dense": dense, "bm25": bm25, "kb": shard}, kinds, {"dense": 1.0, "bm25": 1.5}, k=60)
    # dense: s 1, a 2, b 3; bm25 by rank within each index: a 1, s 2 (rank 1 in its index, lower score), b 3
    assert [h.text for h in out] == ["a", "s", "b"]
    assert out[0].score == round(1 / 62 + 1.5 / 61, 6) and out[1].score == round(1 / 61 + 1.5 / 62, 6)
    # by raw BM25 score the shard's document would rank last there: 1/61 + 1.5/63, below b's 1/63 + 1.5/62
    assert out[1].score > round(1 / 63 + 1.5 / 62, 6)
