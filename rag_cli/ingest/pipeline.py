"""The index pipeline: walk, load and chunk (producer) -> embed -> write (consumer).

Producer and consumer are tasks on the event loop joined by a bounded
``asyncio.Queue``, so memory stays flat however large the corpus: at most
``index_queue_files`` loaded files and ``QUEUE_BYTES`` of chunk text wait for the
embedder. Every blocking step (stat, read, parse, tokenize, embed, SQLite, FAISS)
runs on the runtime pool. Files are embedded in groups of about ``EMBED_GROUP``
chunks, sorted by length across the whole group and run in slices of similar
length, so the model's batches pad little (bench/index.py: groups of ~100 chunks,
what a 64-file queue of small files gave, cost 25% more model time than 1,024). A checkpoint commits a new generation every
``index_checkpoint_seconds``, so a killed run loses at most that much work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runtime
from ..config import Settings
from ..embed.base import Embedder
from ..errors import RagError
from ..store import base as store_base
from ..store.base import Writer
from . import budget
from .chunking import ChunkerConfig
from .encoding import EMPTY
from .prepare import Big, Prepared, Same, SegmentedFile, Skip, prepare, segment_errors
from .stages import StageClock, timed_call
from .vectors import KnownVectors
from .walk import Found, IndexRules, walk

EMBED_GROUP = 1024  # chunks embedded together, sorted by length across the group
QUEUE_BYTES = 64 * 2**20  # chunk text waiting for the embedder, at most (one item over it waits for an empty queue)


def _stuck(hard_timeout: float | None, budget_s: float) -> str:
    return (
        f"parser stuck: no progress for {hard_timeout:g} s of running (time budget {budget_s:g} s of CPU"
        " per file or document, index.file_timeout); left running"
    )


class _Room:
    """A byte budget: :meth:`take` waits while what is taken and not given back would pass ``limit``
    (an item bigger than the whole budget waits until everything else is given back)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.cond = asyncio.Condition()

    async def take(self, n: int) -> None:
        async with self.cond:
            await self.cond.wait_for(lambda: self.used == 0 or self.used + n <= self.limit)
            self.used += n

    async def give(self, n: int) -> None:
        async with self.cond:
            self.used -= n
            self.cond.notify_all()


@dataclass
class IndexReport:
    index: str
    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)  # indexed, but the loader dropped parts
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_embedded: int = 0  # the rest had a text already embedded in this run, or a file's stored twin
    seconds: float = 0.0
    embed_seconds: float = 0.0
    loop_lag_ms: dict[str, float] = field(default_factory=dict)
    clock: StageClock = field(default_factory=StageClock)
    documents_by: str = ""  # what embedded the documents: onnx, torch, or another embedder's name
    generation: int = 0  # the index generation this run left

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
            "warnings": self.warnings,
            "chunks": {"added": self.chunks_added, "removed": self.chunks_removed, "embedded": self.chunks_embedded},
            "seconds": round(self.seconds, 3),
            "chunks_per_s": round(self.chunks_per_s, 1),
            "loop_lag_ms": self.loop_lag_ms,
            "stages": self.clock.report(),
            "documents_embedded_by": self.documents_by,
            "generation": self.generation,
        }


class Progress:
    """Receives progress events; the CLI renders them. All methods are optional no-ops."""

    def start(self, files: int) -> None: ...
    def file_done(self, path: str) -> None: ...
    def chunks_queued(self, n: int) -> None: ...
    def chunks_done(self, n: int) -> None: ...
    def warn(self, message: str) -> None: ...
    def note(self, message: str) -> None: ...
    # for an ETA from the text still to embed (embedding time follows tokens, and tokens characters),
    # not from files: bytes of all files found, bytes read so far, chunk characters queued and embedded
    def plan(self, total_bytes: int) -> None: ...
    def read(self, nbytes: int) -> None: ...
    def text_queued(self, chars: int) -> None: ...
    def text_done(self, chars: int) -> None: ...


async def settle_embedder(embedder: Embedder, prog: Progress) -> str:
    """Choose the document backend before the run (fp32 ONNX by default), exporting the model once,
    in the open: the export takes a while on a new machine and must not look like a slow first index."""
    needed = embedder.export_needed()
    if needed:
        prog.note("preparing the ONNX encoder of the embedding model (once per machine; needs PyTorch once)...")
    t = time.perf_counter()
    backend = await runtime.run_blocking(embedder.prepare_documents, stage="export")
    if needed and backend == "onnx":
        prog.note(f"ONNX encoder ready in {time.perf_counter() - t:.1f}s; documents embed with ONNX Runtime")
    reason = embedder.fallback_reason
    if reason:
        prog.warn(f"ONNX encoder unavailable ({reason[:200]}); documents embed with PyTorch (slower, same vectors)")
    return str(backend)


