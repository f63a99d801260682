from __future__ import annotations

import math

import pytest

from rag_cli.eval.metrics import ap_at, contains, mrr_at, ndcg_at, percentile, recall_at, token_f1

R = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    "rel,k,expected",
    [
        ({"a"}, 10, 1.0),
        ({"b"}, 10, 1 / math.log2(3)),  # one relevant at rank 2; ideal puts it at rank 1
        ({"a", "c"}, 10, (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))),
        ({"z"}, 10, 0.0),
        ({"e"}, 3, 0.0),  # beyond the cut-off
        ({"a", "x", "y", "z"}, 2, 1 / (1 + 1 / math.log2(3))),  # ideal DCG capped at k = 2
    ],
)
def test_ndcg(rel: set[str], k: int, expected: float) -> None:
    assert ndcg_at(R, rel, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    "rel,k,recall,mrr,ap",
    [
        ({"a"}, 10, 1.0, 1.0, 1.0),
        ({"b", "d"}, 10, 1.0, 0.5, (1 / 2 + 2 / 4) / 2),
        ({"b", "z"}, 10, 0.5, 0.5, (1 / 2) / 2),
        ({"d"}, 2, 0.0, 0.0, 0.0),
    ],
)
def test_recall_mrr_ap(rel: set[str], k: int, recall: float, mrr: float, ap: float) -> None:
    assert recall_at(R, rel, k) == pytest.approx(recall)
    assert mrr_at(R, rel, k) == pytest.approx(mrr)
    assert ap_at(R, rel, k) == pytest.approx(ap)


def test_empty_relevant_set() -> None:
    assert ndcg_at(R, set(), 10) == recall_at(R, set(), 10) == ap_at(R, set(), 10) == 0.0


@pytest.mark.parametrize(
    "pred,truth,f1",
    [
        ("The answer is 60", "60", 2 * (1 / 3) * 1 / (1 / 3 + 1)),
        ("sixty", "60", 0.0),
        ("k = 60.", "60", 2 * 0.5 * 1 / 1.5),
        ("", "", 1.0),
    ],
)
def test_token_f1(pred: str, truth: str, f1: float) -> None:
    assert token_f1(pred, truth) == pytest.approx(f1)


def test_contains_and_percentile() -> None:
    assert contains("uses Retry-After headers", ["retry-after"])
    assert not contains("nothing", ["x", "y"])
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile([1, 2, 3, 4], 95) == 4 and percentile([], 50) == 0.0
