"""Further passages of the documents an answer draws on.

A search finds the right document more often than the passage of it that holds the fact (on the Git manual's
questions: the page among the first five for all of them, the fact in the first ten passages for 37 of 45).
The page's other passages that answer the question's words were outranked by other pages' near misses: a
``git archive`` question finds git-archive's options, not its ATTRIBUTES section's ``export-ignore``. So an
answer also takes, from each of its first few documents (``[answer] further_documents``), the :data:`EACH` best
passages of that document it does not hold yet, ranked within the document by its dense and BM25 scores each
standardised over the document's passages (fusion.zscores, on one document's scale). They come after the
retrieved passages; evidence selection decides what of them reaches the reader.

Only the index's own passages (a remote source's have no document here), and only documents of at most
:data:`LARGEST` passages (a whole corpus in one file, such as a BEIR ``corpus.jsonl``, is not one document).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..types import Hit
from .fusion import LOCAL_METHODS, zscores

EACH = 2  # passages taken from each document
LARGEST = 5000  # a "document" of more passages is a collection; it is left alone
SOURCE = "document"  # what a further passage says it came from


def _own(hit: Hit) -> bool:
    """Whether ``hit`` is a passage of this index (its dense or BM25 search found it)."""
    return bool(hit.path) and hit.chunk_id is not None and set(hit.source.split("+")) <= set(LOCAL_METHODS)


def further_passages(
    reader: Any, query: str, query_vec: Any, hits: Sequence[Hit], documents: int, each: int = EACH
) -> list[Hit]:
    """The best passages of ``hits``' first ``documents`` documents that ``hits`` does not hold, ``each`` per
    document, in document rank order (blocking: run it on the pool). ``query_vec``: the query's vector in this
    index's model, or None (BM25 alone ranks them)."""
    if documents <= 0 or each <= 0:
        return []
    held = {h.chunk_id for h in hits}
    firsts: list[Hit] = []
    for h in hits:
        if _own(h) and all((f.path, f.doc_id) != (h.path, h.doc_id) for f in firsts):
            firsts.append(h)
            if len(firsts) >= documents:
                break
    floor = min((h.score for h in hits), default=0.0)
    out: list[Hit] = []
    for first in firsts:
        rows = reader.document(first.path)
        if len(rows) > LARGEST:
            continue
        ids = [r["chunk_id"] for r in rows if r["chunk_id"] not in held and r.get("doc_id") == first.doc_id]
        if not ids:
            continue
        scores = reader.scores_for(ids, query_vec, query)
        methods = LOCAL_METHODS if query_vec is not None else ("bm25",)
        parts = [zscores({i: scores[i].get(m, 0.0) for i in ids}) for m in methods]
        best = sorted(ids, key=lambda i: -sum(p[i] for p in parts))[:each]
        for h in reader.hits([(i, floor) for i in best], SOURCE):
            out.append(replace(h, extra={**h.extra, "further_of": first.location}))
    return out