def fingerprint(embedder: Embedder, chunker: ChunkerConfig) -> dict[str, Any]:
    return {"embedder": embedder.fingerprint(), "chunker": chunker.fingerprint()}


def chunker_config(settings: Settings, embedder: Embedder) -> ChunkerConfig:
    max_tokens = min(settings.chunk_max_tokens, embedder.max_tokens)
    return ChunkerConfig(max_tokens=max_tokens, overlap=min(settings.chunk_overlap, max_tokens // 2))


class _GroupProgress:
    """Reports a group's chunks and text as the embedder finishes them (the bar and its ETA move per
    round of the embedder, not per group)."""

    def __init__(self, prog: Progress, chunks: int, nbytes: int) -> None:
        self.prog, self.chunks, self.nbytes = prog, chunks, nbytes
        self.chunks_shown = self.bytes_shown = 0

    def __call__(self, k: int) -> None:
        chunks = min(self.chunks, self.chunks_shown + k)
        nbytes = self.nbytes * chunks // max(1, self.chunks)
        self.prog.chunks_done(chunks - self.chunks_shown)
        self.prog.text_done(nbytes - self.bytes_shown)
        self.chunks_shown, self.bytes_shown = chunks, nbytes


def _sizes(found: list[Found]) -> list[int]:
    out = []
    for f in found:
        try:
            out.append(f.path.stat().st_size)
        except OSError:
            out.append(0)
    return out


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
        timed_call(
            report.clock,
            "walk",
            lambda: list(
                walk(
                    paths,
                    follow_links=settings.index_follow_links,
                    on_skip=lambda p, r: walk_skips.append((p, r)),
                    filters=IndexRules(settings.index_include, settings.index_exclude),
                )
            ),
        ),
        stage="walk",
    )
    for p, reason in walk_skips:
        report.skipped.append({"path": str(p), "reason": reason})
        prog.warn(f"skipped {p}: {reason}")
    dir_roots = [Path(p).expanduser().resolve() for p in paths if Path(p).expanduser().is_dir()]
    cfg = chunker_config(settings, embedder)
    writer = store_base.open_writer(
        settings, fingerprint(embedder, cfg), dim=embedder.dim, rebuild=rebuild, on_wait=prog.warn
    )
    entering = asyncio.ensure_future(runtime.run_blocking(writer.open))
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        # interrupted while the writer is being made (a --rebuild's new data folder): let it finish, then undo
        # it at once, so an interrupted run leaves nothing behind
        with contextlib.suppress(Exception):
            await entering
            await runtime.run_aside(writer.abort)
        raise
    except OSError as exc:  # RAG_HOME read-only, a file, on a full disk ...
        from ..errors import ConfigError

        raise ConfigError(
            f"cannot create index {settings.index!r} in {settings.home}: {exc.strerror or exc}",
            hint="set RAG_HOME to a writable folder",
        ) from None
    ok = False
    try:
        report.documents_by = await settle_embedder(embedder, prog)
        await _run(writer, found, dir_roots, settings, embedder, cfg, rebuild, prog, report)
        ok = True
        await runtime.run_blocking(timed_call(report.clock, "write", writer.commit))
    except (OSError, sqlite3.OperationalError) as exc:
        if not ok:
            await asyncio.shield(runtime.run_aside(writer.abort))
        reason = getattr(exc, "strerror", None) or str(exc)
        raise RagError(
            f"cannot write index {settings.index!r}: {reason}",
            hint="free disk space (or raise the limit) and run again; the last committed index is intact",
        ) from None
    except BaseException:
        if not ok:
            await asyncio.shield(runtime.run_aside(writer.abort))
        raise
    report.generation = writer.generation
    report.seconds = time.perf_counter() - t0
    report.loop_lag_ms = runtime.loop_lag.summary()  # how well the loop kept orchestrating while it all ran
    if report.chunks_added:
        # the model is loaded now: export the fast query encoder once for later searches
        try:
            await runtime.run_blocking(embedder.prepare_query_encoder, stage="prepare_queries")
        except Exception as exc:  # an optional speed-up; searching falls back to torch
            prog.warn(f"fast query encoder unavailable ({exc}); searches will use PyTorch")
    return report


async def _run(
    writer: Writer,
    found: list[Found],
    dir_roots: list[Path],
    settings: Settings,
    embedder: Embedder,
    cfg: ChunkerConfig,
    rebuild: bool,
    prog: Progress,
    report: IndexReport,
) -> None:
    """One indexing run: files that left are removed, then a producer loads and chunks files on the pool while
    a consumer embeds and writes them, through a queue bounded in files and in bytes."""
    run = _IndexRun(writer, found, settings, embedder, cfg, rebuild, prog, report)
    await run.remove_gone(dir_roots)
    sizes = await runtime.run_blocking(_sizes, found)
    prog.plan(sum(sizes))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(run.produce(sizes))
        tg.create_task(run.consume())


class _IndexRun:
    """The state one run's producer and consumer share (see :func:`_run`)."""

    def __init__(
        self,
        writer: Writer,
        found: list[Found],
        settings: Settings,
        embedder: Embedder,
        cfg: ChunkerConfig,
        rebuild: bool,
        prog: Progress,
        report: IndexReport,
    ) -> None:
        self.writer, self.found, self.settings, self.cfg = writer, found, settings, cfg
        self.rebuild, self.prog, self.report = rebuild, prog, report
        self.states: dict[str, Any] = {}
        self.known = KnownVectors(embedder, writer, report)
        self.max_bytes = int(settings.index_max_file_mb * 1e6)
        # what waits for the embedder is bounded in files and in text: one big file's parts, or many
        # small files, never hold more than about QUEUE_BYTES of chunk text
        self.queue: asyncio.Queue[Prepared | Skip | None] = asyncio.Queue(maxsize=max(1, settings.index_queue_files))
        self.room = _Room(QUEUE_BYTES)
        self.clock = report.clock
        self.count = self.clock.counting(embedder.count_tokens)
        self.budget_s = settings.index_file_timeout
        self.hard_timeout = self.budget_s * 2 + 1 if self.budget_s > 0 else None

    async def remove_gone(self, dir_roots: list[Path]) -> None:
        """Files under the walked folders that are gone (or newly ignored) leave the index."""
        self.states = await runtime.run_blocking(self.writer.file_states)
        seen = {str(f.path) for f in self.found}
        self.report.files_seen = len(self.found)
        self.prog.start(len(self.found))

        def gone(path: str) -> bool:
            p = Path(path)
            return path not in seen and (
                self.rebuild or any(r == p or r in p.parents for r in dir_roots) or not p.exists()
            )

        leaving = [p for p in self.states if gone(p)] if not self.rebuild else []
        if leaving and seen - self.states.keys():
            # a file that leaves while new ones arrive may have moved: keep its vectors for a new file
            # with its content (a rename in one run, as `--watch` sees it), before its rows are removed
            for path in leaving[: self.known.limit]:
                await self.known.remember(self.states[path].hash)
        for path in leaving:
            self.report.chunks_removed += await runtime.run_blocking(self.writer.remove_file, path)
            self.report.files_removed += 1

    async def blocking(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the pool; TimeoutError once it has shown no life for ``hard_timeout`` s of
        running (its wait in the pool's queue does not count)."""
        if self.hard_timeout is None:
            return await runtime.run_blocking(fn, *args, stage="load")
        heart = budget.Heartbeat()
        job = asyncio.ensure_future(runtime.run_blocking(budget.beating(heart, fn), *args, stage="load"))
        try:
            while True:
                done, _ = await asyncio.wait({job}, timeout=min(1.0, self.hard_timeout / 4))
                if done:
                    return job.result()
                if heart.stalled(self.hard_timeout):
                    raise TimeoutError
        finally:
            job.cancel()  # a no-op once done; the pool thread of a stuck job finishes in the background

    async def hand_on(self, item: Prepared) -> None:
        for note in item.notes:
            self.report.warnings.append({"path": str(item.found.path), "message": note})
            self.prog.warn(f"{item.found.path}: {note}")
        self.prog.chunks_queued(len(item.chunks))
        self.prog.text_queued(item.nbytes)
        await self.room.take(item.nbytes)
        await self.queue.put(item)

    async def stream_big(self, f: Found, big: Big) -> Prepared | Skip | Same | None:
        """Hand on a big file's parts; returns what to do with it when that is not parts."""
        seg = SegmentedFile(big, self.max_bytes, self.count, self.cfg, self.clock)
        state = self.states.get(str(f.path))
        parts = 0
        try:
            digest = await self.blocking(seg.digest)
            if state and not self.rebuild and state.hash == digest:
                return Same(f, big.size, big.mtime_ns)
            if not await self.blocking(seg.open):
                whole: Prepared | Skip | None = await self.blocking(seg.whole)
                return whole
            pending: Prepared | None = None
            while (nxt := await self.blocking(seg.next_part, self.budget_s)) is not None:
                chunks, notes = nxt
                if pending is not None:
                    await self.hand_on(pending)
                    parts += 1
                pending = Prepared(f, big.size, big.mtime_ns, "", seg.kind, chunks, notes, part=parts, last=False)
            if pending is None:
                return Skip(f, EMPTY)
            pending.digest, pending.last = digest, True
            await self.hand_on(pending)
            return None
        except TimeoutError:
            runtime.note_abandoned()
            return Skip(f, _stuck(self.hard_timeout, self.budget_s), partial=parts > 0)
        except Exception as exc:
            reason = segment_errors(exc)
            if reason is None:
                raise
            return Skip(f, reason, partial=parts > 0)
        finally:
            await runtime.run_blocking(seg.close)

    async def produce(self, sizes: list[int]) -> None:
        for f, size in zip(self.found, sizes, strict=True):
            await self.produce_one(f)
            self.prog.read(size)
        # the end marker only on success: on failure or cancellation the TaskGroup cancels consume()
        # (a put in a finally could wait forever on a full queue whose consumer is gone)
        await self.queue.put(None)

    async def produce_one(self, f: Found) -> None:
        try:
            item = await self.blocking(
                prepare,
                f,
                self.states.get(str(f.path)),
                self.max_bytes,
                self.rebuild,
                self.count,
                self.cfg,
                self.budget_s,
                self.clock,
            )
        except TimeoutError:
            runtime.note_abandoned()
            item = Skip(f, _stuck(self.hard_timeout, self.budget_s))
        if isinstance(item, Big):
            item = await self.stream_big(f, item)
            if item is None:
                return
        if isinstance(item, Prepared):
            await self.hand_on(item)
            return
        await self.settle(f, item)
        self.prog.file_done(str(f.path))

    async def settle(self, f: Found, item: Same | Skip) -> None:
        """A file that is not (re)indexed: unchanged (its times refreshed), or skipped (and its old rows gone)."""
        state = self.states.get(str(f.path))
        if isinstance(item, Same):
            self.report.files_unchanged += 1
            if state and (state.size, state.mtime_ns) != (item.size, item.mtime_ns):
                await runtime.run_blocking(self.writer.touch_file, state, item.size, item.mtime_ns)
            return
        self.report.skipped.append({"path": str(f.path), "reason": item.reason})
        if item.reason != EMPTY:  # an empty file (an __init__.py) is counted in the summary, not warned of each run
            self.prog.warn(f"skipped {f.path}: {item.reason}")
        if item.partial:
            await self.queue.put(item)  # the consumer drops the parts it wrote
        elif state is not None and not self.rebuild:
            self.report.chunks_removed += await runtime.run_blocking(self.writer.remove_file, str(f.path))

    async def consume(self) -> None:
        last_checkpoint = time.monotonic()
        partial: set[str] = set()  # files whose first parts are written and last part is not: no checkpoint
        done = False
        while not done:
            group, n, done = await self.next_group(partial)
            if not group:
                continue
            await self.write_group(group, n, partial)
            if not partial and time.monotonic() - last_checkpoint >= self.settings.index_checkpoint_seconds:
                await runtime.run_blocking(timed_call(self.clock, "write", self.writer.checkpoint), stage="checkpoint")
                last_checkpoint = time.monotonic()

    async def next_group(self, partial: set[str]) -> tuple[list[Prepared], int, bool]:
        """Up to EMBED_GROUP chunks of what waits (at least one item, waiting for it): (the files' items,
        their chunks, whether the end marker came). A big file that failed half-way drops what it had."""
        group: list[Prepared] = []
        n = 0
        while n < EMBED_GROUP:
            try:
                item = self.queue.get_nowait() if group else await self.queue.get()
            except asyncio.QueueEmpty:
                break
            if item is None:
                return group, n, True
            if isinstance(item, Skip):
                path = str(item.found.path)
                for g in [g for g in group if str(g.found.path) == path]:
                    group.remove(g)
                    n -= len(g.chunks)
                    await self.room.give(g.nbytes)
                partial.discard(path)
                self.report.chunks_added -= await runtime.run_blocking(self.writer.remove_file, path)
                continue
            group.append(item)
            n += len(item.chunks)
        return group, n, False

    async def write_group(self, group: list[Prepared], n: int, partial: set[str]) -> None:
        """Embed one group's chunks (vectors of known content reused) and write each file of it."""
        report = self.report
        texts = [c.embedding_text() for p in group for c in p.chunks]
        embedded = _GroupProgress(self.prog, n, sum(p.nbytes for p in group))
        t = time.perf_counter()
        vecs = await self.known.embed(texts, [p.digest for p in group if p.part == 0 and p.last], embedded)
        report.embed_seconds += time.perf_counter() - t
        offset = 0
        for p in group:
            k = len(p.chunks)
            path = str(p.found.path)
            add = timed_call(self.clock, "write", functools.partial(self.writer.add_file, append=p.part > 0))
            removed = await runtime.run_blocking(
                add, path, p.size, p.mtime_ns, p.digest, p.kind, p.chunks, vecs[offset : offset + k]
            )
            offset += k
            report.chunks_added += k
            report.chunks_removed += removed
            await self.room.give(p.nbytes)
            if p.last:
                partial.discard(path)
                report.files_indexed += 1
                self.prog.file_done(path)
            else:
                partial.add(path)
