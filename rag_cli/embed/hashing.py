"""A deterministic, dependency-light embedder: hashed bag of word unigrams and bigrams.

It is the fast test double for unit tests (``embed_backend = "hash"``) and a
usable lexical fallback on machines without a model. Tokens are lower-cased
words; counting is by words.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import BaseEmbedder, register

if TYPE_CHECKING:
    import numpy as np

    from ..config import Settings

_WORD = re.compile(r"\w+")


class HashEmbedder(BaseEmbedder):
    name = "hash"

    def __init__(self, dim: int = 256, max_tokens: int = 256) -> None:
        self.dim = dim
        self.max_tokens = max_tokens

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "hash", "model": "hash-bow-v1", "dim": self.dim}

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def _bucket(self, token: str) -> tuple[int, float]:
        h = hashlib.blake2b(token.encode(), digest_size=8).digest()
        return int.from_bytes(h[:4], "little") % self.dim, (1.0 if h[4] & 1 else -1.0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = [w.lower() for w in _WORD.findall(text)]
            for tok in words + [a + " " + b for a, b in itertools.pairwise(words)]:
                j, sign = self._bucket(tok)
                out[i, j] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        unit: np.ndarray = out / norms
        return unit

    def embed_query(self, text: str) -> np.ndarray:
        vec: np.ndarray = self.embed([text])[0]
        return vec


def _factory(settings: Settings) -> HashEmbedder:
    return HashEmbedder()


register("hash", _factory)
