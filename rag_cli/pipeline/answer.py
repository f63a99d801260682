"""The answer pipeline shared by ``rag ask``, ``rag chat`` and ``rag eval``.

question -> retrieval fan-out -> relevance check -> prompt with numbered sources
-> LLM token stream (with a fallback chain) -> citation check -> result.

It is an async generator of :class:`Event` objects so every front end (live
Markdown on a TTY, plain text in a pipe, JSON Lines, the chat REPL) renders the
same stream: ``sources``, then ``token``s, ``warning``s, and one ``done``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from typing import Any

from .. import runtime
from ..config import Settings
from ..errors import LLMError, NoRelevantPassages
from ..llm import base as llm_base
from ..retrieve.base import Retriever
from ..retrieve.fanout import SearchResult
from ..text import folded, loop_cut
from ..types import Degradation, Hit
from .evidence import (
    PROMPT_VERSION,
    LeadJudge,
    Sentence,
    hosts_of,
    joined,
    lead_judge,
    quotes,
    remembering,
    score,
    section_term,
    select,
    with_section,
)
from .prompting import CitationFilter, build_prompt, context_hits
from .refusal import evidence_gate, names_gate, relevant
from .verify import Checked, SentenceStream, Verifier, claim_of


@dataclass
class Event:
    kind: str  # "sources" | "token" | "warning" | "done"
    data: Any


@dataclass
class AnswerResult:
    question: str
    answer: str = ""
    citations: list[int] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    sources: list[Hit] = field(default_factory=list)
    degraded: list[Degradation] = field(default_factory=list)
    backend: str = ""
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    complete: bool = True
    query: str = ""
    sentences: list[Any] = field(default_factory=list)  # verify.Verdict, one per answer sentence
    # sentences left out, {"text", "reason": "restates the question" | "no source supports it", "support"}
    dropped: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)  # what the prompt held, per passage
    # every passage retrieved for the answer, the prompt's and those it left out (no evidence, no room); kept in
    # this process for `rag eval` (where a fact was lost), not sent: `sources` are what the answer cites from
    retrieved: list[Hit] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def source_dicts(self) -> list[dict[str, Any]]:
        return [source_dict(n, h) for n, h in enumerate(self.sources, start=1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "query": self.query,  # what was searched: the question, or a follow-up condensed with earlier turns
            "answer": self.answer,
            "citations": self.citations,
            "invalid_citations": self.invalid_citations,
            "sources": self.source_dicts(),
            "degraded": [d.to_dict() for d in self.degraded],
            "backend": self.backend,
            "fallbacks": self.fallbacks,
            "complete": self.complete,
            "verified": all(v.verified for v in self.sentences) if self.sentences else None,
            "sentences": [v.to_dict() for v in self.sentences],
            "dropped": self.dropped,
            "provenance": {**self.provenance, "evidence": self.evidence},
            "timings": self.timings,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnswerResult:
        """The result a warm ``rag serve`` sent as :meth:`to_dict` (its ``/ask`` ``done`` event)."""
        from .verify import Verdict

        def ints(key: str) -> list[int]:
            return [int(n) for n in d.get(key) or [] if isinstance(n, int)]

        prov = dict(d.get("provenance") or {})
        evidence = prov.pop("evidence", None) or []
        verdicts = [
            Verdict(
                text=str(v.get("text", "")),
                citations=[int(n) for n in v.get("citations") or []],
                verified=bool(v.get("verified")),
                support=float(v.get("support") or 0.0),
                recited=bool(v.get("recited")),
                restates=bool(v.get("restates")),
                quoted=bool(v.get("quoted")),
            )
            for v in d.get("sentences") or []
        ]
        return cls(
            question=str(d.get("question") or ""),
            query=str(d.get("query") or ""),
            answer=str(d.get("answer") or ""),
            citations=ints("citations"),
            invalid_citations=ints("invalid_citations"),
            sources=[Hit.from_dict(h, keep_extra=False) for h in d.get("sources") or []],
            degraded=[Degradation(str(x.get("source")), str(x.get("reason"))) for x in d.get("degraded") or []],
            backend=str(d.get("backend") or ""),
            fallbacks=list(d.get("fallbacks") or []),
            timings={k: float(v) for k, v in (d.get("timings") or {}).items() if isinstance(v, int | float)},
            complete=bool(d.get("complete", True)),
            sentences=verdicts,
            dropped=list(d.get("dropped") or []),
            evidence=list(evidence),
            provenance=prov,
        )


def jsonl_event(ev: Event) -> dict[str, Any]:
    """An answer event as `rag ask --jsonl` prints it (and `rag serve`'s /ask streams it)."""
    if ev.kind == "sources":
        return {"event": "sources", "sources": ev.data}
    if ev.kind in ("token", "draft"):
        return {"event": ev.kind, "text": ev.data}
    if ev.kind == "verdict":
        return {"event": "verdict", **ev.data}
    if ev.kind == "warning":
        return {"event": "warning", "message": ev.data}
    return {"event": "done", **ev.data.to_dict()}


def source_dict(n: int, h: Hit) -> dict[str, Any]:
    return {
        "n": n,
        "path": h.path,
        "title": h.title,
        "url": h.url,
        "score": h.score,
        "location": h.location,
        "heading": list(h.heading),
        "start_line": h.start_line,
        "end_line": h.end_line,
        "page": h.page,
        "doc_id": h.doc_id,
    }


def answer_k(settings: Settings) -> int:
    """Passages searched for an answer: ``[answer] k``, or by default 10 with evidence, 5 without."""
    return settings.answer_k or (10 if settings.answer_evidence else 5)


def chain(settings: Settings) -> list[str]:
    names = [settings.llm_backend, *settings.llm_fallback]
    out: list[str] = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return out


async def answer(
    question: str,
    retrieval: Retriever,
    settings: Settings,
    *,
    k: int | None = None,
    mode: str | None = None,
    backends: list[str] | None = None,
    extra_context: str = "",
    query: str | None = None,
    services: dict[str, Any] | None = None,
    context_name: str = "stdin",
    filter: Any = None,
) -> AsyncGenerator[Event, None]:
    """Answer ``question`` (retrieving with ``query`` if given, e.g. a condensed follow-up).

    ``extra_context`` (``--context``) becomes the first numbered passages, cited and verified like the
    index's; with a retrieval that has no sources (``--no-index``) they are all there is. The backends of the
    chain are tried in turn until one answers; one that fails before its first token hands over to the next."""
    t0 = time.perf_counter()
    result = AnswerResult(question=question, query=query or question)
    hits, embed, scored = await _passages(
        question,
        query,
        retrieval,
        settings,
        result,
        k=k,
        mode=mode,
        filter=filter,
        given=context_hits(extra_context, context_name),
    )
    result.retrieved = list(hits)
    services = {"http": retrieval.http, **(services or {})}  # rag serve adds its generation slot ("replica")
    for name in backends or chain(settings):
        backend = llm_base.create(name, settings, services)
        try:
            prompt, kept, judge = await _prepared(question, hits, backend, settings, embed, scored, result)
        except LLMError as exc:
            result.fallbacks.append({"backend": name, "reason": exc.message})
            yield Event("warning", f"LLM backend {name} unavailable: {exc.message}; trying the next")
            continue
        _record_prompt(result, name, backend, prompt, kept, settings)
        yield Event("sources", result.source_dicts())
        run = _Stream(result, backend, prompt, settings, _checker(settings, kept, embed, question), len(kept), t0)
        run.judge = judge if settings.answer_lead == "auto" and not backend.quotes else None
        try:
            async with contextlib.aclosing(run.generate()) as events:  # a consumer that leaves closes it now
                async for ev in events:
                    yield ev
        except llm_base.BackendFailed as exc:
            if not exc.started and not run.started:
                result.fallbacks.append({"backend": name, "reason": exc.reason})
                yield Event("warning", f"LLM backend {name} failed before answering: {exc.reason}; trying the next")
                continue
            result.complete = False
            yield Event("warning", f"answer cut short: {exc.reason}")
        async with contextlib.aclosing(run.finish(name)) as events:
            async for ev in events:
                yield ev
        return
    raise LLMError(
        "every LLM backend failed: " + "; ".join(f"{f['backend']}: {f['reason']}" for f in result.fallbacks),
        hint="check --llm, --base-url and --model, or use --llm none",
    )


async def _passages(
    question: str,
    query: str | None,
    retrieval: Retriever,
    settings: Settings,
    result: AnswerResult,
    *,
    k: int | None,
    mode: str | None,
    filter: Any,
    given: list[Hit],
) -> tuple[list[Hit], Any, list[Sentence] | None]:
    """Search, then the gates that decline before any model (NoRelevantPassages): (the passages to answer
    from, the context given with the question first; the sentence embedder; the scored evidence sentences)."""
    if retrieval.fanout is not None and not retrieval.fanout.sources:
        res = SearchResult(query or question, mode or settings.retrieve_mode, [])  # --no-index: the context alone
    else:
        # evidence in the fused passage order: a page's further passages often hold the fact, and document order
        # (search results) put them behind other pages' first ones: contains 0.42 vs 0.49 on gitdocs (bench/answer.py)
        res = await retrieval.search(
            query or question, k=k or answer_k(settings), mode=mode, filter=filter, documents=False
        )
    result.degraded = res.degraded
    for name, ms in res.timings.items():  # this query's own: "embed" is its query vector's time
        result.timings["retrieve_ms" if name == "total" else f"{name}_ms"] = ms
    hits = relevant(res.hits, settings.answer_min_score, res.best.get("dense"))
    # the gates judge what was searched: a follow-up ("and what about b?") condensed with the turns before it
    asked = query or question
    if hits and not given:
        await names_gate(retrieval, asked, hits, settings)
    embed = remembering(retrieval.sentence_embedder())
    if hits and not given:
        hits = hits + await _further(retrieval, asked, hits, embed, settings, result, mode)
    t_evidence = time.perf_counter()
    scored = await evidence_gate(asked, hits, embed, settings) if hits and not given else None
    result.timings["evidence_ms"] = round((time.perf_counter() - t_evidence) * 1000, 2)
    hits = given + hits  # the context given with the question comes first: [1], [2], ...
    if not hits:
        raise NoRelevantPassages(
            f"no relevant passage for {question!r} in index {settings.index!r}; not answering rather than guessing",
            hint="rephrase, raise -k, or index more documents",
        )
    result.provenance = provenance(retrieval, settings)
    if scored:
        result.provenance["best_evidence"] = round(max(s.score for s in scored), 4)
        result.provenance["min_evidence"] = settings.answer_min_evidence
    return hits, embed, scored


async def _further(
    retrieval: Retriever,
    query: str,
    hits: list[Hit],
    embed: Any,
    settings: Settings,
    result: AnswerResult,
    mode: str | None,
) -> list[Hit]:
    """The further passages of the answer's first documents (retrieve/within.py), from this process's index or
    a warm server's, timed."""
    if settings.answer_further_documents <= 0:
        return []
    t0 = time.perf_counter()
    dense = embed is not None and (mode or settings.retrieve_mode) != "bm25"
    # the question's vector, remembered: evidence scoring embeds it again at no cost
    vec = (await runtime.run_blocking(lambda: embed([query]), stage="embed"))[0] if dense else None
    more: list[Hit] = await retrieval.further(query, hits, settings.answer_further_documents, mode=mode, vector=vec)
    result.timings["further_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    return more


async def _prepared(
    question: str,
    hits: list[Hit],
    backend: Any,
    settings: Settings,
    embed: Any,
    scored: list[Sentence] | None,
    result: AnswerResult,
) -> tuple[Any, list[Hit], LeadJudge | None]:
    """The backend loaded and its prompt built (both on the pool), timed; LLMError when it cannot be."""
    t_load = time.perf_counter()
    await runtime.run_blocking(backend.load, stage="llm_load")
    result.timings["llm_load_ms"] = round((time.perf_counter() - t_load) * 1000, 2)
    t_prompt = time.perf_counter()
    prompt, kept, judge = await runtime.run_blocking(
        lambda: _prompt(question, hits, backend, settings, embed, scored), stage="prompt"
    )
    result.timings["prompt_ms"] = round((time.perf_counter() - t_prompt) * 1000, 2)
    return prompt, kept, judge


def _record_prompt(
    result: AnswerResult, name: str, backend: Any, prompt: Any, kept: list[Hit], settings: Settings
) -> None:
    """What the answer is made from: its sources, backend, model, prompt version and evidence."""
    result.sources = kept
    result.provenance["backend"] = name
    result.provenance["model"] = backend.describe()
    used_evidence = settings.answer_evidence and backend.wants_evidence
    result.provenance["prompt"] = PROMPT_VERSION if used_evidence else "passages-1"
    if used_evidence:
        result.evidence = [
            {"n": n, "path": h.path, "url": h.url, "location": h.location, "text": p.text}
            for n, (h, p) in enumerate(zip(kept, prompt.passages, strict=True), start=1)
        ]


def _checker(settings: Settings, kept: list[Hit], embed: Any, question: str) -> SentenceStream | None:
    """The sentence checker of ``[answer] verify`` (None when it is off)."""
    if not settings.answer_verify:
        return None
    return SentenceStream(
        Verifier([with_section(h.text, h.heading) for h in kept], embed, question, hosts_of([h.url for h in kept])),
        drop_unverified=settings.answer_unverified == "drop",
    )


class _Stream:
    """One backend's answer as it streams: citations checked, loops cut, sentences verified (drafts shown at
    once, verdicts after), then the evidence quoted and the result completed."""

    def __init__(
        self,
        result: AnswerResult,
        backend: Any,
        prompt: Any,
        settings: Settings,
        checker: SentenceStream | None,
        n_passages: int,
        t0: float,
    ) -> None:
        self.result, self.backend, self.prompt, self.settings, self.checker, self.t0 = (
            result,
            backend,
            prompt,
            settings,
            checker,
            t0,
        )
        self.filt = CitationFilter(n_passages)
        self.pieces: list[str] = []
        self.t_gen = self.t_first = time.perf_counter()
        self.n_tokens = 0
        self.started = False
        self.seen = ""  # the text so far, to catch the model looping ("remove remove remove ...")
        # [answer] lead = auto: the evidence quoted ahead of a first sentence that does not answer as well as it
        self.judge: LeadJudge | None = None
        self.lead: str | None = None  # "answer" | "evidence": what the answer opens with, once known
        self._weak: Checked | None = None  # the sentence the evidence is to be quoted before

    def _ms(self) -> float:
        return round((time.perf_counter() - self.t0) * 1000, 2)

    async def generate(self) -> AsyncGenerator[Event, None]:
        async with contextlib.aclosing(self.backend.stream(self.prompt)) as gen:
            async for ev in self._pieces(gen):
                yield ev

    async def _pieces(self, gen: Any) -> AsyncGenerator[Event, None]:
        prefix_sent = False
        async for piece in gen:
            if not prefix_sent and self.backend.completion and self.prompt.prefix:
                piece = self.prompt.prefix + piece
                prefix_sent = True
            if not self.started:
                self.result.timings["first_token_ms"] = self._ms()
                self.t_first = time.perf_counter()
                self.started = True
            self.n_tokens += 1
            text, looped = self._cut_loop(self.filt.feed(piece))
            if text:
                self.result.timings.setdefault("first_draft_ms", self._ms())
            async for ev in self._show(text, looped):
                yield ev
            if looped:
                await gen.aclose()  # ends generation now (the local model stops at its next token)
                yield Event("warning", "the model began repeating itself; its answer is cut there")
                break

    def _cut_loop(self, text: str) -> tuple[str, bool]:
        """``text`` without what repeats once the answer so far falls into a loop, and whether it did."""
        self.seen += text
        cut = loop_cut(self.seen)
        if cut is None or cut >= len(self.seen):
            return text, False
        return text[: max(0, len(text) - (len(self.seen) - cut))], True

    async def _show(self, text: str, looped: bool) -> AsyncGenerator[Event, None]:
        if self.checker is None:
            if text:
                self.result.timings.setdefault("first_text_ms", self.result.timings["first_draft_ms"])
                self.pieces.append(text)
                yield Event("token", text)
            return
        # the text as the model writes it (a terminal shows it at once, dimmed, until checked), then each
        # completed sentence's verdict and what the answer shows of it
        if text:
            yield Event("draft", text)
        done = self.checker.push(text)
        if looped and (held := self.checker.abandon()).strip():
            why = "the model fell into a loop writing it"  # with verification, the sentence it broke off goes too
            self.result.dropped.append({"text": held.strip(), "support": 0.0, "reason": why})
            yield Event("verdict", {"raw": held, "text": "", "shown": False, "verified": False, "reason": why})
        checked = (
            await runtime.run_blocking(self._checked, self.checker.check_each, done, stage="verify") if done else []
        )
        for ev in self._events(checked):
            yield ev

    def _checked(self, check: Any, text: Any) -> list[Checked]:
        """``check(text)``'s checked sentences (on the pool), and what the answer opens with decided at its first
        shown claim: the model's sentence when it answers as well as the evidence (:class:`LeadJudge`), else the
        evidence, quoted ahead of it."""
        checked: list[Checked] = check(text)
        if self.lead is not None:
            return checked
        for c in checked:
            v = c.verdict
            if v is None or not c.shown.strip() or not v.claim:
                continue
            if self.judge is None or (v.verified and self.judge.answers(claim_of(v.text))):
                self.lead = "answer"
            else:
                self.lead, self._weak = "evidence", c
            break
        return checked

    def _events(self, checked: list[Checked]) -> list[Event]:
        """A ``verdict`` event for each checked sentence, each followed by a ``token`` event with what the answer
        shows of it (none when it is left out), the evidence quoted before the sentence it leads: the tokens
        joined are the answer."""
        out = []
        for c in checked:
            out.append(Event("verdict", c.to_dict()))
            if c is self._weak and self.checker is not None:
                self._weak = None
                if block := _quote_block(self.prompt, "", self.checker, False, before=c.verdict):
                    out.append(self._token(block + "\n\n"))
            if c.shown.strip():  # (the space after a sentence left out is left out with it)
                out.append(self._token(c.shown))
        return out

    def _token(self, text: str) -> Event:
        self.result.timings.setdefault("first_text_ms", self._ms())
        self.pieces.append(text)
        return Event("token", text)

    async def finish(self, name: str) -> AsyncGenerator[Event, None]:
        """The held-back end checked, the evidence quoted, the result completed, and its ``done`` event."""
        result = self.result
        tail = self.filt.flush()
        if self.checker is not None:
            if tail:
                yield Event("draft", tail)
            checked = await runtime.run_blocking(self._checked, self.checker.finish_each, tail, stage="verify")
            for ev in self._events(checked):
                yield ev
            tail, warning = self._quotes()
            if warning:
                yield Event("warning", warning)
        if tail:
            yield self._token(tail)
        gen_s = time.perf_counter() - (self.t_first if self.started else self.t_gen)
        result.backend = name
        result.answer = "".join(self.pieces).strip()
        result.provenance["lead"] = self.lead if result.answer else None
        result.citations = self.filt.valid
        if self.checker is not None:  # re-cited sentences cite what supports them
            result.citations = list(dict.fromkeys(n for v in self.checker.verdicts for n in v.citations))
        result.invalid_citations = self.filt.invalid
        if self.filt.invalid:
            yield Event("warning", f"removed citations to passages that do not exist: {self.filt.invalid}")
        n = self.n_tokens
        result.timings["tokens"] = n
        result.timings["tokens_per_s"] = round((n - 1) / gen_s, 1) if gen_s > 0 and n > 1 else 0.0
        result.timings["total_ms"] = self._ms()
        yield Event("done", result)

    def _quotes(self) -> tuple[str, str]:
        """The evidence quoted after what was said (all there is when nothing said holds), and a warning for
        the latter; records the verdicts and what was left out."""
        assert self.checker is not None
        said = "".join(self.pieces).strip()
        unsupported = not any(v.verified and v.claim and not v.quoted for v in self.checker.verdicts)
        quoting = self.backend.quotes  # its whole answer is evidence quoted (--llm none)
        if quoting or not said:
            self.lead = "evidence"
        tail = warning = block = ""
        led = bool(said) and self.lead == "evidence" and not quoting  # quoted already, ahead of what was said
        if not led and (unsupported or (self.settings.answer_quote and not quoting)):
            block = _quote_block(self.prompt, said, self.checker, unsupported)
            if block:
                tail = ("\n\n" if said else "") + block
        if unsupported and (block or led):
            warning = "no sentence of the answer is supported by its sources; quoting the best evidence"
            if self.result.sources and all(h.source == "context" for h in self.result.sources):
                warning = (
                    "the reader wrote nothing the given context supports, so "
                    "these are the context's best sentences quoted, not a summary; a larger reader summarises "
                    "(`rag models`, --model)"
                )
        if quoting:
            for v in self.checker.verdicts:
                v.quoted = True
        self.result.sentences = self.checker.verdicts
        self.result.dropped += [
            {"text": v.text, "support": round(v.support, 3), "reason": v.left_out_because()}
            for v in self.checker.dropped
        ]
        return tail, warning


def _prompt(
    question: str, hits: list[Hit], backend: Any, settings: Settings, embed: Any, scored: list[Sentence] | None = None
) -> tuple[Any, list[Hit], LeadJudge | None]:
    """The prompt and the passages it holds (as retrieved, in its order), and the judge of whether the
    model's first sentence answers well enough to lead (None without evidence); ``prompt.quotes`` holds the
    best evidence sentences (rag_cli/pipeline/evidence.py), numbered as the prompt numbers their passages.

    With ``[answer] evidence`` (the default) each passage is cut down to its evidence sentences and passages
    without any leave the prompt; the passage with the best evidence comes first (a small model copies from
    the top of its prompt), the context given with the question staying first, as [1], [2], ..."""
    sents: list[Sentence] = []
    if settings.answer_evidence and hits:  # off: whole passages, nothing scored or quoted
        if scored is not None:
            sents = scored
        else:
            sents = score(question, [h.text for h in hits], embed, [section_term(h.heading) for h in hits])
    order = list(range(len(hits)))  # the hits the prompt shows, by position, in its order
    shown = hits
    if settings.answer_evidence and hits and backend.wants_evidence:
        picked = select(
            question,
            [h.text for h in hits],
            embed,
            count=backend.count_tokens,
            budget=settings.answer_evidence_tokens or backend.evidence_tokens,
            scored=sents,
        )
        ranked = [(i, p, max(s.score for s in p)) for i, p in enumerate(picked) if p]
        ranked.sort(key=lambda t: (hits[t[0]].source != "context", -t[2]))
        if ranked:
            order = [i for i, _, _ in ranked]
            shown = [replace(hits[i], text=joined(p)) for i, p, _ in ranked]
    prompt, kept = build_prompt(
        question,
        shown,
        backend.count_tokens,
        context_tokens=backend.context_tokens(),
        max_tokens=settings.llm_max_tokens,
    )
    order = order[: len(kept)]
    number = {i: n for n, i in enumerate(order, start=1)}
    prompt.quotes = quotes(sents, number, settings.answer_quotes, hosts_of([h.url for h in hits]))
    judge = lead_judge(question, sents, number, embed) if prompt.quotes else None
    return prompt, [hits[i] for i in order], judge


def _quote_block(prompt: Any, said: str, checker: SentenceStream, fallback: bool, before: Any = None) -> str:
    """The evidence quoted after an answer (or ahead of sentence ``before``'s verdict): the quotes it did not
    already copy word for word (all of them when nothing it said holds); the first passage's opening when
    there is no scored sentence."""
    flat = folded(said)
    evidence = prompt.quotes or ([(1, prompt.passages[0].text[:300])] if fallback and prompt.passages else [])
    fresh = [(n, t) for n, t in evidence if fallback or folded(t) not in flat]
    return checker.quote(fresh, before=before) if fresh else ""


def provenance(retrieval: Retriever, settings: Settings) -> dict[str, Any]:
    """What produced an answer: index and generation, embedding model (backend, model and prompt
    template are added once a backend is chosen)."""
    return {
        "index": settings.index,
        "generation": retrieval.reader.generation if retrieval.reader is not None else None,
        "embedder": retrieval.embedder.fingerprint() if retrieval.embedder is not None else None,
        "verified": bool(settings.answer_verify),
    }
