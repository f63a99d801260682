"""On-disk layout of an index, and the atomic file operations it relies on.

::

    <RAG_HOME>/indexes/<name>/
        lock                 flock'ed by the one writer
        CURRENT              the name of the live data folder (replaced atomically)
        data-<hex>/
            manifest.json    format version and fingerprint (embedder, chunker)
            rag.sqlite       files, chunks, vectors, FTS5; WAL mode; meta(generation)
            vectors-<gen>.faiss   the FAISS index of generation <gen>

A writer commits a generation by first writing ``vectors-<gen+1>.faiss``
(temp file, fsync, rename) and then committing the SQLite transaction that
sets ``generation = gen+1``. A crash before the commit leaves generation
``gen`` live; the orphan file is removed by the next writer. ``--rebuild``
builds a new data folder and switches ``CURRENT`` with one rename at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..config import check_index_name, index_path, valid_index_name  # noqa: F401  (where an index lives)
from ..errors import IndexCorrupt, IndexIncompatible, IndexNotFound

FORMAT_VERSION = 1
REPAIR = "run `rag index PATH` to repair it from the database, or `rag index PATH --rebuild`"
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
DB = "rag.sqlite"


_DATA_NAME = re.compile(r"data-[0-9a-f]{6,32}")
_DATA_FILE = re.compile(r"(manifest\.json|rag\.sqlite(-wal|-shm|-journal)?|vectors-\d+\.faiss|\..*\.tmp|bm25-.*)")


def is_index_dir(path: Path) -> bool:
    """True when ``path`` is a rag index folder: a real folder (no symlink) whose CURRENT names a data
    folder with a manifest, or the remains of an interrupted first run (only a lock and data folders
    holding only index files). Anything else is not ours to delete."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        entries = list(path.iterdir())
    except OSError:
        return False
    names = {e.name for e in entries}
    if CURRENT in names:
        try:
            live = (path / CURRENT).read_text().strip()
        except OSError:
            return False
        return bool(_DATA_NAME.fullmatch(live)) and (path / live / MANIFEST).is_file()
    for e in entries:
        if e.name in ("lock", ".lock") or _DATA_FILE.fullmatch(e.name):
            continue
        if not (_DATA_NAME.fullmatch(e.name) and e.is_dir() and not e.is_symlink()):
            return False
        if any(not _DATA_FILE.fullmatch(f.name) for f in e.iterdir()):
            return False
    return bool(entries)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def vectors_file(data_dir: Path, generation: int) -> Path:
    return data_dir / f"vectors-{generation}.faiss"


def current_data_dir(index_dir: Path) -> Path | None:
    """The live data folder of ``index_dir``, or None when the index does not exist yet."""
    try:
        name = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IndexCorrupt(f"cannot read {index_dir / CURRENT}: {exc}", hint="run `rag index --rebuild`") from None
    if not name.startswith("data-") or "/" in name:
        raise IndexCorrupt(f"{index_dir / CURRENT} is damaged", hint="run `rag index --rebuild`")
    return index_dir / name


def require_data_dir(index_dir: Path) -> Path:
    data = current_data_dir(index_dir)
    if data is None:
        raise IndexNotFound(
            f"no index named {index_dir.name!r} in {index_dir.parent}",
            hint=f"run `rag index PATH --index {index_dir.name}` first",
        )
    if not data.is_dir():
        raise IndexCorrupt(f"index {index_dir.name!r} points at a missing folder", hint="run `rag index --rebuild`")
    return data


def new_data_dir(index_dir: Path) -> Path:
    path = index_dir / f"data-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path


def publish(index_dir: Path, data_dir: Path) -> None:
    """Make ``data_dir`` the live one with a single atomic rename."""
    atomic_write(index_dir / CURRENT, data_dir.name.encode())


def write_manifest(data_dir: Path, fingerprint: dict[str, Any]) -> None:
    body = {"format": FORMAT_VERSION, "fingerprint": fingerprint}
    atomic_write(data_dir / MANIFEST, json.dumps(body, indent=2, sort_keys=True).encode())


def read_manifest(data_dir: Path) -> dict[str, Any]:
    try:
        body = json.loads((data_dir / MANIFEST).read_text())
    except FileNotFoundError:
        raise IndexCorrupt(f"index manifest missing in {data_dir}", hint="run `rag index --rebuild`") from None
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"index manifest unreadable: {exc}", hint="run `rag index --rebuild`") from None
    if not isinstance(body, dict) or "fingerprint" not in body:
        raise IndexCorrupt("index manifest is damaged", hint="run `rag index --rebuild`")
    return body


def check_fingerprint(index_name: str, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    if stored.get("format") != FORMAT_VERSION:
        raise IndexIncompatible(
            f"index {index_name!r} has format {stored.get('format')}, this rag needs {FORMAT_VERSION}",
            hint="run `rag index PATH --rebuild`",
        )
    have = stored["fingerprint"]
    diffs = []
    for key in sorted(set(have) | set(wanted)):
        if have.get(key) != wanted.get(key):
            diffs.append(f"{key}: index has {have.get(key)}, settings want {wanted.get(key)}")
    if diffs:
        raise IndexIncompatible(
            f"index {index_name!r} was built with other settings ({'; '.join(diffs)})",
            hint="run `rag index PATH --rebuild` to rebuild it with the current settings",
        )


def clean_orphans(index_dir: Path, live: Path | None) -> None:
    """Remove data folders other than ``live`` (left by a killed rebuild). Call with the lock held."""
    for child in index_dir.glob("data-*"):
        if child.is_dir() and child != live:
            shutil.rmtree(child, ignore_errors=True)


def clean_generations(data_dir: Path, keep: int) -> None:
    """Remove vector files other than generation ``keep`` and the one before (a reader may be opening it)."""
    for f in data_dir.glob("vectors-*.faiss"):
        try:
            gen = int(f.stem.split("-", 1)[1])
        except ValueError:
            continue
        if gen > keep or gen < keep - 1:
            f.unlink(missing_ok=True)
    for f in data_dir.glob(".*.tmp"):
        f.unlink(missing_ok=True)


def list_indexes(home: Path) -> list[str]:
    root = home / "indexes"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if valid_index_name(p.name) and (p / CURRENT).is_file())
