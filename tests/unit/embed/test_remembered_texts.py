"""Sentence vectors kept across answers (embed/batcher.RememberedTexts): what evidence scoring and verification
embed again when a follow-up or another question retrieves the same passages."""

from __future__ import annotations

import threading

import numpy as np

from rag_cli.embed.batcher import RememberedTexts


class Counting:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([np.array([len(t), ord(t[0])], dtype=np.float32) for t in texts])


def test_new_texts_are_embedded_once_in_one_call_and_kept() -> None:
    embed = Counting()
    kept = RememberedTexts(embed, size=3)
    out = kept(["ab", "c", "ab"])
    assert embed.calls == [["ab", "c"]] and out.tolist() == [[2, 97], [1, 99], [2, 97]]
    assert kept(["c", "ddd"]).tolist() == [[1, 99], [3, 100]]
    assert embed.calls[-1] == ["ddd"] and (kept.hits, kept.misses) == (1, 3)


def test_the_least_recently_used_text_goes_first() -> None:
    embed = Counting()
    kept = RememberedTexts(embed, size=2)
    kept(["a", "b"])
    kept(["a"])  # "a" used again: "b" is now the oldest
    kept(["c"])
    kept(["a", "b"])
    assert embed.calls == [["a", "b"], ["c"], ["b"]]


def test_concurrent_callers_get_their_own_vectors() -> None:
    kept = RememberedTexts(Counting(), size=50)
    texts = [f"{chr(97 + i % 26)}{'x' * i}" for i in range(80)]
    errors: list[str] = []

    def run(offset: int) -> None:
        mine = texts[offset : offset + 40]
        got = kept(mine)
        if got.tolist() != [[len(t), ord(t[0])] for t in mine]:
            errors.append(f"wrong vectors at {offset}")

    threads = [threading.Thread(target=run, args=(i * 10,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(kept._kept) <= 50
