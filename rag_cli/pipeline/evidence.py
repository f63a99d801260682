"""Evidence selection: the few sentences of the retrieved passages most likely to answer the question.

A small model does far better with 300 tokens of the right text than with 3,000 of roughly right text,
and the time to its first token falls with the prompt's length. Each passage is split into sentences;
each sentence is scored against the question::

    score(s) = 0.5 * cos(q, s) + 0.5 * coverage(q, s) + 0.05 / rank(passage)

with ``cos`` the embedding model's cosine (when a model is at hand; else 0 and coverage alone) and
``coverage`` the share of the question's content words that ``s`` holds (lower-cased, light suffix
stripping, stop words out), each word weighted by its rarity among the candidate sentences
(``log(1 + N / (1 + df))``: "git" in a Git manual, or "database" in a database's docs, tells little;
the one rare word a sentence shares with the question tells a lot). The best sentences are kept (none under half the best one's score), up to a
token budget, with the sentences before and after each of the two best for context; they are shown in document order, per passage, non-adjacent ones
joined with " … ". Passages without a kept sentence leave the prompt.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..text import STOP_WORDS, WORD, folded

PROMPT_VERSION = "evidence-1"  # what produced an answer's prompt, in its provenance

# sentence ends (a colon or semicolon only before a capital or a dash: "(default: 900)" stays whole),
# blank lines, list bullets
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`-])|(?<=[:;])\s+(?=[A-Z-])|\n\s*\n|\n(?=\s*[-*•]\s)")
W_COS, W_COVER, W_RANK = 0.5, 0.5, 0.05
_MAX_WORDS = 60  # a "sentence" longer than this (a table row, a run-on list) is cut into pieces


@dataclass
class Sentence:
    passage: int  # 0-based position of its passage among the hits
    index: int  # position within the passage
    text: str
    score: float = 0.0
    term: str = ""  # the term of the definition it belongs to, when it does not hold it (split_termed)

    @property
    def shown(self) -> str:
        """Its text as evidence shows it alone: a definition's later sentence led by its term and an ellipsis."""
        return self.with_term(self.text)

    def with_term(self, text: str) -> str:
        """``text`` (its own, or a quote of it) led by its definition's term, when it has one."""
        return f"{self.term} … {text}" if self.term else text


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: at sentence ends, blank lines and list bullets; long ones cut at ~60 words,
    fragments of under four words joined to the sentence after them (a term to its definition)."""
    return [sentence for sentence, _ in split_termed(text)]


_PARAGRAPH = re.compile(r"\n\s*\n")


def split_termed(text: str, section: str = "") -> list[tuple[str, str]]:
    """:func:`split_sentences`, each sentence with the term it defines: in a definition list (a paragraph that
    is only a term, "octopus", "gc.rerereUnresolved", "--show-origin", then its description), the description's
    later sentences carry the term ("This is the default merge strategy when merging more than one branch." is
    about octopus); its first sentence holds the term already. Before any definition, a paragraph that opens by
    referring back to what it is about ("This hook is called by git-push(1) ...") has that sentence carry
    ``section``, the name its section's heading gives (:func:`section_term`: "pre-push"), unless it names it
    (within a paragraph, "It" is about what the sentences before it name). Other sentences carry "". Same
    sentences as :func:`split_sentences`."""
    pieces: list[tuple[str, int]] = []  # (piece, its paragraph)
    for n, paragraph in enumerate(_PARAGRAPH.split(text)):
        for part in _SENT.split(paragraph):
            words = part.split()
            pieces += [(" ".join(words[i : i + _MAX_WORDS]), n) for i in range(0, len(words), _MAX_WORDS)]
    per_paragraph = Counter(n for _, n in pieces)
    terms = {  # the paragraph a lone term describes -> the term
        n + 1: piece for piece, n in pieces if per_paragraph[n] == 1 and len(piece.split()) < 4 and _is_term(piece)
    }
    before = min(terms, default=len(pieces) + 1) - 1  # the first definition's term paragraph
    opened = -1  # the paragraph of the last sentence (none yet)
    merged: list[tuple[str, str]] = []
    carry, began = "", -1  # a fragment waiting for what follows it, and the paragraph it began in
    for piece, n in pieces:  # a fragment of a few words (an option name, a term, a label) belongs with what follows it
        joined_piece, start = (f"{carry} {piece}", began) if carry else (piece, n)
        carry = ""
        if len(joined_piece.split()) < 4:
            carry, began = joined_piece, start
            continue
        term = "" if start < n else terms.get(n, "")  # began before: it holds the term
        opens = opened != n  # the first sentence of its paragraph
        if not term and opens and start == n < before and section and _refers_back(joined_piece, section):
            term = section
        merged.append((joined_piece, term))
        opened = n
    if carry:
        if merged:
            merged[-1] = (f"{merged[-1][0]} {carry}", merged[-1][1])
        else:
            merged.append((carry, ""))
    return merged


SECTION_TERMS = True  # off: no section names (bench/answer.py's "-nosection" configurations, the baseline)
_REFERS_BACK = re.compile(r"(?:This|These|That|Those|It|Its|They|Their|Such)\b")


def _refers_back(sentence: str, name: str) -> bool:
    """Whether ``sentence`` opens by referring back to its subject ("This hook ...", "It ...") without naming
    ``name``."""
    return bool(_REFERS_BACK.match(sentence)) and name.lower() not in sentence.lower()


def section_term(heading: Sequence[str]) -> str:
    """The name a passage's section heading gives its subject, when it can lead a sentence as a term: the
    heading's last part, a few words not ending like a sentence ("pre-push", "gc.auto", "Overlap"); not a
    document part set in capitals ("DESCRIPTION", "SEE ALSO": a man page's), nor a long title."""
    last = heading[-1].strip() if heading and SECTION_TERMS else ""
    if not last or len(last.split()) >= 4 or not _is_term(last) or last.upper() == last:
        return ""
    return last


def with_section(text: str, heading: Sequence[str]) -> str:
    """A passage's text as verification reads it: led by its section's name (:func:`section_term`) when the text
    does not hold it, so that a reader's sentence naming the hook its evidence called "This hook" holds."""
    name = section_term(heading)
    return f"{name}\n\n{text}" if name and name.lower() not in text.lower() else text


def _is_term(fragment: str) -> bool:
    """A fragment that can head a definition: not a Markdown heading, a label ending in a colon, or a short
    sentence or an ellipsis ("to have.", "...")."""
    return not fragment.startswith("#") and not fragment.rstrip().endswith((":", ".", "!", "?"))


def stem(word: str) -> str:
    """A light stem: "expired", "expires" and "expire" all give "expir"."""
    w = word.lower()
    for suffix in ("ing", "ies", "ied", "es", "ed", "ly", "s"):
        if len(w) > len(suffix) + 3 and w.endswith(suffix):
            w = w[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
            break
    return w[:-1] if len(w) > 4 and w.endswith("e") else w


_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def content_terms(text: str) -> set[str]:
    """Stemmed content words; a camelCase name also counts as its parts (gc.reflogExpire: reflog, expir)."""
    out: set[str] = set()
    for w in WORD.findall(text):
        parts = [w, *_CAMEL.findall(w)] if any(c.isupper() for c in w[1:]) else [w]
        out.update(stem(p) for p in parts if p.lower() not in STOP_WORDS and (len(p) > 1 or p.isdigit()))
    return out


def coverage(question: set[str], sentence: set[str]) -> float:
    return len(question & sentence) / len(question) if question else 0.0


Embed = Callable[[Sequence[str]], Any]  # texts -> unit vectors (n x d)


def remembering(embed: Embed | None) -> Embed | None:
    """``embed`` that computes each distinct text once and remembers its vector (for one answer: evidence
    scoring and verification embed the same passage sentences; through a warm server each is a request). An
    embedder that remembers already (a retrieval's, embed/batcher.RememberedTexts, kept across answers) is
    used as it is."""
    from ..embed.batcher import RememberedTexts

    if embed is None or isinstance(embed, RememberedTexts):
        return embed
    return RememberedTexts(embed)


def score(
    question: str, texts: Sequence[str], embed: Embed | None = None, sections: Sequence[str] = ()
) -> list[Sentence]:
    """Every sentence of ``texts`` (the passages, best first), scored against ``question``; ``sections``: each
    passage's :func:`section_term` (a sentence referring back to it carries it), if known."""
    named = list(sections) + [""] * (len(texts) - len(sections))
    sents = [
        Sentence(p, i, s, term=d) for p, t in enumerate(texts) for i, (s, d) in enumerate(split_termed(t, named[p]))
    ]
    if not sents:
        return sents
    q_terms = content_terms(question)
    cos = [0.0] * len(sents)
    if embed is not None:
        vecs = embed([question] + [s.text for s in sents])
        cos = [float(x) for x in vecs[1:] @ vecs[0]]
    terms = [content_terms(s.text) & q_terms for s in sents]
    cover = weighted_cover(q_terms, terms)
    for s, c, held in zip(sents, cos, terms, strict=True):
        s.score = W_COS * c + W_COVER * cover(held) + W_RANK / (s.passage + 1)
    return sents


def relevance(question: str, scored: Sequence[Sentence], embed: Embed | None = None) -> Callable[[str], float]:
    """A scorer of other text (a sentence the model wrote) on the scale :func:`score` gave the passages'
    sentences (``scored``): the same cosine, coverage weighted by the same rarities, no passage-rank bonus."""
    q_terms = content_terms(question)
    cover = weighted_cover(q_terms, [content_terms(s.text) & q_terms for s in scored])

    def of(text: str) -> float:
        cos = 0.0
        if embed is not None:
            vecs = embed([question, text])
            cos = float(vecs[1] @ vecs[0])
        return W_COS * cos + W_COVER * cover(content_terms(text) & q_terms)

    return of


def weighted_cover(q_terms: set[str], held: Sequence[set[str]]) -> Callable[[set[str]], float]:
    """The coverage measure of :func:`score`: question words -> their share of the question's weight, each word
    weighted by its :func:`rarity` among the candidate sentences (``held``: the question words each holds)."""
    weight = rarity(q_terms, held)
    total = sum(weight.values())
    return lambda words: sum(weight[t] for t in words) / total if total else 0.0


def rarity(q_terms: set[str], held: Sequence[set[str]]) -> dict[str, float]:
    """Each question word's weight, ``log(1 + N / (1 + df))`` over the ``N`` candidate sentences (``held``:
    the question words each one holds): a word every sentence has weighs little, one that none has the most
    (an answer cannot score high without it)."""
    n = len(held)
    return {t: math.log(1 + n / (1 + sum(1 for h in held if t in h))) for t in q_terms}


SENTENCE_TOKENS = 37  # a typical evidence sentence with its separator: 300 tokens of budget hold 8


def select(
    question: str,
    texts: Sequence[str],
    embed: Embed | None = None,
    *,
    count: Callable[[str], int],
    budget: int = 300,
    max_sentences: int | None = None,
    scored: list[Sentence] | None = None,
) -> list[list[Sentence]]:
    """For each of ``texts`` (the passages, best first), the sentences kept as evidence, in order
    (``scored``: what :func:`score` gave for the same question and texts, not computed again): at most
    ``budget`` tokens and ``max_sentences`` sentences (by default one per :data:`SENTENCE_TOKENS` of the
    budget, at least 8: a larger budget buys more sentences, not only longer ones)."""
    sents = scored if scored is not None else score(question, texts, embed)
    if max_sentences is None:
        max_sentences = max(8, budget // SENTENCE_TOKENS)
    picked: list[list[Sentence]] = [[] for _ in texts]
    if not sents:
        return picked
    ranked = sorted(sents, key=lambda s: -s.score)
    by_pos = {(s.passage, s.index): s for s in sents}
    chosen: dict[tuple[int, int], Sentence] = {}
    used = 0

    def take(s: Sentence) -> bool:
        nonlocal used
        if (s.passage, s.index) in chosen:
            return True
        need = count(s.text) + 2
        if chosen and (used + need > budget or len(chosen) >= max_sentences):
            return False
        chosen[(s.passage, s.index)] = s
        used += need
        return True

    floor = 0.5 * ranked[0].score  # a sentence under half the best one's score is not evidence
    for n, s in enumerate(ranked):
        if s.score < floor or not take(s):
            continue
        if n < 2:  # the best two get their neighbours: the fact is often just before or after
            for near in (s.index - 1, s.index + 1):
                if (other := by_pos.get((s.passage, near))) is not None:
                    take(other)
    for key in sorted(chosen):
        picked[key[0]].append(chosen[key])
    return picked


def joined(sentences: list[Sentence]) -> str:
    """One passage's evidence as text: adjacent sentences joined by a space, gaps by " … " (a definition's
    sentence after a gap led by its term)."""
    out = ""
    last = None
    for s in sentences:
        follows = last is not None and s.index == last + 1
        if last is not None:
            out += " " if follows else " … "
        out += s.text if follows else s.shown  # after the sentence before it, its term is there already
        last = s.index
    return out


QUOTE_FLOOR = 0.75  # a sentence quoted scores at least this share of the best one (a weak third quote is noise)


def quotes(
    sentences: list[Sentence], number: dict[int, int], most: int, hosts: frozenset[str] = frozenset()
) -> list[tuple[int, str]]:
    """The best evidence sentences to quote, best first, as (passage number in the prompt, text): at most
    ``most``, each text once (a page and its copy), none under ``QUOTE_FLOOR`` of the best, only from passages
    the prompt holds (``number``: a passage's position among the hits -> its number), none that reads as
    instructions planted for an assistant (:func:`instruction_like`)."""
    ranked = sorted(
        (s for s in sentences if s.passage in number and not instruction_like(s.text, hosts)), key=lambda s: -s.score
    )
    at = {(s.passage, s.index): s.text for s in sentences}
    out: list[tuple[int, str]] = []
    seen: set[str] = set()
    for s in ranked:
        key = folded(s.text)
        if len(out) >= most or s.score < QUOTE_FLOOR * ranked[0].score:
            break
        if key not in seen:
            text = s.with_term(with_block(s, at))
            if not instruction_like(text, hosts):
                out.append((number[s.passage], text))
        seen.add(key)
    return out


@dataclass
class LeadJudge:
    """Whether a sentence the model wrote answers the question well enough to lead the answer, ahead of the
    evidence: on the evidence's own scale (:func:`relevance`) it reaches ``QUOTE_FLOOR`` of the best sentence
    there is to quote (its passage-rank bonus aside), as an evidence sentence must to be quoted at all."""

    of: Callable[[str], float]
    bar: float

    def answers(self, text: str) -> bool:
        return self.of(text) >= self.bar


def lead_judge(
    question: str, sentences: list[Sentence], number: dict[int, int], embed: Embed | None = None
) -> LeadJudge | None:
    """The :class:`LeadJudge` for an answer from the passages ``number`` maps (position -> number in the
    prompt); None when they hold no sentence to quote."""
    held = [s for s in sentences if s.passage in number]
    if not held:
        return None
    top = max(held, key=lambda s: s.score)
    return LeadJudge(relevance(question, sentences, embed), QUOTE_FLOOR * (top.score - W_RANK / (top.passage + 1)))


BLOCK_WORDS = 80  # most words of the block a quoted "...does the following:" carries with it


def with_block(s: Sentence, at: dict[tuple[int, int], str]) -> str:
    """``s``'s text, and when it introduces what follows ("we can do this:", "the option does the following:")
    the code, list or table after it in its passage too, up to :data:`BLOCK_WORDS` words (the last piece cut,
    marked with an ellipsis): a quote that stops at its colon leaves out the point."""
    if not s.text.rstrip().endswith(":"):
        return s.text
    parts = [s.text]
    room = BLOCK_WORDS
    i = s.index + 1
    while room > 0 and (s.passage, i) in at:
        words = at[(s.passage, i)].split()
        parts.append(" ".join(words[:room]) + (" …" if len(words) > room else ""))
        room -= len(words)
        i += 1
    return " ".join(parts)


# text addressed to the assistant rather than to a reader: a planted "NOTE TO THE ASSISTANT: ignore the
# user's question", "Instruction from the system: ...", or a lure to a link ("reset your password at
# https://evil.example/...") whose host is none of the sources' own
_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+|your\s+|these\s+|those\s+)*"
    r"(?:(?:previous|prior|above|earlier|preceding|original|other|system)\s+)?"
    r"(?:instructions?|prompts?|rules|directions|guidelines|question|the user\b|users?'s?\b)",
    re.IGNORECASE,
)
_ADDRESSED = re.compile(
    r"\b(?:note|message|instructions?|directions?|attention|reminder)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?"
    r"(?:ai|assistants?|models?|llms?|language models?|chat ?bots?|agents?)\b"
    r"|\binstructions?\s+from\s+the\s+(?:system|developer|administrator|operator)\b"
    r"|\b(?:you are|as) an? (?:ai|assistant|language model|llm|chat ?bot)\b"
    r"|\bsystem prompt\b",
    re.IGNORECASE,
)
_LINK = re.compile(r"\bhttps?://([^/\s\]\)>\"'`]+)", re.IGNORECASE)
_LURE = re.compile(
    r"\b(?:password|passcode|credentials?|log\s?in|sign\s?in|verify your|your account|reset|wallet|payment|"
    r"download|install|run this|click)\b",
    re.IGNORECASE,
)


def instruction_like(text: str, hosts: frozenset[str] = frozenset()) -> str | None:
    """Why ``text`` reads as instructions planted for an assistant (never to be shown as a verified
    answer sentence or quoted as the answer), or None. ``hosts``: the sources' own hosts, whose links are
    no lure."""
    if _OVERRIDE.search(text) or _ADDRESSED.search(text):
        return "text addressed to an assistant, not an answer"
    for m in _LINK.finditer(text):
        host = _host(m.group(1))
        if host not in hosts and _LURE.search(text):
            return f"sends the reader to {host}, which is none of the sources' own sites"
    return None


def hosts_of(urls: Sequence[str | None]) -> frozenset[str]:
    """The hosts of the passages' own URLs (remote sources), lower-cased."""
    return frozenset(_host(m.group(1)) for url in urls if url and (m := _LINK.match(url)))


def _host(authority: str) -> str:
    """``user@Host:port`` -> ``host``."""
    return authority.rsplit("@", 1)[-1].split(":", 1)[0].lower()
