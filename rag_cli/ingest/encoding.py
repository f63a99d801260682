"""Text from bytes: UTF-8 first, then the encoding the bytes most plausibly are.

:func:`decode_text` is what every text loader calls. Non-UTF-8 text is decoded with the encoding
charset-normalizer detects, corrected where it is known to be weak (Latin code pages on short text),
and the choice is told in the document's notes so a user can see it.
"""

from __future__ import annotations

import re

EMPTY = "empty: no text"  # why a file with nothing to index is skipped


class SkipFile(Exception):
    """The file cannot be indexed; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_text(data: bytes, notes: list[str] | None = None) -> str:
    """Decode ``data`` as text: UTF-8 (BOM optional), BOM-marked UTF-16/32, else the encoding
    charset-normalizer detects (Windows-1252, Latin-1, Shift-JIS, ...), told in ``notes``.

    Raises SkipFile for binary data (NUL bytes, control characters) and bytes no encoding explains.
    """
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        codec = "utf-32"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec = "utf-16"
    else:
        codec = "utf-8-sig"
        if b"\x00" in data[:8192]:
            raise SkipFile("binary file (NUL bytes)")
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        if codec != "utf-8-sig":
            raise SkipFile(f"undecodable: not valid {codec} at byte {exc.start}") from None
        text, codec = _detected(data, exc.start)
        if notes is not None:
            notes.append(f"not UTF-8: decoded as {codec} (detected)")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    control = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\n\t\f\v")
    if control > 0.1 * min(len(text), 4096):
        raise SkipFile("binary file (control characters)")
    return text


DETECT_BYTES = 1 << 20  # the encoding is detected on the first MiB (and must decode the whole file)


def _detected(data: bytes, bad_at: int) -> tuple[str, str]:
    """``data`` decoded with the encoding charset-normalizer finds most plausible (text, encoding)."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        raise SkipFile(
            f"undecodable: not valid utf-8 at byte {bad_at} (install charset-normalizer to detect others)"
        ) from None
    best = from_bytes(data[:DETECT_BYTES]).best()
    guess = best.encoding if best is not None else None
    # charset-normalizer tells Latin code pages apart poorly on short text (German Latin-1 came out as
    # mac_turkish, French cp1252 as Baltic cp1257); Windows-1252 is by far the most common of them, so it
    # wins unless the guess is Central European or decodes with fewer stray symbols
    order = [guess] if guess else []
    if guess in _CENTRAL:  # the same bytes are other letters: which alphabet, and whole words?
        west, cent = _share(data, "cp1252", _WEST), _share(data, guess, _CENT)
        if west > cent or (west == cent and _broken_words(data, "cp1252") <= _broken_words(data, guess)):
            order = ["cp1252", *order]
    else:
        western, other = _oddity(data, "cp1252"), _oddity(data, guess) if guess else 1 << 30
        if western < other or (western == other and guess in _WESTERN_RIVALS):
            order = ["cp1252", *order]
    for enc in order:
        try:
            return data.decode(enc), enc
        except (UnicodeDecodeError, LookupError):
            continue
    raise SkipFile(f"undecodable: not valid utf-8 at byte {bad_at}, and no other encoding fits") from None


# single-byte Latin code pages a Western file is mistaken for (Central European cp1250 and
# ISO 8859-2 are not: their letters differ from cp1252's in the same places)
_WESTERN_RIVALS = frozenset(
    {
        "cp1252",
        "latin_1",
        "iso8859_15",
        "iso8859_3",
        "iso8859_4",
        "iso8859_9",
        "iso8859_10",
        "iso8859_13",
        "iso8859_14",
        "iso8859_16",
        "cp1254",
        "cp1257",
        "cp1258",
        "cp437",
        "cp850",
        "cp858",
        "mac_roman",
        "mac_turkish",
        "mac_iceland",
        "hp_roman8",
    }
)
_CENTRAL = frozenset({"cp1250", "iso8859_2", "mac_latin2"})
_PLAIN = frozenset("\n\t .,;:!?'\"()[]{}-_/\\@#%&*+=<>|~^`$€£¥©®°±·§¶«»“”‘’–—…¿¡")


_WEST = frozenset("àâäæçéèêëîïôœùûüÿñáíóúãõåøßìòÀÂÄÆÇÉÈÊËÎÏÔŒÙÛÜŸÑÁÍÓÚÃÕÅØÌÒ")
_CENT = frozenset("ąćęłńóśźżčďěňřšťůžáéíúýľĺŕôäöüőűăâîșțşţĄĆĘŁŃÓŚŹŻČĎĚŇŘŠŤŮŽÁÉÍÚÝĽĹŔÔÄÖÜŐŰĂÂÎȘȚŞŢ")


def _share(data: bytes, encoding: str, alphabet: frozenset[str]) -> float:
    """The share of the non-ASCII letters of the first 64 KiB read as ``encoding`` that ``alphabet`` holds."""
    try:
        text = data[:65536].decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return -1.0
    letters = [c for c in text if c.isalpha() and not c.isascii()]
    return sum(c in alphabet for c in letters) / len(letters) if letters else 0.0


def _broken_words(data: bytes, encoding: str) -> int:
    """Symbols or digits between two letters (``Za¿ó³æ``: Polish read as cp1252) in the first 64 KiB."""
    try:
        text = data[:65536].decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return 1 << 30
    return sum(
        1
        for a, c, b in zip(text, text[1:], text[2:], strict=False)
        if a.isalpha() and b.isalpha() and not c.isalpha() and not c.isspace() and c not in "'’-."
    )


def _oddity(data: bytes, encoding: str) -> int:
    """How implausible the first 64 KiB read as ``encoding`` are: stray symbols (not letters, digits or
    common punctuation), plus words that mix ASCII letters with letters of another script (``Naﺅve``)."""
    import unicodedata

    try:
        text = data[:65536].decode(encoding, errors="strict")
    except (UnicodeDecodeError, LookupError):
        return 1 << 30
    odd = sum(1 for ch in text if not ch.isalnum() and ch not in _PLAIN)
    for word in re.findall(r"\w+", text):
        if word.isascii() or not any(c.isascii() and c.isalpha() for c in word):
            continue
        if any(c.isalpha() and not c.isascii() and not unicodedata.name(c, "").startswith("LATIN") for c in word):
            odd += 1
    return odd
