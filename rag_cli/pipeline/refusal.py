"""The checks that decline a question before any model is called (``rag ask`` exits 7): nothing relevant
(the best dense similarity under ``[answer] min_score``), a name that no document holds as written, and
passages whose best evidence sentence scores under ``[answer] min_evidence`` (calibrated by bench/refusal.py)."""

from __future__ import annotations

import re
from typing import Any

from .. import runtime
from ..config import Settings
from ..errors import NoRelevantPassages
from ..text import names_in
from ..types import Hit
from .evidence import Sentence, score, section_term


def relevant(hits: list[Hit], min_similarity: float, best_dense: float | None = None) -> list[Hit]:
    """The hits worth answering from; [] when the question looks unrelated to the index.

    When dense search ran, the best dense cosine similarity over the whole index (``best_dense``,
    else the best among ``hits``) must reach ``min_similarity``, else nothing is relevant: keyword
    hits on an off-topic question (its few words appear somewhere) do not make it answerable.
    Hits that dense scored below the threshold are dropped; hits only keyword search found are kept;
    without a dense source (``--mode bm25``, remote only) every hit is kept.
    """
    dense = [h.extra.get("source_scores", {}).get("dense", h.score if h.source == "dense" else None) for h in hits]
    scored = [d for d in dense if d is not None] + ([best_dense] if best_dense is not None else [])
    if scored and max(scored) < min_similarity:
        return []
    return [h for h, d in zip(hits, dense, strict=True) if d is None or d >= min_similarity]


async def evidence_gate(question: str, hits: list[Hit], embed: Any, settings: Settings) -> list[Sentence] | None:
    """The passages' sentences scored against the question (rag_cli/pipeline/evidence.py), or None without sentence
    embeddings (neither this process's model nor a server's /embed: the score's scale is the model's). Raises
    NoRelevantPassages when even the best sentence scores under ``[answer] min_evidence``: the passages
    share words and topic with the question but none says anything close to an answer."""
    if embed is None:
        return None
    texts, sections = [h.text for h in hits], [section_term(h.heading) for h in hits]
    scored = await runtime.run_blocking(score, question, texts, embed, sections, stage="evidence")
    best = max((s.score for s in scored), default=0.0)
    if best < settings.answer_min_evidence:
        raise NoRelevantPassages(
            f"no passage of index {settings.index!r} comes close to answering {question!r} (best evidence "
            f"sentence scores {shown_under(best, settings.answer_min_evidence)}, under [answer] min_evidence "
            f"{settings.answer_min_evidence:g}); "
            "not answering rather than guessing",
            hint="rephrase, index documents about it, or lower [answer] min_evidence",
        )
    return scored


def shown_under(value: float, limit: float) -> str:
    """``value`` with as many decimals as it takes to read as under ``limit`` (0.397 under 0.4 is "0.397", not
    "0.40")."""
    digits = 2
    while digits < 6 and round(value, digits) >= limit:
        digits += 1
    return f"{value:.{digits}f}"


def _holds(text: str, word: str) -> bool:
    """``word`` appears in ``text`` as a word of its own ("3.0" is not in "v2.13.0"), case aside."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


async def names_gate(retrieval: Any, question: str, hits: list[Hit], settings: Settings) -> None:
    """Raises NoRelevantPassages when the question names something no document holds, or something only
    a few documents hold and none of the passages retrieved for it (:func:`unknown_names`)."""
    unknown, uncovered = await unknown_names(retrieval, question, hits)
    if unknown:
        raise NoRelevantPassages(
            f"{', '.join(repr(w) for w in unknown)} {'appears' if len(unknown) == 1 else 'appear'} in no document of "
            f"index {settings.index!r}; not answering rather than guessing",
            hint="index documents about it, or rephrase",
        )
    if uncovered:
        raise NoRelevantPassages(
            f"the passages found for {question!r} in index {settings.index!r} never mention "
            f"{', '.join(repr(w) for w in uncovered)}: they cover only the rest of the question; "
            "not answering rather than guessing",
            hint="rephrase, or index documents about it",
        )


# a name held by under this share of the chunks distinguishes what it is about (a product, a version): when
# the question names it and no retrieved passage holds it, they answer only the question's generic part.
# A name the collection holds throughout (its own subject: "Git" in the Git manual) need not be repeated.
DISTINGUISHING_SHARE = 0.01


async def unknown_names(retrieval: Any, question: str, hits: list[Hit]) -> tuple[list[str], list[str]]:
    """Names of the question (:func:`names_in`) that no retrieved passage holds, split in two: those no
    chunk of the local index holds at all (it asks about something the index does not know), and those
    only a few chunks hold (under :data:`DISTINGUISHING_SHARE`) and the search did not find. ([], [])
    without a local index (remote passages alone)."""
    reader = retrieval.reader
    names = [w for w in names_in(question) if not any(_holds(h.text, w) for h in hits)]
    if reader is None or not names:
        return [], []
    most = max(1, int(reader.count * DISTINGUISHING_SHARE))
    held = await runtime.run_blocking(reader.chunks_holding, names, most, stage="names")
    return [w for w, n in zip(names, held, strict=True) if n == 0], [
        w for w, n in zip(names, held, strict=True) if 0 < n < most
    ]
