"""Pseudo-relevance feedback: the first results of a query refine the query itself.

- **BM25, RM3-style expansion** (:func:`expansion_terms`): the top ``docs`` passages of the first BM25
  search vote for words (each word's share of a passage's words, weighted by the passage's min-max
  normalised score); the ``terms`` best words the query does not hold are added to it with weight ``lam``
  (the store's ``bm25(..., expansion=(words, lam))``, store/base.Expansion)::

      score(d) = bm25(q, d) + lam * bm25(expansion, d)

  BM25 sums over query terms, so this is the BM25 of the expanded query with the new terms weighted ``lam``.
- **Dense, Rocchio** (:func:`rocchio`): the query vector moves toward the mean of the top ``docs`` passages'
  stored vectors, ``v = q + beta * mean(d_1..d_n)``, normalised, and the index is searched again with it.

Both on by default (``[retrieve] feedback_bm25`` = lam, ``feedback_dense`` = beta; 0 turns one off): measured
in bench/prf.py and bench/fusion.py against the same search without them (docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from ..text import STOP_WORDS

BM25_DOCS, BM25_TERMS = 10, 10  # RM3: passages that vote, words added
DENSE_DOCS = 3  # Rocchio: passages averaged
_WORD = re.compile(r"[a-z][a-z0-9_-]{2,}")


def expansion_terms(query: str, texts: Sequence[str], scores: Sequence[float], terms: int = BM25_TERMS) -> list[str]:
    """RM3's feedback words for ``query`` from the passages ``texts`` with their first-pass ``scores``:
    at most ``terms`` words, best first, none a word of the query or a stop word."""
    if not texts:
        return []
    asked = set(_WORD.findall(query.lower()))
    lo, hi = min(scores), max(scores)
    votes: dict[str, float] = defaultdict(float)
    for text, s in zip(texts, scores, strict=True):
        words = [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]
        if not words:
            continue
        weight = (s - lo) / ((hi - lo) or 1.0) + 1e-3  # the weakest passage still votes a little
        for w, c in Counter(words).items():
            votes[w] += weight * c / len(words)
    ranked = sorted(votes.items(), key=lambda x: (-x[1], x[0]))  # ties by word: the same terms every run
    return [w for w, _ in ranked if w not in asked][:terms]


def rocchio(query_vec: Any, feedback: Sequence[Any], beta: float) -> Any:
    """The query vector moved toward the mean of ``feedback`` vectors, unit length (float32)."""
    import numpy as np

    q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
    if not feedback or beta <= 0:
        return q
    v = q + beta * np.mean(np.stack([np.asarray(f, dtype=np.float32).reshape(-1) for f in feedback]), axis=0)
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 else q
