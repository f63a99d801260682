"""A federated search's collection statistics (store/base.Collection): summed, sent and read back, and the idf
a store takes from them."""

from __future__ import annotations

import pytest

from rag_cli.store.base import bm25_idf, collection_from, collection_idf, collection_json, summed, word_idf


def test_summed_over_indexes_keeps_the_words_all_of_them_counted() -> None:
    assert summed([]) is None
    assert summed([(5, {"a": 1, "b": 2}), (10, {"a": 4})]) == (15, {"a": 5})  # "b": ours only, each keeps its own
    assert summed([(5, {"a": 1})]) == (5, {"a": 1})


def test_word_idf_is_the_collection_s_where_it_counts_the_word() -> None:
    assert word_idf("a", 100, 10) == bm25_idf(100, 10)
    assert word_idf("a", 100, 10, (1000, {"a": 11})) == bm25_idf(1000, 11)
    assert word_idf("b", 100, 10, (1000, {"a": 11})) == bm25_idf(100, 10)  # not counted: the index's own
    assert word_idf("a", 100, 10, (0, {"a": 11})) == bm25_idf(100, 10)  # an empty collection says nothing
    assert word_idf("a", 100, 10, (5, {"a": 11})) == bm25_idf(5, 5)  # more holding than rows: clamped
    # what the in-memory postings take: the collection's idf, or None for the index's own
    assert collection_idf("a", (1000, {"a": 11})) == bm25_idf(1000, 11)
    assert collection_idf("b", (1000, {"a": 11})) is None and collection_idf("a", None) is None
    assert collection_idf("a", (0, {"a": 11})) is None


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {"rows": -1, "words": {}},
        {"rows": True, "words": {}},
        {"rows": 3, "words": []},
        {"rows": 3, "words": {"": 1}},
        {"rows": 3, "words": {"a": 1.5}},
        {"rows": 3, "words": {"a" * 65: 1}},
        {"rows": 3, "words": {f"w{i}": 1 for i in range(65)}},
    ],
)
def test_collection_from_refuses_what_is_not_one(bad: object) -> None:
    assert collection_from(bad) is None


def test_collection_round_trips_as_json() -> None:
    got = (12, {"git": 3, "rebase": 1})
    assert collection_from(collection_json(got)) == got
