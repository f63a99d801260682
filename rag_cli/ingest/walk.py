"""Finding the files to index: directory walking with ignore rules.

Skipped: hidden files and folders, ``.git``, ``node_modules``, ``__pycache__``,
virtualenvs (any folder holding ``pyvenv.cfg``), and whatever ``.gitignore``
and ``.ragignore`` files on the way (in the walked folder and its subfolders)
exclude (same syntax; ``.ragignore`` is for files git keeps but rag should not index). Files are
kept when a loader is registered for their extension; a file named explicitly on
the command line is always kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import PathNotFound
from .loaders import loader_for

SKIP_DIRS = {".git", "node_modules", "__pycache__", "venv", ".venv", "env", ".tox", ".mypy_cache", "site-packages"}


@dataclass(frozen=True)
class Found:
    path: Path
    root: Path
    explicit: bool = False


IGNORE_FILES = (".gitignore", ".ragignore")


def _gitignore(dirpath: Path):  # -> pathspec.PathSpec | None
    lines: list[str] = []
    for name in IGNORE_FILES:
        gi = dirpath / name
        if gi.is_file():
            try:
                lines += gi.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                pass
    if not lines:
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _is_venv(dirpath: Path) -> bool:
    return (dirpath / "pyvenv.cfg").is_file()


def walk(paths: list[str | Path]) -> Iterator[Found]:
    """Yield indexable files under ``paths`` (sorted, each once). Missing paths raise PathNotFound."""
    roots = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            raise PathNotFound(f"no such file or directory: {p}")
        roots.append(path.resolve())
    seen: set[Path] = set()
    for root in roots:
        if root.is_file():
            if root not in seen:
                seen.add(root)
                yield Found(root, root.parent, explicit=True)
            continue
        yield from _walk_dir(root, seen)


def _walk_dir(root: Path, seen: set[Path]) -> Iterator[Found]:
    specs: dict[Path, object] = {}
    for dirpath_s, dirnames, filenames in os.walk(root, followlinks=False):
        dirpath = Path(dirpath_s)
        spec = _gitignore(dirpath)
        if spec is not None:
            specs[dirpath] = spec

        def ignored(p: Path, is_dir: bool) -> bool:
            for base, sp in specs.items():
                if p == base or base not in p.parents:
                    continue
                rel = p.relative_to(base).as_posix() + ("/" if is_dir else "")
                if sp.match_file(rel):  # type: ignore[attr-defined]
                    return True
            return False

        keep = []
        for d in sorted(dirnames):
            full = dirpath / d
            if d.startswith(".") or d in SKIP_DIRS or _is_venv(full) or ignored(full, True):
                continue
            if full.is_symlink():
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            full = dirpath / f
            if full.is_symlink() and not full.exists():
                continue
            if loader_for(full) is None or ignored(full, False):
                continue
            resolved = full.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            yield Found(resolved, root)
