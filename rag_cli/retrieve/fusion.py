"""Fusion of the sources' lists: standardised scores for the index, reciprocal rank fusion for peers.

:func:`fuse` is what a search uses (its docstring has the formulas). :func:`rrf` is plain Reciprocal
Rank Fusion: for every hit ``d`` and every source ``s`` that returned it at rank ``r_s(d)`` (1-based)::

    RRF(d) = sum_s  w_s / (k + r_s(d))          k = 60 by default

Duplicates (same key: chunk, url) are merged: the fused hit keeps the text of
its best-ranked occurrence and lists every source that found it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TypeVar

from ..types import Hit

K = TypeVar("K")


def rrf(
    ranked: dict[str, list[Hit]], *, k: int = 60, weights: dict[str, float] | None = None, limit: int | None = None
) -> list[Hit]:
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


TWIN_OVERLAP = 0.85  # share of the smaller passage's words the larger holds for the two to count as twins


def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"\w+", text.lower()) if len(w) > 1)


def _copies(a: Hit, b: Hit) -> bool:
    """Whether two hits of different files can be one document twice: the same name in two formats or places
    (``x.html`` and ``x.txt``, ``a/intro.md`` and ``b/intro.md``, a Sphinx page and its ``x.rst.txt``), or
    the same title with the passage at the same line (a copy under another name). Two different documents
    that share a passage (an included section, an option described on two pages) are not copies: each is a
    result of its own."""
    if a.path is None or b.path is None or a.path == b.path:
        return False
    if _base(a.path) == _base(b.path):
        return True
    return bool(a.title) and a.title == b.title and a.start_line is not None and a.start_line == b.start_line


def _base(path: str) -> str:
    """A file's name up to its first dot: ``x.rst.txt`` and ``x.html`` are both ``x``."""
    return path.replace("\\", "/").rsplit("/", 1)[-1].split(".", 1)[0].lower()


def collapse_twins(hits: list[Hit], limit: int | None = None) -> list[Hit]:
    """Drop a hit whose passage is near-identical to a better-ranked one of a copy of its document (the same
    page as ``x.html`` and ``x.txt``, a copy under two names: ``_copies``): it would fill a result slot with
    nothing new. The kept hit lists the others in ``extra["twins"]``. Two passages are twins when the larger
    holds at least ``TWIN_OVERLAP`` of the smaller's words (words of two or more characters, passages of 8
    words or more)."""
    kept: list[tuple[Hit, frozenset[str]]] = []
    for h in hits:
        words = _words(h.text)
        twin = None
        if len(words) >= 8:
            for other, ow in kept:
                if not _copies(other, h):
                    continue
                small, large = (words, ow) if len(words) <= len(ow) else (ow, words)
                if len(small) >= 8 and len(small & large) >= TWIN_OVERLAP * len(small):
                    twin = other
                    break
        if twin is not None:
            twin.extra.setdefault("twins", []).append(h.url or h.location)
            continue
        kept.append((h, words))
        if limit and len(kept) >= limit:
            break
    return [h for h, _ in kept]


def document_of(hit: Hit) -> str:
    """The document a passage belongs to: its file (and record id in a one-file collection), a remote page's
    address without its fragment, else the passage itself."""
    if hit.path:
        return f"{hit.path}\0{hit.doc_id or ''}"
    if hit.url:
        return hit.url.split("#", 1)[0]
    return hit.key


def by_document(hits: list[Hit], bonus: float, pool: int | None = None) -> list[Hit]:
    """Document-aware order of a ranked list: every document's best passage first, ranked by its own score
    plus ``bonus`` times the scores of the document's further passages in the list (each over the list's
    lowest), so that a document a chunker split into several matching passages is not ranked by one fragment;
    then the further passages in their own order. The passages stay the results (a citation points at the
    passage); each one's ``score`` becomes the score it is ranked by, so scores still fall down the list: a
    further passage's is its own lowered by the list's score range. ``bonus`` 0 returns ``hits`` as they are.

    ``pool``: only the first ``pool`` passages are ranked and lift their documents as above; of the passages
    after them, each further document's best follows the pool's documents in its own order (before any
    further passage), so that a few long documents filling the pool do not leave the list short of
    documents; their other passages are left out."""
    if bonus <= 0 or len(hits) < 2:
        return hits
    head, tail = (hits[:pool], hits[pool:]) if pool else (hits, [])
    lo = min(h.score for h in head)
    span = (max(h.score for h in head) - lo) or 1.0
    lead: dict[str, int] = {}
    support: dict[str, float] = {}
    for i, h in enumerate(head):
        doc = document_of(h)
        if doc in lead:
            support[doc] = support.get(doc, 0.0) + h.score - lo
        else:
            lead[doc] = i
    ranked = [
        replace(head[i], score=round(head[i].score + bonus * support.get(doc, 0.0), 6)) for doc, i in lead.items()
    ]
    ranked.sort(key=lambda h: -h.score)
    more: dict[str, Hit] = {}
    for h in tail:
        doc = document_of(h)
        if doc not in lead:
            more.setdefault(doc, h)
    if more:  # further passages go below the last further document's
        span += max(0.0, lo - min(h.score for h in more.values()))
    leads = set(lead.values())
    further = [replace(h, score=round(h.score - span, 6)) for i, h in enumerate(head) if i not in leads]
    return ranked + list(more.values()) + further


