"""Structure-aware chunking that fits the embedding model's token budget.

Blocks (paragraphs, code blocks, pages) are packed greedily into chunks; a chunk
never crosses a heading or page boundary. Each chunk's embedding text is
``title > heading trail`` plus its body, and that whole text must fit
``max_tokens`` as counted by the model's own tokenizer (without special tokens).

A block bigger than the budget is split at sentence ends, then at word
boundaries. When a section continues into a new chunk, the new chunk starts with
up to ``overlap`` tokens of whole sentences taken from the end of the previous one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..types import Block, Chunk, Document
from .budget import check

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Counts tokens of each text, without special tokens."""

_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")


def word_counter(texts: Sequence[str]) -> list[int]:
    """A tokenizer-free counter (whitespace words); the test double for a real tokenizer."""
    return [len(t.split()) for t in texts]


@dataclass(frozen=True)
class ChunkerConfig:
    max_tokens: int = 200
    overlap: int = 32

    def fingerprint(self) -> dict[str, int]:
        return {"max_tokens": self.max_tokens, "overlap": self.overlap, "version": 3}


@dataclass
class _Piece:
    text: str
    tokens: int
    start_line: int | None
    end_line: int | None


def _line_span(block: Block, text: str, offset: int) -> tuple[int | None, int | None]:
    if block.start_line is None:
        return None, None
    start = block.start_line + block.text.count("\n", 0, offset)
    end = start + text.count("\n")
    if block.end_line is not None:
        end = min(end, block.end_line)
        start = min(start, end)
    return start, end


def _split_words(text: str, budget: int, count: TokenCounter) -> list[str]:
    """Split ``text`` at word boundaries into parts of at most ``budget`` tokens."""
    words = text.split(" ")
    parts: list[str] = []
    lo = 0
    while lo < len(words):
        check()
        # grow by doubling, then binary search the largest fitting span
        n = 1
        while lo + n < len(words) and count([" ".join(words[lo : lo + 2 * n])])[0] <= budget:
            n *= 2
        hi = min(len(words), lo + 2 * n)
        best = n
        a, b = n, hi - lo
        while a <= b:
            mid = (a + b) // 2
            if count([" ".join(words[lo : lo + mid])])[0] <= budget:
                best, a = mid, mid + 1
            else:
                b = mid - 1
        if best == 1 and count([words[lo]])[0] > budget:
            # a single enormous "word" (a minified line): cut by characters
            w = words[lo]
            step = max(1, budget * 4)
            while step > 1 and count([w[:step]])[0] > budget:
                step //= 2
            parts.extend(w[i : i + step] for i in range(0, len(w), step))
            lo += 1
            continue
        parts.append(" ".join(words[lo : lo + best]))
        lo += best
    return [p for p in parts if p.strip()]


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) offsets of ``text``'s sentences: the non-empty stretches between :data:`_SENTENCE` breaks."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE.finditer(text):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    return spans


def _split_block(block: Block, budget: int, count: TokenCounter, tokens: int) -> list[_Piece]:
    if tokens <= budget:
        s, e = block.start_line, block.end_line
        return [_Piece(block.text, tokens, s, e)]
    sentences = [(block.text[a:b], a) for a, b in _sentence_spans(block.text)]
    counts = count([s for s, _ in sentences]) if sentences else []
    pieces: list[_Piece] = []
    cur: list[tuple[str, int]] = []
    cur_tokens = 0

    def close() -> None:
        nonlocal cur, cur_tokens
        if cur:
            text = " ".join(s for s, _ in cur)
            s, e = _line_span(block, block.text[cur[0][1] : cur[-1][1] + len(cur[-1][0])], cur[0][1])
            pieces.append(_Piece(text, cur_tokens, s, e))
        cur, cur_tokens = [], 0

    for (sent, off), n in zip(sentences, counts, strict=True):
        if n > budget:
            close()
            for part in _split_words(sent.replace("\n", " "), budget, count):
                s, e = _line_span(block, sent, off)
                pieces.append(_Piece(part, count([part])[0], s, e))
            continue
        if cur and cur_tokens + n > budget:
            close()
        cur.append((sent, off))
        cur_tokens += n
    close()
    return pieces


def _tail(text: str, overlap: int, count: TokenCounter) -> str:
    """The last whole sentences of ``text`` that fit in ``overlap`` tokens, with the text's own line breaks
    between them: a paragraph, list term or code line stays apart from the one before it ("renames.\\n\\noctopus",
    not "renames. octopus")."""
    if overlap <= 0:
        return ""
    spans = [(a, b) for a, b in _sentence_spans(text) if text[a:b].strip()]
    first = len(spans)
    total = 0
    for i in reversed(range(max(len(spans) - 8, 0), len(spans))):
        n = count([text[spans[i][0] : spans[i][1]]])[0]
        if total + n > overlap:
            break
        first, total = i, total + n
    if first == 0 or first == len(spans):  # the whole previous chunk (no point repeating it), or nothing fits
        return ""
    return text[spans[first][0] :].strip()


