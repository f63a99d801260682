"""`rag indexes`: list, inspect and drop named indexes."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Annotated

import typer

from .app import app
from .common import ConfigOpt, JsonOpt, StoreOpt, settings_from
from .output import Env, get_env

if TYPE_CHECKING:
    from ..config import Settings

indexes_app = typer.Typer(help="List, inspect and drop indexes.", no_args_is_help=False)
app.add_typer(indexes_app, name="indexes")


def _info(name: str, config: object, store: str | None = None) -> dict[str, object]:
    from ..store import base as store_base

    settings = settings_from(config, index=name, store_url=store)  # type: ignore[arg-type]
    reader = store_base.open_reader(settings)
    try:
        return reader.stats()
    finally:
        reader.close()


@indexes_app.callback(invoke_without_command=True)
def indexes_root(
    ctx: typer.Context, json_out: JsonOpt = False, store: StoreOpt = None, config: ConfigOpt = None
) -> None:
    """List indexes (the default action)."""
    if ctx.invoked_subcommand is None:
        list_cmd(json_out=json_out, store=store, config=config)


@indexes_app.command("list")
def list_cmd(json_out: JsonOpt = False, store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """List indexes with their size."""
    from ..config import redact
    from ..errors import RagError
    from ..store import base as store_base

    env = get_env()
    settings = settings_from(config, store_url=store)
    rows = []
    for name in store_base.names(settings):
        try:
            rows.append(_info(name, config, store))
        except RagError as exc:
            rows.append({"name": name, "error": str(exc)})
    where = redact(settings.store_url) if settings.store_url else str(settings.home)
    if json_out:
        env.json({"home": where, "indexes": rows})
        return
    if not rows:
        env.err(f"no indexes in {where} (create one with `rag index PATH`)")
    for r in rows:
        if "error" in r:
            env.out(f"{r['name']}\tERROR: {r['error']}")
        else:
            env.out(f"{r['name']}\t{r['files']} files\t{r['chunks']} chunks\t{int(r['bytes']) / 1e6:.1f} MB")  # type: ignore[call-overload]


@indexes_app.command("info")
def info_cmd(
    name: Annotated[str, typer.Argument(metavar="[NAME]", help="Index name.")] = "default",
    json_out: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Show an index's files, chunks, generation and fingerprint."""
    env = get_env()
    info = _info(name, config, store)
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
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Delete an index and all its files."""
    from ..errors import IndexNotFound, UsageError
    from ..store.layout import is_index_dir
    from ..store.local.lock import IndexLock

    env = get_env()
    settings = settings_from(config, index=name, store_url=store)  # the name is checked: no path, no '..', not empty
    if settings.store_url:
        _drop_from_database(env, settings, name, yes)
        return
    path = settings.index_dir
    root = (settings.home / "indexes").resolve()
    if not (path.exists() or path.is_symlink()):
        raise IndexNotFound(f"no index named {name!r} in {root}", hint="`rag indexes` lists them")
    if path.is_symlink() or path.resolve().parent != root or not is_index_dir(path):
        raise UsageError(
            f"refusing to drop {path}: it is not a rag index (no CURRENT file and manifest)",
            hint="remove it by hand if you really mean to",
        )
    _confirm(env, name, f"at {path}", yes)
    with IndexLock(path / "lock", wait=settings.index_lock_wait):
        # move it aside first: readers see it gone at once, and a crash mid-delete leaves no half index
        trash = root / f".dropped-{name}-{os.getpid()}"
        os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
    env.err(f"dropped index {name!r}")


def _confirm(env: Env, name: str, where: str, yes: bool) -> None:
    """Ask before dropping (a terminal), or refuse without --yes (a script)."""
    from ..errors import UsageError

    if yes:
        return
    if not env.stdin_tty:
        raise UsageError(f"refusing to drop index {name!r} without --yes (stdin is not a terminal)")
    if not typer.confirm(f"Drop index {name!r} {where}?", err=True):
        raise typer.Exit(1)


def _drop_from_database(env: Env, settings: Settings, name: str, yes: bool) -> None:
    """Drop an index's schema (every table of it) from the PostgreSQL store."""
    from ..errors import IndexNotFound
    from ..store import base as store_base
    from ..store.pg.common import drop_index

    if not store_base.exists(settings):
        raise IndexNotFound(
            f"no index named {name!r} in the PostgreSQL store", hint="`rag indexes --store URL` lists them"
        )
    _confirm(env, name, "from the database", yes)
    drop_index(settings)
    env.err(f"dropped index {name!r}")