LOCAL_METHODS = ("dense", "bm25")
FUSIONS = ("zscore", "rrf")
# cosine similarities of one model are comparable across indexes; BM25 scores are not (idf and
# document lengths are each index's own: a one-document index scores every word near 0), unless every index
# scored with one collection's idf (a federated search's shared statistics, store/base.Collection)
BY_SCORE = frozenset({"dense"})


def fuse(
    lists: dict[str, list[Hit]],
    kinds: dict[str, str],
    weights: dict[str, float],
    *,
    k: int = 60,
    limit: int | None = None,
    method: str = "zscore",
    pooled: frozenset[str] = BY_SCORE,
) -> list[Hit]:
    """Fuse what every source returned so that each source is one fair voice.

    1. **The index**: the candidates of the local dense and BM25 lists and of every ``rag`` source
       (another index searched the same way, whose hits carry their per-method scores in
       ``source_scores``). With ``method = "zscore"`` (the default) every candidate has both scores
       (the local ones are completed by the fan-out: the cosine of a BM25-only hit, the BM25 score of
       a dense-only hit, 0 if it does not match), each standardised over the candidates::

           z_m(d)   = (s_m(d) - mean_m) / std_m
           index(d) = (w_dense * z_dense(d) + w_bm25 * z_bm25(d)) / (w_dense + w_bm25)

       Dense cosines of one model are comparable across indexes, so their mean and deviation are
       taken over the pooled candidates of all of them; BM25 scores are not (idf and lengths are each
       index's own), so they are standardised within each index, unless every index scored with one
       collection's statistics (a federated search's, store/base.Collection): ``pooled`` names the methods
       whose scores pool across indexes. A score still unknown counts as the lowest of its pool.
       ``method = "rrf"``: the pooled lists ranked per method (dense by cosine, BM25 by rank within each
       index) and ``index(d) = sum_m w_m / (k + rank_m(d))``.
    2. **Peers**: the index list and each other source (an ``http`` API with scores on its own scale,
       or a ``rag`` source whose hits carry no per-method scores) by weighted RRF::

           final(d) = w_index / (k + rank_index(d)) + sum_s  w_s / (k + rank_s(d))

       with w_index = 1, so a remote source's first hit stands level with the index's first.

    Duplicates merge at both levels. Each hit's ``source`` names where it came from (``dense+bm25``
    for a local chunk both lists returned, a remote source's name otherwise) and ``source_scores`` holds
    the raw score of every method and source that scored it.
    """
    pools: dict[str, list[tuple[float, Hit, str]]] = {m: [] for m in LOCAL_METHODS}
    method_weight = {m: 1.0 for m in LOCAL_METHODS}
    peers: dict[str, list[Hit]] = {}
    groups: dict[str, dict[str, tuple[Hit, dict[str, float]]]] = {}  # index -> key -> (hit, method scores)
    found: dict[str, list[str]] = {}
    standard: dict[str, float] = {}
    for name, hits in lists.items():
        kind = kinds.get(name, "http")
        if kind in pools:
            method_weight[kind] = weights.get(name, 1.0)
            pools[kind].extend((h.score, h, "") for h in hits)
            group = groups.setdefault("", {})
            for h in hits:
                per = _method_scores(h)
                per[kind] = h.score  # its own list's score stands
                held = group.get(h.key)
                group[h.key] = (held[0] if held else h, {**per, **(held[1] if held else {})})
                if kind not in found.setdefault(h.key, []):
                    found[h.key].append(kind)
            continue
        if kind == "rag":
            scored = {h.key: _method_scores(h) for h in hits}
            for h in hits:  # the other index's own standardised BM25 (over its candidates, as ours)
                z = _method_scores(h, "standard_scores").get("bm25")
                if z is not None:
                    standard[f"{name}\0{h.key}"] = z
            if any(scored.values()):
                group = groups.setdefault(name, {})
                for h in hits:
                    per = scored[h.key]
                    for m, v in per.items():
                        pools[m].append((v, h, name))
                    group.setdefault(h.key, (h, per))
                    if name not in found.setdefault(h.key, []):
                        found[h.key].append(name)
                continue
        peers[name] = hits
    if method == "rrf":
        index = _pooled({m: p for m, p in pools.items() if p}, method_weight, k)
    else:
        index = _standardised(groups, method_weight, found, standard, pooled)
    if not peers:
        return index[:limit] if limit else index
    return _peers({"index": index, **peers}, {"index": 1.0, **{n: weights.get(n, 1.0) for n in peers}}, k, limit)


