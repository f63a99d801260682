from __future__ import annotations

import pytest

from rag_cli.resilience import CircuitBreaker
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


def test_fuse_rrf_local_only_is_weighted_rrf_of_the_two_methods() -> None:
    dense = [local("a", 0.9, "dense"), local("b", 0.8, "dense")]
    bm25 = [local("b", 7.0, "bm25"), local("c", 5.0, "bm25")]
    out = fuse(
        {"dense": dense, "bm25": bm25},
        {"dense": "dense", "bm25": "bm25"},
        {"dense": 1.0, "bm25": 1.5},
        k=60,
        method="rrf",
    )
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
    out = fuse(
        {"dense": dense, "bm25": bm25, "wiki": remote},
        kinds,
        {"dense": 1.0, "bm25": 1.5, "wiki": 1.0},
        k=60,
        method="rrf",
    )
    assert [h.text for h in out] == ["a", "r1", "b", "r2"]
    assert out[0].score == round(1 / 61, 6) and out[1].score == round(1 / 61, 6)
    assert out[1].source == "wiki" and out[1].extra["source_scores"] == {"wiki": 42.0}
    assert out[0].source == "dense+bm25" and out[0].extra["source_scores"] == {"dense": 0.9, "bm25": 9.0}
    # a weight of 2 puts the remote list first
    out = fuse(
        {"dense": dense, "bm25": bm25, "wiki": remote},
        kinds,
        {"dense": 1.0, "bm25": 1.5, "wiki": 2.0},
        k=60,
        method="rrf",
    )
    assert [h.text for h in out][:2] == ["r1", "r2"] and out[0].score == round(2 / 61, 6)


def test_fuse_rag_shards_pool_by_method_scores() -> None:
    """Another index's hits are ranked with ours by their dense and BM25 scores, as one index."""
    dense = [local("a", 0.70, "dense")]
    bm25 = [local("a", 4.0, "bm25")]
    shard = [
        Hit(
            text="s",
            score=0.03,
            source="shard1",
            path="/x/s.md",
            chunk_id=5,
            extra={"source_scores": {"dense": 0.85, "bm25": 6.0}},
        ),
        Hit(
            text="t", score=0.01, source="shard1", path="/x/t.md", chunk_id=6, extra={"source_scores": {"dense": 0.60}}
        ),
    ]
    kinds = {"dense": "dense", "bm25": "bm25", "shard1": "rag"}
    out = fuse(
        {"dense": dense, "bm25": bm25, "shard1": shard},
        kinds,
        {"dense": 1.0, "bm25": 1.5, "shard1": 1.0},
        k=60,
        method="rrf",
    )
    assert [h.text for h in out] == ["s", "a", "t"]
    assert out[0].score == round(1 / 61 + 1.5 / 61, 6) and out[1].score == round(1 / 62 + 1.5 / 62, 6)
    assert out[2].score == round(1 / 63, 6)
    assert out[0].source == "shard1" and out[0].extra["source_scores"] == {"shard1.dense": 0.85, "shard1.bm25": 6.0}
    assert out[1].source == "dense+bm25"


def test_fuse_bm25_of_a_tiny_shard_counts_by_rank() -> None:
    """A one-document index scores every word near 0 (idf clamped): its BM25 list is merged by rank."""
    dense = [local("a", 0.60, "dense"), local("b", 0.50, "dense")]
    bm25 = [local("a", 17.0, "bm25"), local("b", 11.0, "bm25")]
    shard = [
        Hit(
            text="s",
            score=0.04,
            source="kb",
            path="/x/s.md",
            chunk_id=1,
            extra={"source_scores": {"dense": 0.84, "bm25": 7.8e-06}},
        )
    ]
    kinds = {"dense": "dense", "bm25": "bm25", "kb": "rag"}
    out = fuse({"dense": dense, "bm25": bm25, "kb": shard}, kinds, {"dense": 1.0, "bm25": 1.5}, k=60, method="rrf")
    # dense: s 1, a 2, b 3; bm25 by rank within each index: a 1, s 2 (rank 1 in its index, lower score), b 3
    assert [h.text for h in out] == ["a", "s", "b"]
    assert out[0].score == round(1 / 62 + 1.5 / 61, 6) and out[1].score == round(1 / 61 + 1.5 / 62, 6)
    # by raw BM25 score the shard's document would rank last there: 1/61 + 1.5/63, below b's 1/63 + 1.5/62
    assert out[1].score > round(1 / 63 + 1.5 / 62, 6)


