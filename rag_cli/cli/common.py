"""Options shared by several commands, and settings built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import Settings, load_settings

IndexOpt = Annotated[str | None, typer.Option("--index", "-i", help="Index name (env RAG_INDEX; default 'default').")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Config file (default: ./rag.toml, then the user config).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Thread-pool size (env RAG_WORKERS; default: cores).")
]
KOpt = Annotated[int | None, typer.Option("-k", "--k", min=1, max=1000, help="How many passages (default 10).")]
ModeOpt = Annotated[str | None, typer.Option("--mode", "-m", help="dense | bm25 | hybrid (default hybrid).")]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", help="Use a running `rag serve`: URL, auto (the one for this index; default) or off."),
]
PathOpt = Annotated[
    list[str] | None,
    typer.Option("--path", help="Only files matching this glob (repeatable; '!GLOB' excludes): 'docs/*.md'."),
]
TypeOpt = Annotated[str | None, typer.Option("--type", help="Only these file types: md,pdf.")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only files modified since a date (2026-01-01) or an age (7d, 12h).")
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", help="postgresql://user@host/db: a shared PostgreSQL store (env RAG_STORE_URL; default: local)."
    ),
]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", help="Deadline per source in seconds (default 2).")]


def filter_from(paths: list[str] | None, types: str | None, since: str | None) -> Any:
    """The retrieval filter the --path, --type and --since options ask for (None: the whole index)."""
    if not (paths or types or since):
        return None
    from ..retrieve.filters import make_filter

    return make_filter(paths, types, since) or None


def settings_from(config: Path | None = None, **overrides: Any) -> Settings:
    from ..plugins import load_plugins

    load_plugins()
    return load_settings(config, **overrides)
