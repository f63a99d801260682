"""Answer quality on a QA file (``qa.jsonl``: ``question``, optional ``answers``, ``gold_paths``, ``unanswerable``).

Per backend (any, including ``none``):

* **contains**: an expected fact appears in the answer (answerable questions);
* **contains_written**: ... in what the model wrote, the evidence quoted after it left out (0 for ``none``);
* **contains_lead**: ... in what the answer opens with, its first paragraph (the model's first sentences,
  or the evidence quotes when they lead): what a reader sees first;
* **token_f1**: best SQuAD-style token F1 against ``answers``;
* **citation_precision**: of the cited passages, the share whose path ends with a ``gold_paths`` entry;
* **citation_validity**: the share of answers whose every [n] referred to a real passage;
* **groundedness**: the share of answer sentences that stand word for word in a passage the answer cites, or
  whose embedding has cosine similarity >= ``GROUNDED_AT`` (0.5) with one;
* **refusal**: the share of ``unanswerable`` questions the pipeline declined to answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import runtime
from ..config import Settings
from ..errors import LLMError, NoRelevantPassages, UsageError
from ..text import WORD
from .metrics import contains, percentile, token_f1

GROUNDED_AT = 0.5
_SENT = re.compile(r"(?<=[.!?])\s+")
CITE = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


def load(path: Path) -> list[dict[str, Any]]:
    items = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise UsageError(f"{path}:{n}: not JSON") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str):
            raise UsageError(f"{path}:{n}: every line needs a 'question'")
        items.append(obj)
    return items


_QUOTE_LINE = re.compile(r'^\s*(?:[-*]\s+)?"(.+)"\s*(?:\[\d+(?:\s*,\s*\d+)*\])+\s*$')


def sentences(answer: str) -> list[str]:
    """The answer's sentences of three words or more, citations out; a quoted line (``- "..." [n]``) is one
    sentence whatever periods it holds (it is a passage's own sentence), and a heading ("Evidence:") none."""
    out: list[str] = []
    for line in answer.splitlines():
        parts = [m.group(1)] if (m := _QUOTE_LINE.match(line)) else _SENT.split(line)
        out += [s for s in (CITE.sub("", x).strip(" ,;\"'") for x in parts) if len(s.split()) >= 3]
    return out


def grounded(answer: str, cited: list[Any], embedder: Any) -> list[tuple[str, bool, bool]] | None:
    """Each of the answer's sentences and whether a cited passage supports it: (sentence, its cosine with one is
    >= GROUNDED_AT, it stands in one word for word: a quote, or a sentence the model copied, which the passage
    says). None when the answer has no sentence, [] when it cites nothing."""
    sents = sentences(answer)
    if not sents:
        return None
    if not cited:
        return []
    s_vecs = embedder.embed(sents)
    p_vecs = embedder.embed([h.text for h in cited])
    sims = s_vecs @ p_vecs.T
    held = [f" {_words(h.text)} " for h in cited]
    return [(s, bool(m >= GROUNDED_AT), verbatim(s, held)) for s, m in zip(sents, sims.max(axis=1), strict=True)]


def _words(text: str) -> str:
    return " ".join(WORD.findall(text.lower()))


def verbatim(sentence: str, held: list[str]) -> bool:
    """Whether ``sentence`` stands word for word in one of ``held`` (passages as :func:`_words` gives them,
    space-padded): a cosine with a whole passage can miss its own sentence (a long passage's vector is
    about all of it). A quote led by its term ("octopus … This is the default ...") stands in parts."""
    parts = [f" {w} " for w in (_words(p) for p in sentence.split("…")) if w]
    return bool(parts) and any(all(p in h for p in parts) for h in held)


async def _one(item: dict[str, Any], retrieval: Any, settings: Settings, backend: str, embedder: Any) -> dict[str, Any]:
    from ..pipeline.answer import answer
    from ..pipeline.verify import REPEATED

    row: dict[str, Any] = {"question": item["question"], "unanswerable": bool(item.get("unanswerable"))}
    result = None
    try:
        async for ev in answer(item["question"], retrieval, settings, backends=[backend]):
            if ev.kind == "done":
                result = ev.data
    except NoRelevantPassages:
        result = None
    except LLMError as exc:
        row["error"] = exc.message
    row["refused"] = result is None and "error" not in row
    text = result.answer if result is not None else ""
    row["answer"] = text
    if result is not None:
        row["first_token_ms"] = result.timings.get("first_token_ms")
        row["first_draft_ms"] = result.timings.get("first_draft_ms")  # words on a terminal, before checking
        row["first_text_ms"] = result.timings.get("first_text_ms")
        row["verified"] = [v.verified for v in result.sentences]
        # what the model wrote, without the evidence quoted after it (or as it: --llm none); unverified, all of it
        if result.sentences:
            row["written"] = " ".join(v.text for v in result.sentences if not v.quoted)
        else:
            row["written"] = "" if result.backend == "none" else text
        row["total_ms"] = result.timings.get("total_ms")
        row["valid_citations"] = not result.invalid_citations
        cited = [result.sources[n - 1] for n in result.citations if 0 < n <= len(result.sources)]
        gold = item.get("gold_paths") or []
        if cited and gold:
            row["citation_precision"] = sum(1 for h in cited if any((h.path or "").endswith(g) for g in gold)) / len(
                cited
            )
        g = await runtime.run_blocking(grounded, text, cited, embedder)
        if g is not None:
            row["groundedness"] = sum(near or same for _, near, same in g) / len(g) if g else 0.0
            row["ungrounded"] = [s for s, near, same in g if not (near or same)]
            # the cosine alone (the measure before 2026-12-07), and the sentences it missed that stand word for word
            row["groundedness_cosine"] = sum(near for _, near, _ in g) / len(g) if g else 0.0
            row["grounded_verbatim_only"] = [s for s, near, same in g if same and not near]
    answers = item.get("answers") or []
    if not row["unanswerable"] and answers:
        row["contains"] = contains(text, answers)
        row["contains_written"] = contains(row.get("written", ""), answers)
        row["contains_lead"] = contains(text.strip().split("\n\n", 1)[0], answers)
        row["token_f1"] = max(token_f1(text, a) for a in answers)
        if result is not None:  # where an expected fact was lost: not retrieved, not in the evidence, not written
            # every passage retrieved (in this process), else the prompt's (an answer from a warm server)
            row["in_passages"] = contains(" ".join(h.text for h in result.retrieved or result.sources), answers)
            row["in_evidence"] = (
                contains(" ".join(e.get("text", "") for e in result.evidence), answers)
                if result.evidence
                else row["in_passages"]
            )
            # a sentence left out as a repeat of one shown is not lost
            correct = [
                d for d in result.dropped if contains(d.get("text", ""), answers) and d.get("reason") != REPEATED
            ]
            row["dropped_correct"] = len(correct)
            row["dropped_correct_texts"] = correct  # to read why verification left them out
    return row


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in rows if r.get(key) is not None]
    return round(sum(vals) / len(vals), 4) if vals else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in rows if not r["unanswerable"]]
    unanswerable = [r for r in rows if r["unanswerable"]]
    answered = [r for r in rows if r.get("answer")]
    return {
        "contains": _mean(answerable, "contains"),
        "contains_written": _mean(answerable, "contains_written"),
        "contains_lead": _mean(answerable, "contains_lead"),
        "token_f1": _mean(answerable, "token_f1"),
        "citation_precision": _mean(answered, "citation_precision"),
        "citation_validity": _mean(answered, "valid_citations"),
        "groundedness": _mean(answered, "groundedness"),
        "refusal": _mean(unanswerable, "refused"),
        "false_refusal": _mean(answerable, "refused"),
    }


def run_qa(
    path: Path, settings: Settings, backends: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, Any]]:
    from ..embed import base as embed_base
    from ..retrieve.service import Retrieval

    items = load(path)
    embedder = embed_base.create(settings)

    async def go() -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, Any]]:
        summaries: dict[str, dict[str, Any]] = {}
        per: dict[str, list[dict[str, Any]]] = {}
        latency: dict[str, Any] = {}
        async with Retrieval(replace(settings, retrieve_timeout=max(settings.retrieve_timeout, 60.0))) as r:
            await r.prepare()
            for backend in backends:
                rows = [await _one(item, r, settings, backend, embedder) for item in items]
                per[backend] = rows
                summaries[backend] = summarize(rows)
                ft = [x["first_token_ms"] for x in rows if x.get("first_token_ms")]
                tt = [x["total_ms"] for x in rows if x.get("total_ms")]
                latency[backend] = {
                    "first_token": {"p50": percentile(ft, 50), "p95": percentile(ft, 95)},
                    "total": {"p50": percentile(tt, 50), "p95": percentile(tt, 95)},
                }
        return summaries, per, latency

    return runtime.run(go(), workers=settings.effective_workers())