def _pack(
    doc: Document,
    pieces: list[_Piece],
    title: str,
    heading: tuple[str, ...],
    page: int | None,
    budget: int,
    overlap: int,
    count: TokenCounter,
    chunks: list[Chunk],
) -> None:
    """Greedily pack one section's pieces into chunks of at most ``budget`` tokens, appending to ``chunks``."""
    cur: list[_Piece] = []
    cur_tokens = 0
    carry = ""
    carry_tokens = 0

    def close() -> None:
        nonlocal cur, cur_tokens, carry, carry_tokens
        if not cur:
            return
        body = "\n\n".join(p.text for p in cur)
        text = f"{carry}\n\n{body}" if carry else body
        starts = [p.start_line for p in cur if p.start_line is not None]
        ends = [p.end_line for p in cur if p.end_line is not None]
        chunks.append(
            Chunk(
                path=doc.path,
                text=text,
                title=title,
                heading=heading,
                start_line=min(starts) if starts else None,
                end_line=max(ends) if ends else None,
                page=page,
                doc_id=doc.doc_id,
                ordinal=len(chunks),
            )
        )
        carry = _tail(body, overlap, count)
        carry_tokens = count([carry])[0] if carry else 0
        cur, cur_tokens = [], 0

    first = len(chunks)
    todo = list(reversed(pieces))
    while todo:
        piece = todo.pop()
        # "\n\n" joins add no tokens for whitespace-splitting tokenizers
        if cur and cur_tokens + piece.tokens + carry_tokens > budget:
            room = budget - cur_tokens - carry_tokens
            if cur_tokens < budget // 2 and room > 0:
                # a short leading piece (a title line, a one-line intro) is not left alone: the next
                # piece is split at sentence ends and its first sentences fill the chunk
                head, rest = _fill(piece, room, count)
                if head is not None:
                    cur.append(head)
                    cur_tokens += head.tokens
                    if rest is not None:
                        todo.append(rest)
                    close()
                    continue
            close()
        if not cur and carry_tokens + piece.tokens > budget:
            carry, carry_tokens = "", 0
        cur.append(piece)
        cur_tokens += piece.tokens
    if cur and len(chunks) > first and cur_tokens < budget // 4:
        # a too-small tail joins the chunk before it when both fit
        prev = chunks[-1]
        body = "\n\n".join(p.text for p in cur)
        if count([prev.text])[0] + cur_tokens <= budget:
            prev.text = f"{prev.text}\n\n{body}"
            ends = [p.end_line for p in cur if p.end_line is not None]
            if ends:
                prev.end_line = max([prev.end_line or 0, *ends])
            cur, cur_tokens = [], 0
    close()


def _fill(piece: _Piece, room: int, count: TokenCounter) -> tuple[_Piece | None, _Piece | None]:
    """Split ``piece`` at sentence ends into a head of at most ``room`` tokens and the rest (None
    when not even its first sentence fits)."""
    cuts = [m.end() for m in _SENTENCE.finditer(piece.text)]
    best = None
    for end in cuts:
        head_text = piece.text[:end].strip()
        n = count([head_text])[0] if head_text else 0
        if n > room:
            break
        best = (end, head_text, n)
    if best is None or not piece.text[best[0] :].strip():
        return None, None
    end, head_text, n = best
    rest_text = piece.text[end:].strip()
    start = piece.start_line
    mid = None if start is None else start + piece.text.count("\n", 0, end)
    head = _Piece(head_text, n, start, mid if mid is not None else piece.end_line)
    rest = _Piece(rest_text, count([rest_text])[0], mid, piece.end_line)
    return head, rest


def chunk_document(doc: Document, count: TokenCounter, config: ChunkerConfig | None = None) -> list[Chunk]:
    """Chunk ``doc`` so that every chunk's ``embedding_text()`` fits ``config.max_tokens``."""
    cfg = config or ChunkerConfig()
    blocks_in = doc.blocks
    if len(blocks_in) > 1 and doc.title and " ".join(blocks_in[0].text.split()) == " ".join(doc.title.split()):
        blocks_in = blocks_in[1:]  # a first line that is the title: the title leads every chunk already
    block_tokens = count([b.text for b in blocks_in])
    groups: list[tuple[tuple[str, ...], int | None, list[Block]]] = []
    sizes: list[int] = []
    for block, n in zip(blocks_in, block_tokens, strict=True):
        if groups and groups[-1][0] == block.heading and groups[-1][1] == block.page:
            groups[-1][2].append(block)
            sizes[-1] += n
        else:
            groups.append((block.heading, block.page, [block]))
            sizes.append(n)
    # a section too small to stand alone (a heading with one short line) joins the subsection that
    # follows it, whose heading trail includes its own
    small = cfg.max_tokens // 8
    i = 0
    while i < len(groups) - 1:
        (h, pg, bl), (h2, pg2, bl2) = groups[i], groups[i + 1]
        if sizes[i] < small and pg == pg2 and h2[: len(h)] == h and len(h2) > len(h):
            groups[i + 1] = (h2, pg2, bl + bl2)
            sizes[i + 1] += sizes[i]
            del groups[i], sizes[i]
            continue
        i += 1
    order = {id(b): n for b, n in zip(blocks_in, block_tokens, strict=True)}
    block_tokens = [order[id(b)] for _, _, bl in groups for b in bl]
    chunks: list[Chunk] = []
    bi = 0
    for heading, page, blocks in groups:
        # the prefix (title > headings) counts against the budget; shorten it if it would eat over half
        title = doc.title
        budget = 0
        for h, t in ((heading, title), (heading[-1:], title), ((), title), ((), "")):
            prefix = Chunk(doc.path, "", t, h).embedding_text()
            ptoks = count([prefix])[0] if prefix else 0
            budget = cfg.max_tokens - ptoks - (1 if ptoks else 0)
            if budget >= cfg.max_tokens // 2:
                heading, title = h, t
                break
        else:
            heading, title = (), ""
        overlap = min(cfg.overlap, budget // 4)
        pieces: list[_Piece] = []
        for block in blocks:
            check()
            # pieces of a split block leave room for the overlap carried into their chunk
            piece_budget = budget if block_tokens[bi] <= budget else max(1, budget - overlap)
            pieces.extend(_split_block(block, piece_budget, count, block_tokens[bi]))
            bi += 1
        _pack(doc, pieces, title, heading, page, budget, overlap, count, chunks)
    return chunks
