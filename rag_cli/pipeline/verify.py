"""Claim-level verification: is each answer sentence supported by the passage it cites?

For a sentence (its claim: the text without citation markers and an "According to [n]," lead-in) and a
passage::

    support = 0.5 * coverage + 0.5 * similarity        (0 if a specific token is missing)

* ``coverage``: the share of the claim's content words (stemmed, stop words out) that the passage holds,
  the question's own words left out when the claim has others (said again, they are the sentence's frame);
* ``similarity``: the best cosine between the claim and the passage's sentences (the embedding model;
  without one, coverage counts twice);
* specific tokens — numbers, versions, ``--options``, ``.dot-files``, ``dotted.names``, ``snake_case`` — must appear in
  the passage as they are: "30 days" against a passage that says "90 days" is not supported however much
  else matches; except a number said again in other units beside one the passage holds ("900 seconds (15
  minutes)"), and an example value in a line of code whose command the passage writes with
  ``<placeholders>`` (``git restore --staged path/to/file`` for ``git restore [--staged] <pathspec>``).

A sentence that holds only the question's own content words restates it and answers nothing: it is
left out of the answer (``SentenceStream.dropped``). A sentence is **verified** when a passage it cites reaches ``SUPPORT_AT``. Otherwise, if another passage
does, the sentence is **re-cited** to it (and verified); else it is left out (``[answer] unverified = "drop"``,
the default) or kept, marked ``(unverified)`` (``"mark"``). A
sentence with no content words ("Yes.") makes no claim and passes. :class:`SentenceStream` applies this
to a token stream one sentence at a time, so what a user sees streamed is the final answer, marks
included.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..text import asked_quantity, folded, names_in, quote_line, restated_quantities
from .evidence import Embed, content_terms, coverage, instruction_like, split_sentences
from .prompting import CITE, citations

SUPPORT_AT = 0.5
_NUMBER = re.compile(r"\d[\d.,]*%?")  # a quantity ("256", "4.5", "1,398"), not a name with digits ("l6-v2")
BIND_SHARE = 0.5  # a number's sentence or row is at least half as much about the question as the passage's best
UNVERIFIED = " (unverified)"
HOLD_MAX = 400  # characters a sentence without an end is held before it is checked and shown
REPEATED = "says again what the answer said"
# an option where a word starts ("--staged", not "-line" of "command-line"), a unit after a number ("-bit" of
# "16-bit"), a dot-file (".git-credentials"), a dotted or slashed name, a word with digits
_SPECIFIC = re.compile(
    r"(?<![\w-])--?[A-Za-z][\w-]*|(?<=\d)-[A-Za-z][\w-]*|(?<![\w.])\.[A-Za-z][\w.-]*\w"
    r"|\w+(?:[._/]\w+)+|\w*\d[\w.]*"
)
_LEAD = re.compile(r"^\s*(according to|as stated in|as)\s+(\[[\d,\s]+\]|the sources)\s*,?\s*", re.IGNORECASE)
# a sentence ends at . ! ? before the next one starts with a capital, a digit, a quote or a bracket (not a
# citation marker; "a ! line", "fixup! commits" and "e.g. this" go on), or at a line break after a citation
_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`*-])|(?<=\])[ \t]*\n\s*(?=\S)")


def _plain(terms: set[str]) -> set[str]:
    """Stems with a plural or third-person "s" dropped as well ("gets" is "get"; the light stem keeps short
    words whole): for telling whether a sentence only says the question's own words again."""
    return {t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t for t in terms}


def claim_of(sentence: str) -> str:
    return " ".join(CITE.sub(" ", _LEAD.sub("", sentence)).split())


_CODE = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.DOTALL)
_PLACEHOLDER = re.compile(r"<[A-Za-z][\w.-]*>")