# -- fuse, zscore (the default): both scores of every candidate, standardised ---------------------------


def both(key: str, score: float, source: str, dense: float, bm25: float) -> Hit:
    hit = local(key, score, source)
    hit.extra["source_scores"] = {"dense": dense, "bm25": bm25}  # as the fan-out completes them
    return hit


LOCAL_KINDS = {"dense": "dense", "bm25": "bm25"}


def test_fuse_zscore_hand_computed() -> None:
    # candidates a (dense .9, bm25 0: no match), b (.8, 7), c (.5, 5)
    # dense: mean .7333, std .16997 -> z a .98058, b .39223, c -1.37281
    # bm25:  mean 4, std 2.94392    -> z a -1.35873, b 1.01905, c .33968
    dense = [both("a", 0.9, "dense", 0.9, 0.0), both("b", 0.8, "dense", 0.8, 7.0)]
    bm25 = [both("b", 7.0, "bm25", 0.8, 7.0), both("c", 5.0, "bm25", 0.5, 5.0)]
    out = fuse({"dense": dense, "bm25": bm25}, LOCAL_KINDS, {"dense": 1.0, "bm25": 1.0})
    assert {h.text: h.score for h in out} == {"b": 0.705641, "a": -0.189076, "c": -0.516565}
    assert [h.text for h in out] == ["b", "a", "c"]
    assert out[0].source == "dense+bm25" and out[1].source == "dense" and out[2].source == "bm25"
    assert out[1].extra["source_scores"] == {"dense": 0.9, "bm25": 0.0}
    # weights: (w_d z_d + w_b z_b) / (w_d + w_b); BM25 1.5 lifts c above a
    out = fuse({"dense": dense, "bm25": bm25}, LOCAL_KINDS, {"dense": 1.0, "bm25": 1.5})
    assert [(h.text, h.score) for h in out] == [("b", 0.768323), ("c", -0.345315), ("a", -0.423007)]


def test_fuse_zscore_unknown_score_counts_as_the_lowest() -> None:
    """Without completion (it failed or timed out) a list's missing hit takes that list's lowest z."""
    dense = [local("a", 0.9, "dense"), local("b", 0.8, "dense")]
    bm25 = [local("b", 7.0, "bm25"), local("c", 5.0, "bm25")]
    out = fuse({"dense": dense, "bm25": bm25}, LOCAL_KINDS, {"dense": 1.0, "bm25": 1.0})
    assert {h.text: h.score for h in out} == {"a": 0.0, "b": 0.0, "c": -1.0}
    assert out[-1].text == "c"


def trio() -> dict[str, list[Hit]]:
    dense = [both("a", 0.60, "dense", 0.60, 17.0), both("b", 0.50, "dense", 0.50, 11.0)]
    bm25 = [both("a", 17.0, "bm25", 0.60, 17.0), both("b", 11.0, "bm25", 0.50, 11.0), both("c", 2.0, "bm25", 0.40, 2.0)]
    return {"dense": dense, "bm25": bm25}


