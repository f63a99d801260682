"""`rag indexes`: list, inspect and drop named indexes."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer

from .app import app
from .common import ConfigOpt, JsonOpt, settings_from
from .output import get_env

indexes_app = typer.Typer(help="List, inspect and drop indexes.", no_args_is_help=False)
app.add_typer(indexes_app, name="indexes")


def _info(name: str, config: object) -> dict[str, object]:
    from ..store.reader import IndexReader

    settings = settings_from(config, index=name)  # type: ignore[arg-type]
    reader = IndexReader(settings.index_dir)
    try:
        return reader.stats()
    finally:
        reader.close()


@indexes_app.callback(invoke_without_command=True)
def indexes_root(ctx: typer.Context, json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """List indexes (the default action)."""
    if ctx.invoked_subcommand is None:
        list_cmd(json_out=json_out, config=config)


@indexes_app.command("list")
def list_cmd(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """List indexes with their size."""
    from ..errors import RagError
    from ..store.layout import list_indexes

    env = get_env()
    settings = settings_from(config)
    rows = []
    for name in list_indexes(settings.home):
        try:
            rows.append(_info(name, config))
        except RagError as exc:
            rows.append({"name": name, "error": str(exc)})
    if json_out:
        env.json({"home": str(settings.home), "indexes": rows})
        return
    if not rows:
        env.err(f"no indexes in {settings.home} (create one with `rag index PATH`)")
    for r in rows:
        if "error" in r:
            env.out(f"{r['name']}\tERROR: {r['error']}")
        else:
            env.out(f"{r['name']}\t{r['files']} files\t{r['chunks']} chunks\t{int(r['bytes']) / 1e6:.1f} MB")  # type: ignore[call-overload]


@indexes_app.command("info")
def info_cmd(name: Annotated[str, typer.Argument(metavar="[NAME]", help="Index name.")] = "default", json_out: JsonOpt = False,
             config: ConfigOpt = None) -> None:  # fmt: skip
    """Show an index's files, chunks, generation and fingerprint."""
    env = get_env()
    info = _info(name, config)
    if json_out:
        env.json(info)
        return
    for k, v in info.items():
        env.out(f"{k}: {_human(k, v)}")


def _human(key: str, value: object) -> str:
    """A value of `indexes info` as a person reads it: dates, sizes, nested tables flattened."""
    import datetime as dt

    if key.endswith("_at") and isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    if key == "bytes" and isinstance(value, int | float):
        return f"{value / 1e6:.1f} MB"
    if isinstance(value, dict):
        return "; ".join(f"{k} ({_human(str(k), v)})" if isinstance(v, dict) else f"{k}={v}" for k, v in value.items())
    return str(value)


@indexes_app.command("drop")
def drop_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Index name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Delete an index and all its files."""
    from ..errors import IndexNotFound, UsageError
    from ..store.layout import is_index_dir
    from ..store.lock import IndexLock

    env = get_env()
    settings = settings_from(config, index=name)  # the name is checked here: no path, no '..', not empty
    path = settings.index_dir
    root = (settings.home / "indexes").resolve()
    if not (path.exists() or path.is_symlink()):
        raise IndexNotFound(f"no index named {name!r} in {root}", hint="`rag indexes` lists them")
    if path.is_symlink() or path.resolve().parent != root or not is_index_dir(path):
        raise UsageError(
            f"refusing to drop {path}: it is not a rag index (no CURRENT file and manifest)",
            hint="remove it by hand if you really mean to",
        )
    if not yes:
        if not env.stdin_tty:
            raise UsageError(f"refusing to drop index {name!r} without --yes (stdin is not a terminal)")
        if not typer.confirm(f"Drop index {name!r} at {path}?", err=True):
            raise typer.Exit(1)
    with IndexLock(path / "lock", wait=settings.index_lock_wait):
        # move it aside first: readers see it gone at once, and a crash mid-delete leaves no half index
        trash = root / f".dropped-{name}-{os.getpid()}"
        os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
    env.err(f"dropped index {name!r}")
