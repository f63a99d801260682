"""`rag index PATH...`: build or update an index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app
from .common import ConfigOpt, IndexOpt, JsonOpt, StoreOpt, WorkersOpt, settings_from
from .output import Env, clean, get_env


class _RichProgress:
    """A Rich progress display on stderr: files read (a count), and one bar for the work, the share of the text
    to embed that is embedded (the estimate the ETA uses), with chunks, chunks/s and the ETA. Two percentages
    (files, chunks) disagreed: one big file leaves the files at 44% with the chunks known so far at 77%."""

    def __init__(self, env: Env) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
        from rich.text import Text

        class OnlyMeasured(BarColumn):  # the files line counts, with no bar (a pulse would read as progress)
            def render(self, task: Any) -> Any:
                return Text("") if task.total is None else super().render(task)

        self.env = env
        self.console = env.console("stderr")
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            OnlyMeasured(),
            TaskProgressColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            transient=True,
        )
        # the files line counts (no bar of its own); the text line's bar is the share of the text embedded
        self.files = self.progress.add_task("files", total=None, count="", rate="", eta="")
        self.chunks = self.progress.add_task("text", total=SHARE, count="", rate="", eta="")
        self.n_files = 0
        self.files_done = 0
        self.queued = 0
        self.done = 0
        self.t0 = 0.0
        self.eta = Eta()

    def __enter__(self) -> _RichProgress:
        import time

        self.t0 = time.perf_counter()
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, files: int) -> None:
        self.n_files = files
        self.progress.update(self.files, count=f"{self.files_done}/{files}")

    def file_done(self, path: str) -> None:
        self.files_done += 1
        self.progress.update(self.files, count=f"{self.files_done}/{self.n_files}")

    def chunks_queued(self, n: int) -> None:
        self.queued += n
        self.progress.update(self.chunks, count=f"{self.done}/{self.queued} chunks")

    def chunks_done(self, n: int) -> None:
        import time

        self.done += n
        rate = self.done / max(1e-6, time.perf_counter() - self.t0)
        self.progress.update(self.chunks, count=f"{self.done}/{self.queued} chunks", rate=f"{rate:.0f} chunks/s")

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {clean(message)}", markup=False, highlight=False)

    def note(self, message: str) -> None:
        self.console.print(clean(message), markup=False, highlight=False)

    def plan(self, total_bytes: int) -> None:
        self.eta.total_bytes = total_bytes

    def read(self, nbytes: int) -> None:
        self.eta.read_bytes += nbytes

    def text_queued(self, chars: int) -> None:
        self.eta.queued += chars

    def text_done(self, chars: int) -> None:
        self.eta.done(chars)
        left = self.eta.seconds_left()
        self.progress.update(
            self.chunks,
            completed=round(self.eta.share_done() * SHARE),
            eta="" if left is None else f"~{_clock(left)} left",
        )


SHARE = 1000  # the text bar's total: its completed is the share of the text embedded, in thousandths


class Eta:
    """Time left = text still to embed / the embedding rate so far. Text still to embed is what is queued
    plus what the unread files will give (their bytes at the characters-per-byte seen so far); embedding
    time follows tokens, and tokens follow characters, where file counts say little (one file may hold
    thousands of chunks, an unchanged one none)."""

    def __init__(self) -> None:
        import time

        self.total_bytes = 0
        self.read_bytes = 0
        self.queued = 0
        self.embedded = 0
        self.first = 0
        self.t_first: float | None = None
        self._now = time.perf_counter

    def done(self, chars: int) -> None:
        if self.t_first is None:  # the first group's time includes loading the model: start after it
            self.t_first = self._now()
            self.first = chars
            return
        self.embedded += chars

    def text_total(self) -> float:
        """The text this run embeds, estimated: what is queued plus what the unread files will give."""
        per_byte = self.queued / self.read_bytes if self.read_bytes else 0.0
        return self.queued + max(0, self.total_bytes - self.read_bytes) * per_byte

    def share_done(self) -> float:
        """The share of :meth:`text_total` embedded (0 to 1)."""
        total = self.text_total()
        return min(1.0, (self.first + self.embedded) / total) if total > 0 else 0.0

    def seconds_left(self) -> float | None:
        if self.t_first is None or self.embedded <= 0:
            return None
        rate = self.embedded / max(1e-6, self._now() - self.t_first)
        return max(0.0, self.text_total() - self.first - self.embedded) / rate


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _PlainProgress:
    def __init__(self, env: Env) -> None:
        self.env = env

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def start(self, files: int) -> None: ...
    def file_done(self, path: str) -> None: ...
    def chunks_queued(self, n: int) -> None: ...
    def chunks_done(self, n: int) -> None: ...

    def warn(self, message: str) -> None:
        self.env.warn(message)

    def note(self, message: str) -> None:
        self.env.err(message)

    def plan(self, total_bytes: int) -> None: ...
    def read(self, nbytes: int) -> None: ...
    def text_queued(self, chars: int) -> None: ...
    def text_done(self, chars: int) -> None: ...


@app.command("index")
def index_cmd(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="Files and folders to index.", show_default=False)
    ],
    index: IndexOpt = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild from scratch (new settings or model).")] = False,
    json_out: JsonOpt = False,
    model: Annotated[
        str | None, typer.Option("--embed-model", help="sentence-transformers model path or name.")
    ] = None,
    chunk_tokens: Annotated[
        int | None, typer.Option("--chunk-tokens", min=16, help="Max tokens per chunk (default 200).")
    ] = None,
    overlap: Annotated[
        int | None, typer.Option("--chunk-overlap", min=0, help="Overlap tokens between chunks (default 32).")
    ] = None,
    max_file_mb: Annotated[
        float | None, typer.Option("--max-file-mb", help="Skip files larger than this (default 20).")
    ] = None,
    wait: Annotated[
        float | None, typer.Option("--wait", help="Seconds to wait for another writer's lock (default 10).")
    ] = None,
    follow_links: Annotated[
        bool | None,
        typer.Option("--follow-links", help="Also index symlinks whose target is outside the indexed folders."),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Index only files matching this gitignore-style glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Never index files or folders matching this glob (repeatable)."),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="After indexing, keep the index fresh as files change (Ctrl-C stops).")
    ] = False,
    workers: WorkersOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Index files and folders: load, chunk, embed and store them (incremental)."""
    from .. import runtime
    from ..embed import base as embed_base
    from ..ingest.pipeline import index_paths
    from ..ingest.walk import walk

    env = get_env()
    settings = settings_from(
        config,
        store_url=store,
        index=index,
        embed_model=model,
        chunk_max_tokens=chunk_tokens,
        chunk_overlap=overlap,
        index_max_file_mb=max_file_mb,
        index_lock_wait=wait,
        workers=workers,
        index_follow_links=follow_links,
        index_include=include or None,
        index_exclude=exclude or None,
    )
    for p in paths:  # fail fast on a missing path, before loading anything
        next(iter(walk([p])), None)
    embedder = embed_base.create(settings)
    progress: Any = _RichProgress(env) if env.stderr_tty and not json_out else _PlainProgress(env)
    try:
        with progress:
            report = runtime.run(
                index_paths(list(paths), settings, embedder, rebuild=rebuild, progress=progress),
                workers=settings.effective_workers(),
            )
    except KeyboardInterrupt:
        # the work since the last checkpoint is rolled back at once (a running embedding batch is not waited for)
        env.err(f"stopped: index {settings.index!r} keeps what its last checkpoint committed; run again to go on")
        raise
    if json_out:
        env.json(report.to_dict())
    else:
        _summary(env, report)
    if watch:
        _watch(env, list(paths), settings, embedder, json_out)


