"""`rag index PATH...`: build or update an index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app
from .common import ConfigOpt, IndexOpt, JsonOpt, WorkersOpt, settings_from
from .output import Env, clean, get_env


class _RichProgress:
    """A Rich progress bar on stderr: files, chunks, chunks/s, ETA."""

    def __init__(self, env: Env) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self.env = env
        self.console = env.console("stderr")
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.files = self.progress.add_task("files", total=None, rate="")
        self.chunks = self.progress.add_task("chunks", total=0, rate="")
        self.queued = 0
        self.done = 0
        self.t0 = 0.0

    def __enter__(self) -> _RichProgress:
        import time

        self.t0 = time.perf_counter()
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, files: int) -> None:
        self.progress.update(self.files, total=files)

    def file_done(self, path: str) -> None:
        self.progress.advance(self.files)

    def chunks_queued(self, n: int) -> None:
        self.queued += n
        self.progress.update(self.chunks, total=self.queued)

    def chunks_done(self, n: int) -> None:
        import time

        self.done += n
        rate = self.done / max(1e-6, time.perf_counter() - self.t0)
        self.progress.update(self.chunks, advance=n, rate=f"{rate:.0f} chunks/s")

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {clean(message)}", markup=False, highlight=False)


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


@app.command("index")
def index_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to index.", show_default=False)],
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
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Index files and folders: load, chunk, embed and store them (incremental)."""
    from .. import runtime
    from ..embed import base as embed_base
    from ..ingest.pipeline import index_paths
    from ..ingest.walk import walk

    env = get_env()
    settings = settings_from(
        config, index=index, embed_model=model, chunk_max_tokens=chunk_tokens, chunk_overlap=overlap,
        index_max_file_mb=max_file_mb, index_lock_wait=wait, workers=workers, index_follow_links=follow_links,
    )  # fmt: skip
    for p in paths:  # fail fast on a missing path, before loading anything
        next(iter(walk([p])), None)
    embedder = embed_base.create(settings)
    progress: Any = _RichProgress(env) if env.stderr_tty and not json_out else _PlainProgress(env)
    with progress:
        report = runtime.run(
            index_paths(list(paths), settings, embedder, rebuild=rebuild, progress=progress),
            workers=settings.effective_workers(),
        )
    if json_out:
        env.json(report.to_dict())
        return
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    env.err(
        f"indexed {report.files_indexed} files ({report.chunks_added} chunks), "
        f"{report.files_unchanged} unchanged, {report.files_removed} removed{skipped} "
        f"in {report.seconds:.1f}s ({report.chunks_per_s:.0f} chunks/s) -> index '{report.index}'"
    )
