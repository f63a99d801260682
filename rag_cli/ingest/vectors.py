"""Vectors for the index pipeline: chunk texts embedded on the runtime pool in rounds of similar length,
each distinct text once per run, and the stored vectors of a file already indexed under another name reused."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import runtime
from ..embed.base import Embedder
from ..store.base import Writer
from .stages import timed_call

if TYPE_CHECKING:
    from .pipeline import IndexReport

EMBED_SLICE = 256  # chunks per round of parallel embed calls within a group (progress is reported per round)


async def embed_parallel(embedder: Embedder, texts: list[str], done: Callable[[int], None] | None = None) -> Any:
    """Embed ``texts`` on the pool: sorted by length, in rounds of ``EMBED_SLICE`` texts of similar length,
    each round split into ``embedder.parallel_calls`` concurrent calls when it asks for that
    (length-interleaved parts, so each pads about as little as the whole would); ``done(k)`` after
    each round."""
    import numpy as np

    n = max(1, embedder.parallel_calls)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vecs: Any = None
    for start in range(0, len(order), EMBED_SLICE * n):
        idx = order[start : start + EMBED_SLICE * n]
        parts = [idx[j::n] for j in range(n)] if len(idx) >= 16 * n else [idx]
        outs = await asyncio.gather(
            *(runtime.run_blocking(embedder.embed, [texts[i] for i in part], stage="embed") for part in parts)
        )
        if vecs is None:
            vecs = np.empty((len(texts), outs[0].shape[1]), dtype=np.float32)
        for part, out in zip(parts, outs, strict=True):
            vecs[part] = out
        if done is not None:
            done(len(idx))
    return vecs


class KnownVectors:
    """Each distinct chunk text is embedded once per run (boilerplate, repeated headers and footers, the same
    file twice), and a file whose content is already indexed under another name reuses its stored vectors.
    Keeps the last ``limit`` vectors of the run (384 floats each: 20,000 are 31 MB)."""

    def __init__(self, embedder: Embedder, writer: Writer, report: IndexReport, limit: int = 20_000) -> None:
        self.embedder, self.writer, self.report, self.limit = embedder, writer, report, limit
        self.cache: OrderedDict[str, Any] = OrderedDict()

    async def embed(self, texts: list[str], digests: list[str], done: Callable[[int], None] | None = None) -> Any:
        """Vectors of ``texts``; ``done(k)`` as k of them are ready."""
        import numpy as np

        for digest in dict.fromkeys(digests):
            await self.remember(digest)
        have = {t: self.cache[t] for t in texts if t in self.cache}
        todo = [t for t in dict.fromkeys(texts) if t not in have]
        if todo:
            t0 = time.perf_counter()
            new = await embed_parallel(self.embedder, todo, done)
            self.report.clock.add("embed", time.perf_counter() - t0)
            for text, v in zip(todo, new, strict=True):
                have[text] = v
                self._keep(text, v)
        self.report.chunks_embedded += len(todo)
        if done is not None and len(texts) > len(todo):
            done(len(texts) - len(todo))  # the ones known already
        out = np.empty((len(texts), self.embedder.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = have[t]
        return out

    async def remember(self, digest: str) -> None:
        """Keep the stored vectors of the chunks of files whose content hash is ``digest``."""
        lookup = timed_call(self.report.clock, "write", self.writer.vectors_of_content)
        stored = await runtime.run_blocking(lookup, digest, self.embedder.dim)
        for text, vec in stored.items():
            self._keep(text, vec)

    def _keep(self, text: str, vec: Any) -> None:
        self.cache[text] = vec
        self.cache.move_to_end(text)
        while len(self.cache) > self.limit:
            self.cache.popitem(last=False)
