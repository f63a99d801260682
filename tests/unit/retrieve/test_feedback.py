"""Pseudo-relevance feedback (retrieve/feedback.py): RM3 words, the combined BM25, Rocchio's vector."""

from __future__ import annotations

import numpy as np
import pytest

from rag_cli.retrieve.feedback import expansion_terms, rocchio


def test_expansion_words_come_from_the_best_passages_and_leave_the_query_out() -> None:
    texts = [
        "rebase replays commits onto upstream branch",
        "rebase interactive squash commits",
        "unrelated gardening tomatoes soil",
    ]
    words = expansion_terms("how to rebase", texts, [9.0, 8.0, 0.5], terms=3)
    assert "rebase" not in words  # a query word is not feedback
    assert words[0] == "commits"  # in both strong passages
    assert not {"tomatoes", "soil", "gardening"} & set(words)  # the weakest passage barely votes
    assert all(w not in {"how", "onto"} for w in words)  # stop words never


def test_expansion_is_deterministic_and_bounded() -> None:
    texts = ["alpha beta gamma delta", "alpha beta epsilon zeta"]
    a = expansion_terms("q", texts, [1.0, 1.0], terms=2)
    assert a == expansion_terms("q", texts, [1.0, 1.0], terms=2) == ["alpha", "beta"]
    assert expansion_terms("q", [], [], terms=5) == []
    assert expansion_terms("q", ["a an the"], [1.0]) == []  # no word of three letters or more that is not a stop word


def test_rocchio_moves_toward_the_feedback_and_stays_unit() -> None:
    q = np.array([1.0, 0.0], dtype=np.float32)
    v = rocchio(q, [np.array([0.0, 1.0]), np.array([0.0, 1.0])], 1.0)
    assert np.linalg.norm(v) == pytest.approx(1.0)
    assert v[1] == pytest.approx(v[0])  # halfway: q + mean = (1, 1)
    assert np.array_equal(rocchio(q, [], 1.0), q) and np.array_equal(rocchio(q, [np.array([0.0, 1.0])], 0.0), q)
