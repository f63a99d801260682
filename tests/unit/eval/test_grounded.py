"""Groundedness of an answer's sentences (rag eval, bench/answer.py): a sentence a cited passage says word for
word is grounded, whatever a cosine with the whole passage gives."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from rag_cli.eval.qa import grounded

PASSAGE = SimpleNamespace(
    text="Fusion.\n\nThe original paper by Cormack, Clarke and Büttcher (SIGIR 2009) used\nk = 60, which remains "
    "the usual default. Many other\nthings are said here, about **ranks** and scores."
)


class Orthogonal:
    """Every text a vector of its own: a cosine of 0 between any two different texts."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def embed(self, texts: list[str]) -> Any:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, self.seen.setdefault(t, len(self.seen))] = 1.0
        return out


def test_a_sentence_the_cited_passage_says_is_grounded_whatever_its_cosine() -> None:
    answer = (
        'The value is 60 [1].\n\nEvidence:\n- "The original paper by Cormack, Clarke and Büttcher (SIGIR 2009) used '
        'k = 60, which remains the usual default." [1]\n- "things are said here about ranks" [1]'
    )
    got = grounded(answer, [PASSAGE], Orthogonal())
    assert got is not None
    # the first is not in the passage (the cosine decides: 0 here); the quote is; so is the last, case, markup
    # and punctuation aside
    assert [(near, same) for _, near, same in got] == [(False, False), (False, True), (False, True)]


def test_word_for_word_means_whole_words_in_order_and_a_term_led_quote_in_its_parts() -> None:
    embedder = Orthogonal()
    one = grounded('- "Fusion … the usual default" [1]', [PASSAGE], embedder)
    assert one is not None and one[0][2]
    for other in ("the usual defaults are kept", "usual the default is", "ranks and scores are equal"):
        got = grounded(f"{other} [1].", [PASSAGE], embedder)
        assert got is not None and not got[0][2], other
    assert grounded("Nothing cited here at all.", [], embedder) == []