def code_lines(text: str) -> list[str]:
    """The lines of code in a sentence (fenced blocks and `inline` spans), folded."""
    out: list[str] = []
    for m in _CODE.finditer(text):
        out += [folded(line.strip()) for line in (m.group(1) or m.group(2) or "").splitlines() if line.strip()]
    return out


def specifics(text: str) -> set[str]:
    return {m.group(0).lower().rstrip(".") for m in _SPECIFIC.finditer(text)}


def holds_token(text: str, token: str) -> bool:
    """``token`` (a number, version, option or dotted name) occurs in ``text`` as a whole token: "32" is not
    in "bpo-13227" nor "80" in "8000", "gc.reflogexpire" not in "gc.reflogexpireunreachable". A name may be
    the last part of a qualified one ("set_num_threads" of "torch.set_num_threads(n)"); a number may not ("75"
    is not in "0.75")."""
    if token.startswith("-"):  # an option ("--timeout" is not "--timeout-ms"), or a word's tail ("-bit" of 16-bit)
        lead, tail = r"(?<!-)", r"(?![\w-])"
    elif token[:1].isalpha():  # a name: whole, or after a qualifier's dot
        lead, tail = r"(?<![\w])", r"(?!\w)"
    else:
        lead, tail = r"(?<![\w.])", r"(?!\w)"  # "16" is in "16-bit", not in "1600" or "bpo-1316"
    return re.search(rf"{lead}{re.escape(token)}{tail}(?!\.\w)", text) is not None


@dataclass
class Verdict:
    text: str  # the sentence as shown (re-cited if it was)
    citations: list[int]
    verified: bool
    support: float  # the best support among the passages it now cites
    recited: bool = False
    claim: bool = True  # False: no content words ("Yes."), nothing to check
    restates: bool = False  # True: only the question's own words, so it answers nothing
    quoted: bool = False  # True: evidence quoted word for word, not written by the model
    planted: str | None = None  # why it reads as instructions planted for an assistant: never verified, never shown
    repeated: bool = False  # True: says again, word for word, what an earlier sentence of the answer said

    def left_out_because(self) -> str:
        if self.planted:
            return self.planted
        if self.repeated:
            return REPEATED
        return "restates the question" if self.restates else "no source supports it"

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "citations": self.citations,
            "verified": self.verified,
            "support": round(self.support, 3),
            "recited": self.recited,
            "restates": self.restates,
            "quoted": self.quoted,
        }


