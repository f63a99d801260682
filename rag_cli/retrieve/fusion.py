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
    return _emit(scores, best, sources, raw, limit)


def dedupe(hits: list[Hit]) -> list[Hit]:
    """Drop later duplicates of the same passage (single-source mode)."""
    seen: set[str] = set()
    out = []
    for h in hits:
        if h.key not in seen:
            seen.add(h.key)
            out.append(h)
    return out


LOCAL_METHODS = ("dense", "bm25")
# cosine similarities of one model are comparable across indexes; BM25 scores are not (idf and
# document lengths are each index's own: a one-document index scores every word near 0)
BY_SCORE = frozenset({"dense"})


def fuse(lists: dict[str, list[Hit]], kinds: dict[str, str], weights: dict[str, float], *, k: int = 60,
         limit: int | None = None) -> list[Hit]:  # fmt: skip
    """Fuse what every source returned so that each source is one fair voice.

    1. **The index** (the local dense and BM25 lists, and every ``rag`` source, i.e. another index
       searched the same way): for each method m the hits of all of them are pooled and ranked by
       their m score, dense by its cosine similarity (comparable across indexes of one model), BM25
       by its rank within its own index (its scores are not comparable: idf and lengths are each
       index's own), ties by score; a ``rag`` hit carries its per-method scores in
       ``source_scores``. Then::

           index(d) = sum_m  w_m / (k + rank_m(d))        w_m: the local m source's weight

       So N shards of one corpus rank as one index holding all of it would.
    2. **Peers**: the index list and each other source (an ``http`` API with scores on its own scale,
       or a ``rag`` source whose hits carry no per-method scores) by weighted RRF::

           final(d) = w_index / (k + rank_index(d)) + sum_s  w_s / (k + rank_s(d))

       with w_index = 1, so a remote source's first hit stands level with the index's first.

    Duplicates merge at both levels. Each hit's ``source`` names where it came from (``dense+bm25``
    for a local chunk found by both, a remote source's name otherwise) and ``source_scores`` holds
    the raw score of every list that found it.
    """
    pools: dict[str, list[tuple[float, Hit, str]]] = {m: [] for m in LOCAL_METHODS}
    method_weight = {m: 1.0 for m in LOCAL_METHODS}
    peers: dict[str, list[Hit]] = {}
    for name, hits in lists.items():
        kind = kinds.get(name, "http")
        if kind in pools:
            method_weight[kind] = weights.get(name, 1.0)
            pools[kind].extend((h.score, h, "") for h in hits)
            continue
        if kind == "rag":
            scored = False
            for h in hits:
                per = h.extra.get("source_scores") if isinstance(h.extra.get("source_scores"), dict) else {}
                for m in LOCAL_METHODS:
                    v = per.get(m)
                    if isinstance(v, int | float) and not isinstance(v, bool):
                        pools[m].append((float(v), h, name))
                        scored = True
            if scored:
                continue
        peers[name] = hits
    index = _pooled({m: p for m, p in pools.items() if p}, method_weight, k)
    if not peers:
        return index[:limit] if limit else index
    return _peers({"index": index, **peers}, {"index": 1.0, **{n: weights.get(n, 1.0) for n in peers}}, k, limit)


def _pooled(pools: dict[str, list[tuple[float, Hit, str]]], weights: dict[str, float], k: int) -> list[Hit]:
    scores: dict[str, float] = {}
    best: dict[str, tuple[int, Hit]] = {}
    found: dict[str, list[str]] = {}
    raw: dict[str, dict[str, float]] = {}
    for m, pool in pools.items():
        if m in BY_SCORE:
            pool.sort(key=lambda t: -t[0])
        else:  # interleave the indexes' lists by rank, ties by score
            within: dict[str, int] = {}
            keyed = []
            for t in sorted(pool, key=lambda t: -t[0]):
                within[t[2]] = within.get(t[2], 0) + 1
                keyed.append((within[t[2]], -t[0], t))
            pool[:] = [t for _, _, t in sorted(keyed, key=lambda x: (x[0], x[1]))]
        seen: set[str] = set()
        for rank, (score, hit, origin) in enumerate(pool, start=1):
            key = hit.key
            if key in seen:
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + weights.get(m, 1.0) / (k + rank)
            label = origin or m
            if label not in found.setdefault(key, []):
                found[key].append(label)
            raw.setdefault(key, {})[f"{origin}.{m}" if origin else m] = score
            if key not in best or rank < best[key][0]:
                best[key] = (rank, hit)
    return _emit(scores, best, found, raw, None)


def _peers(ranked: dict[str, list[Hit]], weights: dict[str, float], k: int, limit: int | None) -> list[Hit]:
    scores: dict[str, float] = {}
    best: dict[str, tuple[int, Hit]] = {}
    found: dict[str, list[str]] = {}
    raw: dict[str, dict[str, float]] = {}
    for name, hits in ranked.items():
        seen: set[str] = set()
        for rank, hit in enumerate(hits, start=1):
            key = hit.key
            if key in seen:
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + weights.get(name, 1.0) / (k + rank)
            if name == "index":  # keep what the index level found
                labels = list(hit.extra.get("sources") or [hit.source])
                raw.setdefault(key, {}).update(hit.extra.get("source_scores") or {})
            else:
                labels = [name]
                raw.setdefault(key, {})[name] = hit.score
            for label in labels:
                if label not in found.setdefault(key, []):
                    found[key].append(label)
            if key not in best or rank < best[key][0]:
                best[key] = (rank, hit)
    return _emit(scores, best, found, raw, limit)


def _emit(scores: dict[str, float], best: dict[str, tuple[int, Hit]], found: dict[str, list[str]],
          raw: dict[str, dict[str, float]], limit: int | None) -> list[Hit]:  # fmt: skip
    order = sorted(scores, key=lambda key: (-scores[key], best[key][0]))
    out = []
    for key in order[:limit] if limit else order:
        hit = best[key][1]
        extra = dict(hit.extra)
        extra["sources"] = found[key]
        extra["source_scores"] = raw[key]
        out.append(replace(hit, score=round(scores[key], 6), source="+".join(found[key]), extra=extra))
    return out