def test_fuse_zscore_pools_dense_across_indexes_and_bm25_within_each() -> None:
    """Cosines of one model are comparable: standardised over the candidates of every index together
    (dense z a .650945, b -.390567, c -1.432078, s 1.1717); BM25 within each index (here a 1.13555,
    b .16222, c -1.29777; a one-document index scores every word near 0, and its one hit gets z 0)."""
    shard = [
        Hit(
            text="s",
            score=0.04,
            source="kb",
            path="/x/s.md",
            chunk_id=1,
            extra={"source_scores": {"dense": 0.65, "bm25": 7.8e-06}},
        )
    ]
    out = fuse({**trio(), "kb": shard}, {**LOCAL_KINDS, "kb": "rag"}, {})
    assert [(h.text, h.score) for h in out] == [("a", 0.893247), ("s", 0.58585), ("b", -0.114173), ("c", -1.364925)]
    assert out[1].source == "kb" and out[1].extra["source_scores"] == {"kb.dense": 0.65, "kb.bm25": 7.8e-06}


def test_fuse_zscore_takes_a_remote_index_s_own_standardised_bm25() -> None:
    """A ``rag`` source sends the BM25 z it computed over all of its candidates (we see only its best
    few: standardising those again would squeeze them)."""

    def remote(z: float) -> Hit:
        return Hit(
            text="s",
            score=0.5,
            source="kb",
            path="/x/s.md",
            chunk_id=1,
            extra={"source_scores": {"dense": 0.65, "bm25": 9.0}, "standard_scores": {"bm25": z}},
        )

    out = fuse({**trio(), "kb": [remote(2.0)]}, {**LOCAL_KINDS, "kb": "rag"}, {})
    assert [(h.text, h.score) for h in out] == [("s", 1.58585), ("a", 0.893247), ("b", -0.114173), ("c", -1.364925)]
    assert out[0].extra["standard_scores"] == {"dense": 1.1717, "bm25": 2.0}
    out = fuse({**trio(), "kb": [remote(-2.0)]}, {**LOCAL_KINDS, "kb": "rag"}, {})
    assert [h.text for h in out] == ["a", "b", "s", "c"] and out[2].score == -0.41415


def test_fuse_zscore_pools_bm25_too_when_every_index_scored_with_one_collection() -> None:
    """With a federated search's collection statistics every index's BM25 uses one idf: its scores pool across
    indexes as cosines do (a remote index's own standardised BM25 is then not used)."""
    from statistics import mean, pstdev

    from rag_cli.retrieve.fanout import POOLED

    remote = Hit(
        text="s",
        score=0.5,
        source="kb",
        path="/x/s.md",
        chunk_id=1,
        extra={"source_scores": {"dense": 0.65, "bm25": 9.0}, "standard_scores": {"bm25": 2.0}},
    )
    out = fuse({**trio(), "kb": [remote]}, {**LOCAL_KINDS, "kb": "rag"}, {}, pooled=POOLED)
    dense, bm25 = {"a": 0.6, "b": 0.5, "c": 0.4, "s": 0.65}, {"a": 17.0, "b": 11.0, "c": 2.0, "s": 9.0}

    def z(values: dict[str, float], key: str) -> float:
        return (values[key] - mean(values.values())) / pstdev(values.values())

    want = {key: (z(dense, key) + z(bm25, key)) / 2 for key in dense}
    assert [h.text for h in out] == sorted(want, key=lambda key: -want[key]) == ["a", "s", "b", "c"]
    assert [h.score for h in out] == pytest.approx([want[h.text] for h in out], abs=1e-6)


def test_fuse_zscore_http_source_is_still_a_peer() -> None:
    dense = [both("a", 0.9, "dense", 0.9, 9.0), both("b", 0.8, "dense", 0.8, 8.0)]
    bm25 = [both("a", 9.0, "bm25", 0.9, 9.0), both("b", 8.0, "bm25", 0.8, 8.0)]
    remote = [Hit(text="r1", score=42.0, source="wiki", url="http://kb/1")]
    out = fuse({"dense": dense, "bm25": bm25, "wiki": remote}, {**LOCAL_KINDS, "wiki": "http"}, {})
    assert [h.text for h in out] == ["a", "r1", "b"] and out[0].score == out[1].score == round(1 / 61, 6)


