"""Reciprocal Rank Fusion.

For every hit ``d`` and every source ``s`` that returned it at rank ``r_s(d)``
(1-based)::

    RRF(d) = sum_s  w_s / (k + r_s(d))          k = 60 by default

Duplicates (same key: chunk, url) are merged: the fused hit keeps the text of
its best-ranked occurrence and lists every source that found it.
"""

from __future__ import annotations

from dataclasses import replace

from ..types import Hit


def rrf(ranked: dict[str, list[Hit]], *, k: int = 60, weights: dict[str, float] | None = None,
        limit: int | None = None) -> list[Hit]:  # fmt: skip
    """Fuse per-source rankings into one list, best first."""
    weights = weights or {}
    scores: dict[str, float] = {}
    best: dict[str, tuple[int, Hit]] = {}
    sources: dict[str, list[str]] = {}
    raw: dict[str, dict[str, float]] = {}
    for name, hits in ranked.items():
        w = weights.get(name, 1.0)
        seen: set[str] = set()
        for rank, hit in enumerate(hits, start=1):
            key = hit.key
            if key in seen:  # a source listing the same passage twice counts once
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + w / (k + rank)
            sources.setdefault(key, []).append(name)
            raw.setdefault(key, {})[name] = hit.score
            if key not in best or rank < best[key][0]:
                best[key] = (rank, hit)
    order = sorted(scores, key=lambda key: (-scores[key], best[key][0]))
    out = []
    for key in order[:limit] if limit else order:
        hit = best[key][1]
        extra = dict(hit.extra)
        extra["sources"] = sources[key]
        extra["source_scores"] = raw[key]
        out.append(replace(hit, score=round(scores[key], 6), source="+".join(sources[key]), extra=extra))
    return out


def dedupe(hits: list[Hit]) -> list[Hit]:
    """Drop later duplicates of the same passage (single-source mode)."""
    seen: set[str] = set()
    out = []
    for h in hits:
        if h.key not in seen:
            seen.add(h.key)
            out.append(h)
    return out