def _summary(env: Env, report: Any) -> None:
    from ..ingest.encoding import EMPTY

    empty = sum(1 for s in report.skipped if s["reason"] == EMPTY)
    skipped = f", {len(report.skipped)} skipped" + (f" ({empty} empty)" if empty else "") if report.skipped else ""
    env.err(
        f"indexed {report.files_indexed} files ({report.chunks_added} chunks), "
        f"{report.files_unchanged} unchanged, {report.files_removed} removed{skipped} "
        f"in {report.seconds:.1f}s ({report.chunks_per_s:.0f} chunks/s) -> index '{report.index}'"
    )


def _watch(env: Env, paths: list[Path], settings: Any, embedder: Any, json_out: bool) -> None:
    """``--watch``: one incremental run per debounced batch of changes, until Ctrl-C (exit 0) or SIGTERM."""
    from .. import runtime
    from ..ingest.watch import Batch, watch

    def on_batch(batch: Batch) -> None:
        if json_out:  # JSON Lines: one object a batch
            env.json(batch.to_dict())
            return
        r = batch.report
        env.err(
            f"watch: {len(batch.changed)} changed, {len(batch.removed)} removed -> {r.files_indexed} indexed, "
            f"{r.files_removed} removed, {len(r.skipped)} skipped in {r.seconds:.1f}s (generation {r.generation})"
        )

    names = ", ".join(str(p) for p in paths)
    try:
        runtime.run(
            watch(
                paths,
                settings,
                embedder,
                on_batch,
                progress=_PlainProgress(env),
                debounce_ms=settings.index_watch_debounce_ms,
                ready=lambda: env.err(f"watching {names} (Ctrl-C stops)"),
            ),
            workers=settings.effective_workers(),
        )
    except KeyboardInterrupt:
        env.err("stopped watching; the index holds the last batch")