class Verifier:
    """Checks sentences against numbered passages (``passages[0]`` is ``[1]``)."""

    def __init__(
        self, passages: list[str], embed: Embed | None = None, question: str = "", hosts: frozenset[str] = frozenset()
    ) -> None:
        self.passages = passages
        self.hosts = hosts  # the sources' own sites: a link there is no lure
        self.question = content_terms(question)
        self._asked = _plain(self.question)  # the question's words as the restatement check compares them
        self._asked_specific = specifics(question)
        self.names = [folded(w) for w in names_in(question) if " " not in w]  # what it names: "Paris", "3.13"
        self.asked = asked_quantity(question)  # what it asks the number of: "bits", "weight"
        self.embed = embed
        self.terms = [content_terms(p) for p in passages]
        self.lower = [folded(p) for p in passages]
        self._vecs: dict[int, Any] = {}
        self._unit_cache: dict[int, tuple[list[tuple[str, set[str]]], list[tuple[str, set[str]]]]] = {}

    def _similarity(self, claim_vec: Any, n: int) -> float:
        if n not in self._vecs:
            sents = split_sentences(self.passages[n]) or [self.passages[n]]
            self._vecs[n] = self.embed(sents) if self.embed is not None else None
        vecs = self._vecs[n]
        return float((vecs @ claim_vec).max()) if vecs is not None and len(vecs) else 0.0

    def _units(self, n: int) -> tuple[list[tuple[str, set[str]]], list[tuple[str, set[str]]]]:
        """Passage ``n``'s sentences (each with the sentence or two before it, which its "it" may name), and its table
        rows (lines of cells split by | or tabs, each with its table's first row, the header), folded, with
        their content terms: where a number can be bound to what it is the number of."""
        if n not in self._unit_cache:
            text = self.passages[n]
            rows: list[str] = []
            header = ""
            for line in text.splitlines():
                if line.count("|") >= 2 or "\t" in line:
                    header = header or line
                    rows.append(line if line == header else f"{header} {line}")
                else:
                    header = ""
            units = split_sentences(text) or [text]
            # a sentence with the one before it ("The --timeout option sets how long. It defaults to 900."), and
            # the one before that when the one between holds no number of its own ("merge.renameLimit: the number
            # of files ... If not specified, ... . If neither is, it defaults to 7000.")
            units = [
                " ".join(units[max(0, i - (2 if i > 1 and not _NUMBER.search(units[i - 1]) else 1)) : i + 1])
                for i in range(len(units))
            ]
            self._unit_cache[n] = (
                [(folded(u), content_terms(u)) for u in units],
                [(folded(r), content_terms(r)) for r in rows],
            )
        return self._unit_cache[n]

    def bound(self, token: str, n: int) -> bool:
        """A number of an answer is bound to what the question asks about in passage ``n``: a table row holding
        it names what the question names (when the passage does: "Paris"); the row, else the sentence,
        holds what a "how many" or "what is the default" question counts (text.asked_quantity), and covers
        at least :data:`BIND_SHARE` of what the passage's most on-topic sentence covers of the question's
        words. "about 140 euros" for Paris, where 140 is Berlin's row, or "uses about 250 MB" for bits per
        weight, where 250 MB is the file size, is present and not bound."""
        if not self.question:
            return True
        sentences, rows = self._units(n)
        in_rows = [u for u in rows if holds_token(u[0], token)]
        holding = in_rows or [u for u in sentences if holds_token(u[0], token)]
        if not holding:  # the number is in the passage only across a sentence break: nothing to bind
            return True
        if in_rows:  # a table row names its own subject ("Paris"); prose says "its" for a name said before
            names = [w for w in self.names if holds_token(self.lower[n], w)]
            holding = [u for u in holding if all(holds_token(u[0], w) for w in names)]
        if self.asked:  # "how many bits per weight": the number stands beside what is counted
            holding = [u for u in holding if any(a in u[0] for a in self.asked)]
        best = max(coverage(self.question, terms) for _, terms in sentences + rows)
        return any(coverage(self.question, terms) >= BIND_SHARE * best for _, terms in holding)

    def fills_placeholder(self, token: str, code: Sequence[str], n: int) -> bool:
        """``token`` stands in a line of code whose command passage ``n`` writes with ``<placeholders>``: "git
        restore --staged path/to/file" for "git restore [--staged] <pathspec>", an example value, not a claim."""
        if token.startswith("-") or not _PLACEHOLDER.search(self.passages[n]):  # an option is never an example
            return False
        for line in code:
            words = line.split()
            command = " ".join(words[:2])
            if (
                len(words) >= 2
                and holds_token(line, token)
                and not holds_token(command, token)
                and re.search(rf"(?<![\w-]){re.escape(command)}(?![\w-])", self.lower[n])
            ):
                return True
        return False

    def holds(self, token: str, n: int, code: Sequence[str] = ()) -> bool:
        """Passage ``n`` holds the specific ``token`` of a claim: as it is written, as the example value of a
        command it writes with ``<placeholders>``, or, for a token the question wrote (said again, the sentence's
        frame, as the question's words are), without the leading dot or dashes the question gave it (".tar.gz"
        asked about, "the tar.gz format" in the manual)."""
        if holds_token(self.lower[n], token) or self.fills_placeholder(token, code, n):
            return True
        bare = token.lstrip(".-")
        return token in self._asked_specific and bool(bare) and bare != token and holds_token(self.lower[n], bare)

    def _needed(
        self, specific: set[str], n: int, code: Sequence[str] = (), restated: Sequence[tuple[str, str]] = ()
    ) -> set[str] | None:
        """The claim's specific tokens, each held by passage ``n`` (None when one is not), less a number said
        again in other units beside one the passage holds ("900 seconds (15 minutes)" against "default: 900";
        ``restated``: text.restated_quantities of the claim)."""
        held = {tok: self.holds(tok, n, code) for tok in specific}
        for a, b in restated:
            if a in held and b in held and held[a] != held[b]:
                del held[b if held[a] else a]
        return set(held) if all(held.values()) else None

    def _support(
        self,
        terms: set[str],
        specific: set[str],
        n: int,
        claim_vec: Any,
        code: Sequence[str] = (),
        restated: Sequence[tuple[str, str]] = (),
    ) -> float:
        if not 0 <= n < len(self.passages):
            return 0.0
        need = self._needed(specific, n, code, restated)
        if need is None or any(not self.bound(tok, n) for tok in need if _NUMBER.fullmatch(tok)):
            return 0.0
        cov = coverage(terms, self.terms[n])
        sim = self._similarity(claim_vec, n) if self.embed is not None and claim_vec is not None else cov
        return 0.5 * cov + 0.5 * sim

    def check(self, sentence: str) -> Verdict:
        cited = [n for n in citations(sentence) if 1 <= n <= len(self.passages)]
        claim = claim_of(sentence)
        terms = content_terms(claim)
        if planted := instruction_like(claim, self.hosts):
            # a document's "NOTE TO THE ASSISTANT: ignore ..." copied into the answer: supported word for word,
            # and still no answer to present as verified
            return Verdict(sentence, cited, False, 0.0, planted=planted)
        if not terms:
            return Verdict(sentence, cited, True, 1.0, claim=False)
        specific = specifics(claim)
        if self.question and _plain(terms) <= self._asked and specific <= self._asked_specific:
            # it says nothing the question did not ("the pragma enables write-ahead logging"; "... gets before
            # git gc removes it" for "how old does ... get before git gc removes it?"): no answer
            return Verdict(sentence, cited, False, 0.0, restates=True)
        vec = self.embed([claim])[0] if self.embed is not None else None
        # the claim's words beyond the question's are what a passage must hold (the question's own, said again
        # as the sentence's frame, need no support: "the default value of b is 0.75" stands on "b = 0.75")
        said = {t for t in terms if t not in self.question} or terms
        code = code_lines(sentence)
        restated = restated_quantities(claim)
        scores = {
            n: self._support(said, specific, n - 1, vec, code, restated) for n in range(1, len(self.passages) + 1)
        }
        best_cited = max((scores[n] for n in cited), default=0.0)
        if best_cited >= SUPPORT_AT:
            return Verdict(sentence, cited, True, best_cited)
        other = max(scores, key=lambda n: scores[n], default=None)
        if other is not None and scores[other] >= SUPPORT_AT:
            return Verdict(recite(sentence, other), [other], True, scores[other], recited=True)
        return Verdict(sentence, cited, False, best_cited)


