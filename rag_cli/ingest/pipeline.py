"""The index pipeline: walk, load and chunk (producer) -> embed -> write (consumer).

Producer and consumer are tasks on the event loop joined by a bounded
``asyncio.Queue``, so memory stays flat however large the corpus: at most
``index_queue_files`` loaded files wait for the embedder. Every blocking step
(stat, read, parse, tokenize, embed, SQLite, FAISS) runs on the runtime pool.
Files are embedded in groups of a few hundred chunks so the model sees full,
length-sorted batches. A checkpoint commits a new generation every
``index_checkpoint_seconds``, so a killed run loses at most that much work.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runtime
from ..config import Settings
from ..embed.base import Embedder
from ..errors import RagError
from ..store.writer import FileState, IndexWriter
from ..types import Chunk
from . import budget
from .chunking import ChunkerConfig, chunk_document
from .loaders import SkipFile, load_bytes
from .walk import Found, walk

EMBED_GROUP = 256  # chunks handed to one embed call (sorted by length inside it)


@dataclass
class IndexReport:
    index: str
    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    loop_lag_ms: dict[str, float] = field(default_factory=dict)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_added / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "files": {
                "seen": self.files_seen,
                "indexed": self.files_indexed,
                "unchanged": self.files_unchanged,
                "removed": self.files_removed,
                "skipped": len(self.skipped),
            },
            "skipped": self.skipped,
            "chunks": {"added": self.chunks_added, "removed": self.chunks_removed},
            "seconds": round(self.seconds, 3),
            "chunks_per_s": round(self.chunks_per_s, 1),
            "loop_lag_ms": self.loop_lag_ms,
        }


class Progress:
    """Receives progress events; the CLI renders them. All methods are optional no-ops."""

    def start(self, files: int) -> None: ...
    def file_done(self, path: str) -> None: ...
    def chunks_queued(self, n: int) -> None: ...
    def chunks_done(self, n: int) -> None: ...
    def warn(self, message: str) -> None: ...


@dataclass
class _Prepared:
    found: Found
    size: int
    mtime_ns: int
    digest: str
    kind: str
    chunks: list[Chunk]


@dataclass
class _Skip:
    found: Found
    reason: str


@dataclass
class _Same:
    found: Found
    size: int
    mtime_ns: int


def fingerprint(embedder: Embedder, chunker: ChunkerConfig) -> dict[str, Any]:
    return {"embedder": embedder.fingerprint(), "chunker": chunker.fingerprint()}


def chunker_config(settings: Settings, embedder: Embedder) -> ChunkerConfig:
    max_tokens = min(settings.chunk_max_tokens, embedder.max_tokens)
    return ChunkerConfig(max_tokens=max_tokens, overlap=min(settings.chunk_overlap, max_tokens // 2))


def _prepare(found: Found, state: FileState | None, max_bytes: int, rebuild: bool,
             count: Callable[[list[str]], list[int]], cfg: ChunkerConfig,
             budget_s: float = 0.0) -> _Prepared | _Skip | _Same:  # fmt: skip
    with budget.limit(budget_s):
        try:
            return _prepare_file(found, state, max_bytes, rebuild, count, cfg)
        except SkipFile as exc:  # the time budget ran out in the chunker
            return _Skip(found, exc.reason)


def _prepare_file(found: Found, state: FileState | None, max_bytes: int, rebuild: bool,
                  count: Callable[[list[str]], list[int]], cfg: ChunkerConfig) -> _Prepared | _Skip | _Same:  # fmt: skip
    path = found.path
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return _Skip(found, "not a regular file")
        if st.st_size > max_bytes:
            return _Skip(found, f"too large: {st.st_size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB limit")
        if st.st_size == 0:
            return _Skip(found, "empty file")
        if state and not rebuild and state.size == st.st_size and state.mtime_ns == st.st_mtime_ns:
            return _Same(found, st.st_size, st.st_mtime_ns)
        # no following a link swapped in since the walk, no blocking on a FIFO swapped in since the stat
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return _Skip(found, "not a regular file")
            data = fh.read(max_bytes + 1)
    except PermissionError:
        return _Skip(found, "unreadable: permission denied")
    except OSError as exc:
        return _Skip(found, f"unreadable: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return _Skip(found, "too large")
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if state and not rebuild and state.hash == digest:
        return _Same(found, st.st_size, st.st_mtime_ns)
    try:
        docs = load_bytes(str(path), data)
    except SkipFile as exc:
        return _Skip(found, exc.reason)
    except RecursionError:
        return _Skip(found, "malformed: nesting too deep")
    except Exception as exc:  # a loader's (or its library's) failure is this file's problem, not the run's
        return _Skip(found, f"unreadable {path.suffix.lstrip('.') or 'file'}: {type(exc).__name__}: {str(exc)[:120]}")
    chunks: list[Chunk] = []
    for doc in docs:
        for ch in chunk_document(doc, count, cfg):
            ch.ordinal = len(chunks)
            chunks.append(ch)
    if not chunks:
        return _Skip(found, "empty: no text")
    return _Prepared(found, st.st_size, st.st_mtime_ns, digest, docs[0].kind, chunks)


async def embed_parallel(embedder: Embedder, texts: list[str]) -> Any:
    """Embed ``texts`` on the pool, split into ``embedder.parallel_calls`` concurrent calls when it
    asks for that (length-interleaved parts, so each pads about as little as the whole would)."""
    import numpy as np

    n = int(getattr(embedder, "parallel_calls", 1) or 1)
    if n <= 1 or len(texts) < 16 * n:
        return await runtime.run_blocking(embedder.embed, texts, stage="embed")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = [order[j::n] for j in range(n)]
    outs = await asyncio.gather(
        *(runtime.run_blocking(embedder.embed, [texts[i] for i in part], stage="embed") for part in parts)
    )
    vecs = np.empty((len(texts), outs[0].shape[1]), dtype=np.float32)
    for part, out in zip(parts, outs, strict=True):
        vecs[part] = out
    return vecs


async def index_paths(
    paths: list[str | Path],
    settings: Settings,
    embedder: Embedder,
    *,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> IndexReport:
    """Bring the index named in ``settings`` up to date with ``paths``."""
    prog = progress or Progress()
    t0 = time.perf_counter()
    report = IndexReport(index=settings.index)
    walk_skips: list[tuple[Path, str]] = []
    found: list[Found] = await runtime.run_blocking(
        lambda: list(
            walk(paths, follow_links=settings.index_follow_links, on_skip=lambda p, r: walk_skips.append((p, r)))
        ),
        stage="walk",
    )
    for p, reason in walk_skips:
        report.skipped.append({"path": str(p), "reason": reason})
        prog.warn(f"skipped {p}: {reason}")
    dir_roots = [Path(p).expanduser().resolve() for p in paths if Path(p).expanduser().is_dir()]
    cfg = chunker_config(settings, embedder)
    writer = IndexWriter(
        settings.index_dir,
        fingerprint(embedder, cfg),
        dim=embedder.dim,
        rebuild=rebuild,
        lock_wait=settings.index_lock_wait,
        on_wait=prog.warn,
        ann_threshold=settings.index_ann_threshold,
        ann_nprobe=settings.index_ann_nprobe,
    )
    try:
        await runtime.run_blocking(writer.__enter__)
    except OSError as exc:  # RAG_HOME read-only, a file, on a full disk ...
        from ..errors import ConfigError

        raise ConfigError(
            f"cannot create index {settings.index!r} in {settings.home}: {exc.strerror or exc}",
            hint="set RAG_HOME to a writable folder",
        ) from None
    ok = False
    try:
        await _run(writer, found, dir_roots, settings, embedder, cfg, rebuild, prog, report)
        ok = True
        await runtime.run_blocking(writer.__exit__, None, None, None)
    except (OSError, sqlite3.OperationalError) as exc:
        if not ok:
            await asyncio.shield(runtime.run_blocking(writer.__exit__, RuntimeError, None, None))
        reason = getattr(exc, "strerror", None) or str(exc)
        raise RagError(
            f"cannot write index {settings.index!r}: {reason}",
            hint="free disk space (or raise the limit) and run again; the last committed index is intact",
        ) from None
    except BaseException:
        if not ok:
            await asyncio.shield(runtime.run_blocking(writer.__exit__, RuntimeError, None, None))
        raise
    report.seconds = time.perf_counter() - t0
    report.loop_lag_ms = runtime.loop_lag.summary()  # how well the loop kept orchestrating while it all ran
    prepare = getattr(embedder, "prepare_query_encoder", None)
    if callable(prepare) and report.chunks_added:
        # the model is loaded now: export the fast query encoder once for later searches
        try:
            await runtime.run_blocking(prepare, stage="prepare_queries")
        except Exception as exc:  # an optional speed-up; searching falls back to torch
            prog.warn(f"fast query encoder unavailable ({exc}); searches will use PyTorch")
    return report


async def _run(writer: IndexWriter, found: list[Found], dir_roots: list[Path], settings: Settings,
               embedder: Embedder, cfg: ChunkerConfig, rebuild: bool, prog: Progress,
               report: IndexReport) -> None:  # fmt: skip
    states = await runtime.run_blocking(writer.file_states)
    seen = {str(f.path) for f in found}
    report.files_seen = len(found)
    prog.start(len(found))

    # files under the walked folders that are gone (or newly ignored) leave the index
    def gone(path: str) -> bool:
        p = Path(path)
        return path not in seen and (rebuild or any(r == p or r in p.parents for r in dir_roots) or not p.exists())

    for path in [p for p in states if gone(p)]:
        if rebuild:
            continue
        report.chunks_removed += await runtime.run_blocking(writer.remove_file, path)
        report.files_removed += 1

    max_bytes = int(settings.index_max_file_mb * 1e6)
    queue: asyncio.Queue[_Prepared | None] = asyncio.Queue(maxsize=max(1, settings.index_queue_files))
    count = embedder.count_tokens
    budget_s = settings.index_file_timeout
    hard_timeout = budget_s * 2 + 1 if budget_s > 0 else None

    async def produce() -> None:
        for f in found:
            try:
                item = await asyncio.wait_for(
                    runtime.run_blocking(_prepare, f, states.get(str(f.path)), max_bytes, rebuild, count, cfg,
                                         budget_s, stage="load"),
                    timeout=hard_timeout,
                )  # fmt: skip
            except TimeoutError:
                runtime.note_abandoned()
                item = _Skip(f, f"parser stuck for {hard_timeout:g} s (time budget {budget_s:g} s); left running")
            if isinstance(item, _Prepared):
                prog.chunks_queued(len(item.chunks))
                await queue.put(item)
                continue
            state = states.get(str(f.path))
            if isinstance(item, _Same):
                report.files_unchanged += 1
                if state and (state.size, state.mtime_ns) != (item.size, item.mtime_ns):
                    await runtime.run_blocking(writer.touch_file, state, item.size, item.mtime_ns)
            else:
                report.skipped.append({"path": str(f.path), "reason": item.reason})
                prog.warn(f"skipped {f.path}: {item.reason}")
                if state is not None and not rebuild:
                    report.chunks_removed += await runtime.run_blocking(writer.remove_file, str(f.path))
            prog.file_done(str(f.path))
        # the end marker only on success: on failure or cancellation the TaskGroup cancels consume()
        # (a put in a finally could wait forever on a full queue whose consumer is gone)
        await queue.put(None)

    async def consume() -> None:
        last_checkpoint = time.monotonic()
        done = False
        while not done:
            group: list[_Prepared] = []
            n = 0
            item = await queue.get()
            if item is None:
                break
            group.append(item)
            n += len(item.chunks)
            while n < EMBED_GROUP:
                try:
                    nxt = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    done = True
                    break
                group.append(nxt)
                n += len(nxt.chunks)
            texts = [c.embedding_text() for p in group for c in p.chunks]
            t = time.perf_counter()
            vecs = await embed_parallel(embedder, texts)
            report.embed_seconds += time.perf_counter() - t
            offset = 0
            for p in group:
                k = len(p.chunks)
                removed = await runtime.run_blocking(
                    writer.add_file, str(p.found.path), p.size, p.mtime_ns, p.digest, p.kind, p.chunks,
                    vecs[offset : offset + k],
                )  # fmt: skip
                offset += k
                report.files_indexed += 1
                report.chunks_added += k
                report.chunks_removed += removed
                prog.file_done(str(p.found.path))
            prog.chunks_done(n)
            if time.monotonic() - last_checkpoint >= settings.index_checkpoint_seconds:
                await runtime.run_blocking(writer.checkpoint, stage="checkpoint")
                last_checkpoint = time.monotonic()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(produce())
        tg.create_task(consume())