def test_each_search_reports_its_own_query_embedding_time() -> None:
    """Issue 33 item 5: a search's "embed" time is its own query's (from its QueryContext), not the last sample
    of a process-wide list that a concurrent request may have written; the process-wide samples are bounded."""
    import asyncio

    from rag_cli import runtime
    from rag_cli.retrieve.base import QueryContext
    from rag_cli.retrieve.fanout import FanOut
    from rag_cli.types import Hit

    class Dense:
        name, kind, weight, timeout, filters = "dense", "dense", 1.0, None, True

        async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
            delay = 0.2 if ctx.query == "slow" else 0.0
            await asyncio.sleep(delay)
            ctx.timings["embed"] = delay * 1000
            return [Hit(text=ctx.query, score=0.9, source="dense", path=f"{ctx.query}.md", chunk_id=1)]

    async def go() -> list[dict[str, float]]:
        fan = FanOut([Dense()], collapse=False)
        results = await asyncio.gather(fan.search("slow", k=1), fan.search("fast", k=1))
        return [r.timings for r in results]

    slow, fast = asyncio.run(go())
    assert slow["embed"] == 200 and fast["embed"] == 0
    stamps = runtime.Timings(keep=3)
    for ms in range(10):
        stamps.record("embed", ms)
    assert list(stamps.samples["embed"]) == [7, 8, 9]


def _passage(doc: str, n: int, score: float) -> Hit:
    return Hit(text=f"{doc} {n}", score=score, source="dense+bm25", path=f"/{doc}.md", chunk_id=hash((doc, n)) % 10**6)


def test_by_document_lifts_a_document_with_further_matching_passages_and_spreads_the_rest() -> None:
    """Issue 30, document-aware ranking: a document's best passage counts its further passages (0.25 of their
    scores over the list's lowest), every document's best passage comes before any second passage, and each
    result's score is the one it is ranked by, so scores still fall down the list."""
    from rag_cli.retrieve.fusion import by_document

    hits = [
        _passage("a", 1, 1.0),
        _passage("b", 1, 0.9),
        _passage("b", 2, 0.8),
        _passage("b", 3, 0.7),
        _passage("c", 1, 0.5),
        _passage("d", 1, 0.0),
    ]
    out = by_document(hits, 0.25)
    # b: 0.9 + 0.25 * (0.8 + 0.7) = 1.275 > a: 1.0; then c, d; then b's further passages in their order
    assert [h.text for h in out] == ["b 1", "a 1", "c 1", "d 1", "b 2", "b 3"]
    assert [h.score for h in out] == pytest.approx([1.275, 1.0, 0.5, 0.0, -0.2, -0.3])
    assert [h.score for h in hits] == [1.0, 0.9, 0.8, 0.7, 0.5, 0.0]  # the input is left as it was
    assert [h.text for h in by_document(hits, 0.05)] == ["a 1", "b 1", "c 1", "d 1", "b 2", "b 3"]
    assert by_document(hits, 0.0) == hits


def test_by_document_fills_the_list_with_documents_from_beyond_its_pool() -> None:
    """Issue 30: when a few long documents fill the ranked pool, the next documents among the further
    candidates follow the pool's documents (their best passage each, in fused order) before any further
    passage, and the pool's own order and lift are those without them; scores still fall down the list."""
    from rag_cli.retrieve.fusion import by_document

    hits = [
        _passage("a", 1, 1.0),
        _passage("b", 1, 0.9),
        _passage("a", 2, 0.8),
        _passage("b", 2, 0.7),
        _passage("c", 1, 0.6),  # beyond the pool of 4
        _passage("a", 3, 0.5),  # a further passage of a pool document beyond the pool: left out
        _passage("d", 1, 0.4),
        _passage("c", 2, 0.3),
    ]
    out = by_document(hits, 0.25, pool=4)
    assert [h.text for h in out] == ["a 1", "b 1", "c 1", "d 1", "a 2", "b 2"]
    within = by_document(hits[:4], 0.25)
    assert [(h.text, h.score) for h in out[:2]] == [(h.text, h.score) for h in within[:2]]
    scores = [h.score for h in out]
    assert scores == sorted(scores, reverse=True)
    assert [h.text for h in by_document(hits[:4], 0.25, pool=4)] == [h.text for h in within]  # nothing beyond