def _method_scores(hit: Hit, field: str = "source_scores") -> dict[str, float]:
    per = hit.extra.get(field)
    if not isinstance(per, dict):
        return {}
    return {m: float(v) for m in LOCAL_METHODS if isinstance(v := per.get(m), int | float) and not isinstance(v, bool)}


def zscores(values: dict[K, float]) -> dict[K, float]:
    """``(v - mean) / std`` over ``values`` (population deviation; all 0 when it is 0)."""
    if not values:
        return {}
    n = len(values)
    mean = sum(values.values()) / n
    std = (sum((v - mean) ** 2 for v in values.values()) / n) ** 0.5
    return {key: (v - mean) / std if std > 0 else 0.0 for key, v in values.items()}


def _standardised(
    groups: dict[str, dict[str, tuple[Hit, dict[str, float]]]],
    weights: dict[str, float],
    found: dict[str, list[str]],
    standard: dict[str, float],
    pooled: frozenset[str] = BY_SCORE,
) -> list[Hit]:
    # dense: one pool over every index (one model's cosines are comparable); bm25: each index on its own,
    # a remote index's as it sent them (standardised over all of its candidates; we see its best few), or
    # pooled as dense when every index scored with one collection's idf.
    # Measured (bench/federated.py): standardising the pooled cosines with the local candidates' mean and
    # deviation instead came out 0.001 lower on Cranfield shards.
    dense = zscores(
        {f"{g}\0{key}": per["dense"] for g, hits in groups.items() for key, (_, per) in hits.items() if "dense" in per}
    )
    bm25 = _bm25_standardised(groups, standard, "bm25" in pooled)
    used = {m: z for m, z in (("dense", dense), ("bm25", bm25)) if z and weights.get(m, 1.0) > 0}
    floor = {m: min(z.values()) for m, z in used.items()}
    total = sum(weights.get(m, 1.0) for m in used) or 1.0
    scores: dict[str, float] = {}
    best: dict[str, tuple[int, Hit]] = {}
    raw: dict[str, dict[str, float]] = {}
    zs: dict[str, dict[str, float]] = {}
    order = 0
    for g, hits in groups.items():
        for key, (hit, per) in hits.items():
            gk = f"{g}\0{key}"
            z_of = {m: z.get(gk, floor[m]) for m, z in used.items()}
            s = sum(weights.get(m, 1.0) * z for m, z in z_of.items()) / total
            order += 1
            if key not in scores or s > scores[key]:
                scores[key] = s
                best[key] = (order, hit)
                zs[key] = {m: round(z, 6) for m, z in z_of.items()}
            into = raw.setdefault(key, {})
            for m, v in per.items():
                into[f"{g}.{m}" if g else m] = v
    out = _emit(scores, best, found, raw, None)
    for hit in out:  # what a federating rag takes as this index's own standardised scores
        hit.extra["standard_scores"] = zs[hit.key]
    return out


def _bm25_standardised(
    groups: dict[str, dict[str, tuple[Hit, dict[str, float]]]], standard: dict[str, float], pooled: bool
) -> dict[str, float]:
    """BM25 z-scores by ``index\0key``: over every index's candidates together when they scored with one
    collection's idf (``pooled``), else within each index (a remote one's as it sent them, when it did)."""

    def own(g: str, hits: dict[str, tuple[Hit, dict[str, float]]]) -> dict[str, float]:
        return {f"{g}\0{key}": per["bm25"] for key, (_, per) in hits.items() if "bm25" in per}

    if pooled:
        return zscores({gk: v for g, hits in groups.items() for gk, v in own(g, hits).items()})
    out: dict[str, float] = {}
    for g, hits in groups.items():
        sent = {f"{g}\0{key}": standard[f"{g}\0{key}"] for key in hits if f"{g}\0{key}" in standard}
        out.update(sent if g and len(sent) == len(hits) else zscores(own(g, hits)))
    return out


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


def _emit(
    scores: dict[str, float],
    best: dict[str, tuple[int, Hit]],
    found: dict[str, list[str]],
    raw: dict[str, dict[str, float]],
    limit: int | None,
) -> list[Hit]:
    order = sorted(scores, key=lambda key: (-scores[key], best[key][0]))
    out = []
    for key in order[:limit] if limit else order:
        hit = best[key][1]
        extra = dict(hit.extra)
        extra["sources"] = found[key]
        extra["source_scores"] = raw[key]
        out.append(replace(hit, score=round(scores[key], 6), source="+".join(found[key]), extra=extra))
    return out
