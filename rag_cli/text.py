"""Small text helpers shared by keyword search and the extractive answerer."""

from __future__ import annotations

import os
import re

WORD = re.compile(r"\w+", re.UNICODE)

STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "after",
        "also",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "before",
        "being",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "do",
        "does",
        "each",
        "few",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "more",
        "most",
        "of",
        "on",
        "or",
        "other",
        "our",
        "out",
        "over",
        "s",
        "same",
        "should",
        "so",
        "some",
        "such",
        "t",
        "than",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


def rel(path: str | None) -> str:
    """``path`` relative to the working directory when it lies below it."""
    if not path:
        return ""
    try:
        cwd = os.getcwd()
    except OSError:
        return path
    if path.startswith(cwd + os.sep):
        return path[len(cwd) + 1 :]
    return path


def folded(text: str) -> str:
    """``text`` lower-cased with its whitespace runs as single spaces: for comparing passages and quotes."""
    return " ".join(text.lower().split())


LOOP_MIN_CHARS = 24  # a repeated run shorter than this ("ha ha ha", "----") is not a loop


def loop_cut(text: str, longest: int = 80, times: int = 4) -> int | None:
    """Where generated ``text`` that ends in a loop (the same piece of up to ``longest`` characters, holding a
    letter or digit, at least ``times`` times in a row over ``LOOP_MIN_CHARS`` or more) should end: after the
    first copy of the piece (and the rest of a word it ends inside). None when it does not end in one. Small models fall into such loops ("remove
    remove remove ...") and would repeat until their token limit."""
    for p in range(1, longest + 1):
        span = max(p * times, LOOP_MIN_CHARS)
        if span > len(text) or text[-span:] != (text[-p:] * (span // p + 1))[-span:]:
            continue
        if not any(c.isalnum() for c in text[-p:]):
            continue
        start = len(text) - span
        while start > 0 and text[start - 1] == text[start - 1 + p]:
            start -= 1
        cut = start + p
        while cut < len(text) and text[cut].isalnum() and text[cut - 1].isalnum():
            cut += 1
        return cut
    return None


_NAME = re.compile(r"[\w][\w.+-]*[\w]|\w")


def names_in(question: str) -> list[str]:
    """The question's names: capitalised words past its first (Dependabot, Mercurial) and words with digits,
    then each run of such words next to each other as one name too ("Git 3.0": a corpus may say "Eclipse 3.0"
    and "Git" and still never "Git 3.0")."""
    matches = list(_NAME.finditer(question))
    out: list[str] = []
    run: list[re.Match[str]] = []
    runs: list[str] = []

    def close() -> None:
        if len(run) > 1:
            runs.append(question[run[0].start() : run[-1].end()])
        run.clear()

    for i, m in enumerate(matches):
        w = m.group(0)
        if w.lower() not in STOP_WORDS and len(w) >= 2 and ((i > 0 and w[0].isupper()) or any(c.isdigit() for c in w)):
            if run and question[run[-1].end() : m.start()] != " ":
                close()
            out.append(w)
            run.append(m)
        else:
            close()
    close()
    return list(dict.fromkeys(out + runs))


# What a terminal could act on: C0 controls but tab and newline, DEL, C1 controls (0x9b is CSI in some
# terminals), bidirectional overrides (text that reads other than it is stored), and lone surrogates
# (undecodable bytes of a file name or argument, which would also fail to encode to UTF-8).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:  # a byte that surrogateescape kept: show the byte
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def clean(text: str) -> str:
    """``text`` safe to write to a terminal: every control character but newline and tab is shown
    escaped (``\\x1b``), so a document, file name, remote source or model cannot clear the screen,
    set the window title, write the clipboard (OSC 52) or hide text. CRLF becomes a newline."""
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return _UNSAFE.sub(_escape, text)


def quote_line(n: int, text: str) -> str:
    """One evidence sentence quoted with its passage number, as a Markdown list item: ``- "..." [n]``; a text that
    itself starts or ends with a double quote (a Python docstring's triple quotes) is set in “...” instead,
    so the quote does not open with four quote marks."""
    body = text.strip()
    if body.startswith('"') or body.endswith('"'):
        return f"- \u201c{body}\u201d [{n}]"
    return f'- "{body}" [{n}]'


_HOW_MANY = re.compile(r"\bhow many ([a-z][\w-]*)(?: (?!per\b)([a-z][\w-]*))?(?: per ([a-z][\w-]*))?", re.IGNORECASE)
_WHAT_DEFAULT = re.compile(
    r"\bwhat(?:'s| is| are) the (?:default|maximum|minimum|max|min) ([a-z][\w.-]*)", re.IGNORECASE
)


def asked_quantity(question: str) -> list[str]:
    """What a question asks the number of, as word stems to look for: "How many bits per weight ..." ->
    ["bit", "wei"]; "What is the default max_workers of ...?" -> ["max_wor"]; [] when it asks no such thing.
    A number that answers it must stand beside one of them in its source. Stems are word beginnings (a word
    less its last three letters, at least three kept; a plural s dropped), so "dimensions" finds
    "384-dimensional" and "seconds" finds "900 seconds"."""
    words: list[str] = []
    if (m := _HOW_MANY.search(question)) is not None:
        words = [w for w in m.groups() if w and w.lower() not in STOP_WORDS and w.lower() not in ("do", "does", "did")]
    elif (m := _WHAT_DEFAULT.search(question)) is not None:
        words = [m.group(1)]
    return [_beginning(w.lower()) for w in words]


def _beginning(word: str) -> str:
    if len(word) <= 5:
        return word[:-1] if word.endswith("s") and len(word) > 3 else word
    return word[: max(3, len(word) - 3)]


# units a quantity may be said again in ("900 seconds (15 minutes)"): each name's dimension and size in its base
_UNIT_SIZES: dict[str, tuple[str, float]] = {
    name: (dim, size)
    for names, dim, size in (
        (("ms", "millisecond", "milliseconds"), "time", 0.001),
        (("decisecond", "deciseconds"), "time", 0.1),
        (("s", "sec", "secs", "second", "seconds"), "time", 1.0),
        (("min", "mins", "minute", "minutes"), "time", 60.0),
        (("h", "hr", "hrs", "hour", "hours"), "time", 3600.0),
        (("day", "days"), "time", 86400.0),
        (("week", "weeks"), "time", 604800.0),
        (("byte", "bytes"), "size", 1.0),
        (("kb", "kilobyte", "kilobytes"), "size", 1e3),
        (("mb", "megabyte", "megabytes"), "size", 1e6),
        (("gb", "gigabyte", "gigabytes"), "size", 1e9),
        (("kib",), "size", 2.0**10),
        (("mib",), "size", 2.0**20),
        (("gib",), "size", 2.0**30),
    )
    for name in names
}
_BINARY = {"kb": 2.0**10, "mb": 2.0**20, "gb": 2.0**30}  # "1 MB (1024 KB)" is also said
_QUANTITY = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s?(" + "|".join(sorted(_UNIT_SIZES, key=len, reverse=True)) + r")\b", re.IGNORECASE
)


def _same_amount(a: float, a_sizes: list[float], b: str, b_sizes: list[float]) -> bool:
    """``a`` of a unit (one of its sizes) is ``b`` of another, to ``b``'s last written digit or within 1 %."""
    value = float(b)
    digits = len(b.partition(".")[2])
    tolerance = max(0.01 * abs(value), 0.5 * 10.0**-digits if digits else 0.0)
    return any(abs(a * x / y - value) <= tolerance for x in a_sizes for y in b_sizes)


def restated_quantities(text: str) -> list[tuple[str, str]]:
    """Pairs of numbers in ``text`` that state one quantity in two units ("900 seconds (15 minutes)": ("900",
    "15"), "2 GB, or 2048 MB"): a source that holds one of them holds the other as well."""
    found = [(m.group(1), m.group(2).lower()) for m in _QUANTITY.finditer(text)]
    pairs = []
    for i, (a, ua) in enumerate(found):
        for b, ub in found[i + 1 :]:
            (dim_a, size_a), (dim_b, size_b) = _UNIT_SIZES[ua], _UNIT_SIZES[ub]
            if ua == ub or dim_a != dim_b:
                continue
            sizes_a = [size_a, _BINARY.get(ua, size_a)]
            sizes_b = [size_b, _BINARY.get(ub, size_b)]
            if _same_amount(float(a), sizes_a, b, sizes_b):
                pairs.append((a, b))
    return pairs