def test_by_document_tells_records_of_one_file_and_pages_of_one_site_apart() -> None:
    from rag_cli.retrieve.fusion import by_document, document_of

    one = Hit(text="x", score=1.0, source="bm25", path="/corpus.jsonl", doc_id="1", chunk_id=1)
    two = Hit(text="y", score=0.9, source="bm25", path="/corpus.jsonl", doc_id="2", chunk_id=2)
    web = [
        Hit(text="p", score=0.5, source="w", url="http://kb/page#a"),
        Hit(text="q", score=0.4, source="w", url="http://kb/page#b"),
        Hit(text="r", score=0.3, source="w", url="http://kb/other"),
    ]
    assert document_of(one) != document_of(two)
    assert document_of(web[0]) == document_of(web[1]) != document_of(web[2])
    assert [h.text for h in by_document([one, two, *web], 0.25)] == ["x", "y", "p", "r", "q"]


def test_the_fanout_puts_fused_results_in_document_order_and_leaves_a_single_list_alone() -> None:
    import asyncio

    from rag_cli.retrieve.base import QueryContext
    from rag_cli.retrieve.fanout import FanOut

    class Listed:
        weight, timeout, filters = 1.0, None, True

        def __init__(self, kind: str) -> None:
            self.name = self.kind = kind

        async def search(self, ctx: QueryContext, deadline: float | None) -> list[Hit]:
            return [_passage("a", 1, 0.9), _passage("a", 2, 0.85), _passage("b", 1, 0.6)]

    async def go(sources: list[Listed], bonus: float) -> list[str]:
        fan = FanOut(sources, fusion="rrf", collapse=False, document_bonus=bonus)
        return [h.text for h in (await fan.search("q", k=3)).hits]

    assert asyncio.run(go([Listed("dense"), Listed("bm25")], 0.25)) == ["a 1", "b 1", "a 2"]
    assert asyncio.run(go([Listed("dense"), Listed("bm25")], 0.0)) == ["a 1", "a 2", "b 1"]
    assert asyncio.run(go([Listed("dense")], 0.25)) == ["a 1", "a 2", "b 1"]


class _Peer:
    """A ``rag`` source: its first passages vote, and it records the feedback it is asked to search with."""

    name = kind = "rag"
    weight, timeout, filters = 1.0, None, True

    def __init__(self, votes: dict[str, list[tuple[float, object]]], fail: bool = False, counts: bool = True) -> None:
        self.votes, self.fail, self.counts = votes, fail, counts
        self.got: list[tuple[object, ...]] = []
        self.collections: list[object] = []

    async def first_passages(
        self, ctx: object, method: str, most: int, deadline: float | None
    ) -> list[tuple[float, object]]:
        from rag_cli.errors import SourceError
        from rag_cli.retrieve.base import QueryContext

        if self.fail:
            raise SourceError("down")
        assert isinstance(ctx, QueryContext)
        if method == "bm25" and self.counts:  # its word counts come with its BM25 votes (an older release: none)
            ctx.counts[self.name] = (10, {"q": 2})
        return self.votes[method][:most]

    async def search(self, ctx: object, deadline: float | None) -> list[Hit]:
        from rag_cli.retrieve.base import QueryContext

        assert isinstance(ctx, QueryContext)
        self.got.append((ctx.vector, ctx.vector_model, ctx.expansion, ctx.feedback))
        self.collections.append(ctx.collection)
        return [Hit(text="remote", score=0.5, source="rag", url="http://peer/x")]


