"""A test plugin: the hash embedder slowed down, so a subprocess can be killed mid-run."""

from __future__ import annotations

import os
import time

from rag_cli.embed.base import register
from rag_cli.embed.hashing import HashEmbedder


class SlowHashEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.delay = float(os.environ.get("RAG_TEST_EMBED_DELAY", "0.02"))

    def embed(self, texts):  # type: ignore[no-untyped-def]
        mark = os.environ.get("RAG_TEST_EMBED_MARK")
        if mark:  # tells a test that a batch is being embedded now
            with open(mark, "a") as fh:
                fh.write(f"{len(texts)}\n")
        time.sleep(self.delay)
        return super().embed(texts)


register("slow-hash", lambda settings: SlowHashEmbedder())
