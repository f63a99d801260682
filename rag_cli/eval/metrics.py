"""Retrieval and answer metrics as pure functions (binary relevance).

For a ranked list ``ranked`` of document ids and the set ``rel`` of relevant ids:

* ``recall@k    = |top_k ∩ rel| / |rel|``
* ``mrr@k       = 1 / (rank of the first relevant id in top_k)``, 0 if none
* ``dcg@k       = Σ_{i=1..k} [ranked_i ∈ rel] / log2(i + 1)``;
  ``ndcg@k = dcg@k / idcg@k`` with ``idcg@k = Σ_{i=1..min(|rel|, k)} 1 / log2(i + 1)``
* ``map@k (AP)  = (1 / |rel|) Σ_{i ≤ k, ranked_i ∈ rel} precision@i`` (as trec_eval's map_cut)

Queries with no relevant document are left out by the caller (and counted).
Answer metrics: ``contains`` (an expected fact appears, case-insensitive) and
``token_f1`` (SQuAD-style: lower-cased words without punctuation and articles).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any


def recall_at(ranked: Sequence[str], rel: set[str], k: int) -> float:
    return len(set(ranked[:k]) & rel) / len(rel) if rel else 0.0


def mrr_at(ranked: Sequence[str], rel: set[str], k: int) -> float:
    for i, doc in enumerate(ranked[:k], start=1):
        if doc in rel:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked: Sequence[str], rel: set[str], k: int) -> float:
    if not rel:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 1) for i, doc in enumerate(ranked[:k], start=1) if doc in rel)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(rel), k) + 1))
    return dcg / idcg


def ap_at(ranked: Sequence[str], rel: set[str], k: int) -> float:
    if not rel:
        return 0.0
    hits = 0
    total = 0.0
    for i, doc in enumerate(ranked[:k], start=1):
        if doc in rel:
            hits += 1
            total += hits / i
    return total / len(rel)


RETRIEVAL_METRICS: dict[str, Callable[[Sequence[str], Any], float]] = {
    "ndcg@10": lambda r, rel: ndcg_at(r, rel, 10),
    "recall@10": lambda r, rel: recall_at(r, rel, 10),
    "recall@100": lambda r, rel: recall_at(r, rel, 100),
    "mrr@10": lambda r, rel: mrr_at(r, rel, 10),
    "map@100": lambda r, rel: ap_at(r, rel, 100),
}


def _normalize(text: str) -> list[str]:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def token_f1(prediction: str, truth: str) -> float:
    p, t = _normalize(prediction), _normalize(truth)
    if not p or not t:
        return float(p == t)
    common = Counter(p) & Counter(t)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def contains(prediction: str, facts: Sequence[str]) -> bool:
    low = prediction.lower()
    return any(f.lower() in low for f in facts)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]