def test_a_federated_search_shares_one_feedback_among_its_indexes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 30, federated parity: the local dense and BM25 searches and every ``rag`` peer give their first
    passages; one Rocchio vector (toward the best three of them all: the peer's count as much as ours) and one
    set of RM3 words (from every index's first passages) are made, and the local searches and the peers all
    search with them and with no feedback of their own, so pooled cosines are to one query. A peer that fails
    here gives no votes; a local method that cannot answer leaves every index its plain query."""
    import asyncio

    import numpy as np

    from rag_cli.retrieve.base import QueryContext
    from rag_cli.retrieve.fanout import FanOut
    from rag_cli.retrieve.local import BM25Source, DenseSource

    class Reader:
        """Two stored passages a method; the query vector is (1, 0)."""

        def __init__(self, fail: bool = False) -> None:
            self.fail = fail
            self.searched: list[tuple[str, object]] = []

        def snapshot(self) -> object:
            import contextlib

            return contextlib.nullcontext()

        def allowed(self, flt: object) -> None:
            return None

        def dense(self, vec: object, k: int, allowed: object) -> list[tuple[int, float]]:
            if self.fail:
                raise RuntimeError("broken index")
            self.searched.append(("dense", vec))
            return [(1, 0.9), (2, 0.2)][:k]

        def vectors(self, ids: list[int]) -> dict[int, object]:
            return {i: np.array([0.0, 1.0], dtype=np.float32) for i in ids}

        count = 5

        def bm25(
            self,
            query: str,
            k: int,
            columns: object,
            allowed: object,
            expansion: object = None,
            collection: object = None,
        ) -> list[tuple[int, float]]:
            self.searched.append(("bm25", expansion))
            self.searched.append(("collection", collection))
            return [(1, 12.0), (2, 3.0)][:k]

        def chunks_holding(self, words: list[str], most: int) -> list[int]:
            return [1 for _ in words]

        def chunks(self, ids: list[int]) -> dict[int, dict[str, str]]:
            return {i: {"text": "tomato sauce recipe" if i == 1 else "pasta boiling water"} for i in ids}

        def hits(self, scored: list[tuple[int, float]], name: str) -> list[Hit]:
            return [Hit(text=f"{name} {i}", score=s, source=name, path=f"/{i}.md", chunk_id=i) for i, s in scored]

    class Embedder:
        dim = 2

        def fingerprint(self) -> dict[str, object]:
            return {"model": "m", "dim": 2}

        def embed_query(self, text: str) -> np.ndarray:
            return np.array([1.0, 0.0], dtype=np.float32)

        def embed(self, texts: list[str]) -> np.ndarray:
            return np.array([[1.0, 0.0]] * len(texts), dtype=np.float32)

    theirs = {"dense": [(0.8, [1.0, 0.0]), (0.7, [1.0, 0.0])], "bm25": [(30.0, "olive oil garlic"), (1.0, "x")]}

    import rag_cli.retrieve.fanout as fanout_module

    pooled: list[object] = []
    real_fuse = fanout_module.fuse
    monkeypatch.setattr(fanout_module, "fuse", lambda *a, **kw: pooled.append(kw.get("pooled")) or real_fuse(*a, **kw))

    def go(peer: _Peer, reader: Reader | None = None) -> tuple[Reader, tuple[object, ...]]:
        reader = reader or Reader()
        dense = DenseSource(reader, Embedder(), feedback=1.0)  # type: ignore[arg-type]
        bm25 = BM25Source(reader, feedback=0.3)  # type: ignore[arg-type]
        asyncio.run(FanOut([dense, bm25, peer], fusion="rrf", collapse=False, default_timeout=5).search("q", k=3))  # type: ignore[list-item]
        return reader, peer.got[0]

    peer = _Peer(theirs)
    reader, (vec, model, expansion, feedback) = go(peer)
    # one collection for BM25's idf: our 5 chunks (1 holding "q") and the peer's 10 (2 holding it), both use it
    assert peer.collections == [(15, {"q": 3})]
    assert [c for m, c in reader.searched if m == "collection"][-1] == (15, {"q": 3})
    assert pooled[-1] == frozenset({"dense", "bm25"})  # every index scored BM25 alike: pooled in fusion
    older = _Peer(theirs, counts=False)  # a peer of an older release gives no counts and ignores the collection
    go(older)
    assert older.collections == [(5, {"q": 1})] and pooled[-1] == frozenset({"dense"})
    # the best three of all: ours 0.9 (0, 1), theirs 0.8 and 0.7 (1, 0) -> mean (2/3, 1/3), plus the query (1, 0)
    expected = np.array([5 / 3, 1 / 3]) / np.linalg.norm([5 / 3, 1 / 3])
    assert np.allclose(vec, expected) and model == "m/2" and feedback is False  # type: ignore[arg-type]
    last_dense = [v for m, v in reader.searched if m == "dense"][-1]
    assert np.allclose(last_dense, expected)  # type: ignore[arg-type]  # the local search used the same vector
    assert expansion is not None and {"tomato", "olive"} <= set(expansion[0]) and expansion[1] == 0.3  # type: ignore[index]
    assert [e for m, e in reader.searched if m == "bm25"][-1] == expansion  # one BM25 query for every index
    down = _Peer(theirs, fail=True)
    _, (vec, _, expansion, _) = go(down)
    assert down.collections == [(5, {"q": 1})]  # a peer that gave no counts: the statistics of those that did
    assert np.allclose(vec, np.array([1, 1]) / np.sqrt(2)) and "olive" not in expansion[0]  # type: ignore[arg-type, index]  # ours only
    _, (vec, model, expansion, _) = go(_Peer(theirs), Reader(fail=True))
    assert vec is None and model == "" and expansion is not None  # no local dense: the peer embeds the query itself
    assert QueryContext(query="q", k=1).expansion is None


def test_a_given_vector_is_used_as_it_is_and_only_from_the_same_model() -> None:
    """The peer side: Retrieval takes a federating index's vector only when it is of its own model and size
    (else it embeds the query itself, without feedback); the dense source then searches with it unmoved."""
    import asyncio

    import numpy as np

    from rag_cli.retrieve.base import QueryContext
    from rag_cli.retrieve.local import DenseSource
    from rag_cli.retrieve.service import Retrieval

    class Embedder:
        dim = 2

        def fingerprint(self) -> dict[str, object]:
            return {"model": "m", "dim": 2}

        def embed_query(self, text: str) -> np.ndarray:
            raise AssertionError("a given vector is not embedded again")

    r = Retrieval.__new__(Retrieval)
    r.embedder = Embedder()  # type: ignore[assignment]
    assert np.allclose(r.own_vector([3.0, 4.0], "m/2"), [0.6, 0.8])
    assert r.own_vector([3.0, 4.0], "other/2") is None and r.own_vector([1.0, 0, 0], "m/2") is None

    class Reader:
        def __init__(self) -> None:
            self.searched: list[list[float]] = []

        def snapshot(self) -> object:
            import contextlib

            return contextlib.nullcontext()

        def allowed(self, flt: object) -> None:
            return None

        def dense(self, vec: np.ndarray, k: int, allowed: object) -> list[tuple[int, float]]:
            self.searched.append(list(vec))
            return [(1, 0.5)]

        def hits(self, scored: list[tuple[int, float]], name: str) -> list[Hit]:
            return [Hit(text="x", score=s, source=name, chunk_id=i) for i, s in scored]

    reader = Reader()
    src = DenseSource(reader, Embedder(), feedback=1.0)  # type: ignore[arg-type]
    ctx = QueryContext(query="q", k=5, vector=np.array([0.6, 0.8], dtype=np.float32))
    asyncio.run(src.search(ctx, None))
    assert reader.searched == [pytest.approx([0.6, 0.8])]  # one search, no feedback round
    assert ctx.notes["dense_vector"] is ctx.vector  # what score completion uses: the given vector, unmoved