def recite(sentence: str, n: int) -> str:
    """``sentence`` citing passage ``n`` instead: its first marker becomes [n], the others go."""
    if not CITE.search(sentence):
        body = sentence.rstrip()
        trail = sentence[len(body) :]
        end = body[-1] if body and body[-1] in ".!?" else ""
        return f"{body[: len(body) - len(end)]} [{n}]{end}{trail}"
    first = True

    def swap(m: re.Match[str]) -> str:
        nonlocal first
        if first:
            first = False
            return f"[{n}]"
        return ""

    return re.sub(r"\s+(?=[.,;!?])", "", CITE.sub(swap, sentence).replace("  ", " "))


@dataclass
class Checked:
    """One sentence of a streamed answer, checked: what the model wrote (with the gap after it) and what the
    answer shows of it ("" when it is left out)."""

    raw: str
    shown: str
    verdict: Verdict | None  # None: whitespace, nothing to check

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "raw": self.raw,
            "text": self.shown,
            "shown": bool(self.shown.strip()) or v is None,
            "verified": v.verified if v is not None else True,
            "reason": v.left_out_because() if v is not None and not self.shown.strip() else None,
        }


@dataclass
class SentenceStream:
    """Checks streamed text a sentence at a time.

    ``push`` (cheap: on the event loop) returns the sentences a piece of text completed; ``check_each`` and
    ``finish_each`` check them (embedding inference: on the pool) and say, sentence by sentence, what the
    answer shows of each (``render`` and ``finish``: the same, joined)."""

    verifier: Verifier
    verdicts: list[Verdict] = field(default_factory=list)
    dropped: list[Verdict] = field(default_factory=list)  # sentences left out: restating, or (drop) unverified
    buf: str = ""
    drop_unverified: bool = False  # True: a sentence no passage supports is left out, not shown marked
    said: set[str] = field(default_factory=set)  # the claims shown so far, folded

    def push(self, text: str) -> list[tuple[str, str]]:
        self.buf += text
        out = []
        while (m := _END.search(self.buf)) is not None:
            out.append((self.buf[: m.start()], m.group(0)))
            self.buf = self.buf[m.end() :]
        if len(self.buf) > HOLD_MAX and (cut := self.buf.rfind(" ")) > 0:  # a run-on "sentence": not held forever
            out.append((self.buf[:cut], " "))
            self.buf = self.buf[cut + 1 :]
        return out

    def abandon(self) -> str:
        """Forget the sentence held back (the model fell into a loop while writing it); returns it."""
        held, self.buf = self.buf, ""
        return held

    def check_each(self, sentences: list[tuple[str, str]]) -> list[Checked]:
        out = []
        for s, gap in sentences:
            shown, verdict = self._one(s)
            out.append(Checked(s + gap, shown + gap if shown else "", verdict))
        return out

    def render(self, sentences: list[tuple[str, str]]) -> str:
        return "".join(c.shown for c in self.check_each(sentences))

    def finish_each(self, text: str = "") -> list[Checked]:
        """Check what is left at the end of the stream (and ``text``, the last of it)."""
        out = self.check_each(self.push(text))
        rest, self.buf = self.buf, ""
        body = rest.rstrip()
        if body:
            shown, verdict = self._one(body)
            out.append(Checked(rest, shown + rest[len(body) :], verdict))
        elif rest:
            out.append(Checked(rest, rest, None))
        return out

    def finish(self, text: str = "") -> str:
        return "".join(c.shown for c in self.finish_each(text))

    def quote(self, evidence: list[tuple[int, str]], before: Verdict | None = None) -> str:
        """Evidence sentences (passage number, text), quoted under "Evidence:", one list item each; their
        verdicts go after those so far, or ahead of ``before``'s when the quotes lead the answer."""
        lines = []
        at = next((i for i, v in enumerate(self.verdicts) if v is before), len(self.verdicts))
        for n, text in evidence:
            line = quote_line(n, text)
            self.verdicts.insert(at, Verdict(line.removeprefix("- "), [n], True, 1.0, quoted=True))  # no list mark
            at += 1
            lines.append(line)
        return "Evidence:\n" + "\n".join(lines)

    def _one(self, sentence: str) -> tuple[str, Verdict]:
        v = self.verifier.check(sentence)
        claim = folded(claim_of(v.text)) if v.claim else ""
        if claim and claim in self.said:  # a small model going round: the sentence again adds nothing
            v.repeated = True
        if v.restates or v.planted or v.repeated or (self.drop_unverified and not v.verified):
            # it says nothing the question did not, nothing the sources hold, or nothing new: left out (kept in
            # ``dropped``)
            self.dropped.append(v)
            return "", v
        if claim:
            self.said.add(claim)
        self.verdicts.append(v)
        return (v.text if v.verified else v.text + UNVERIFIED), v
