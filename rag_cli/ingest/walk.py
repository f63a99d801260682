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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PathNotFound
from .loaders import loader_for

SKIP_DIRS = {".git", "node_modules", "__pycache__", "venv", ".venv", "env", ".tox", ".mypy_cache", "site-packages"}


# what a Sphinx HTML build holds beside its pages: the search index (one JSON blob of every word), the reST
# sources of the pages (twins of them, in raw markup), static files, the generated index and search pages
SPHINX_BUILD_EXTRAS = frozenset(
    {
        "_sources",
        "_static",
        "_images",
        "_downloads",
        "searchindex.js",
        "genindex.html",
        "search.html",
        "py-modindex.html",
        "objects.inv",
    }
)


def sphinx_build(names: set[str]) -> bool:
    """Whether a folder holding ``names`` is the root of a Sphinx HTML build (its pages are what to index)."""
    return "searchindex.js" in names and ("objects.inv" in names or "_sources" in names)


@dataclass(frozen=True)
class Found:
    path: Path
    root: Path
    explicit: bool = False


IGNORE_FILES = (".gitignore", ".ragignore")


def _gitignore(dirpath: Path) -> Any:  # a pathspec.PathSpec, or None
    lines: list[str] = []
    for name in IGNORE_FILES:
        gi = dirpath / name
        try:
            if gi.is_file():
                lines += gi.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            pass
    if not lines:
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _is_venv(dirpath: Path) -> bool:
    try:
        return (dirpath / "pyvenv.cfg").is_file()
    except OSError:  # an unreadable folder: the walk reports it when it tries to list it
        return False


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


Skipped = Callable[[Path, str], None]


class IndexRules:
    """``--include`` / ``--exclude`` (and ``[index] include`` / ``exclude``): gitignore-style patterns matched
    against a path relative to the folder being walked. Excluded folders are not entered; with includes, a
    file is kept only if one matches. Files named on the command line are always kept."""

    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None) -> None:
        import pathspec

        self.include = pathspec.GitIgnoreSpec.from_lines(include) if include else None
        self.exclude = pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None

    def skip_dir(self, rel: str) -> bool:
        return self.exclude is not None and self.exclude.match_file(rel + "/")

    def skip_file(self, rel: str) -> bool:
        if self.exclude is not None and self.exclude.match_file(rel):
            return True
        return self.include is not None and not self.include.match_file(rel)


def walk(
    paths: list[str | Path],
    *,
    follow_links: bool = False,
    on_skip: Skipped | None = None,
    filters: IndexRules | None = None,
) -> Iterator[Found]:
    """Yield indexable files under ``paths`` (sorted, each once). Missing paths raise PathNotFound.

    A symlink whose target resolves outside every folder given in ``paths`` is skipped (it could
    carry ``/etc/passwd`` or a private key into an index that ``rag serve`` then serves) unless
    ``follow_links``; links to folders are not followed. FIFOs, sockets and devices are skipped, as
    are folders that cannot be listed; each skip is told to ``on_skip(path, reason)``. The walk is
    iterative, so nesting depth is bounded by the file system, not by Python's recursion limit.
    """
    skip = on_skip or (lambda path, reason: None)
    roots = []
    for p in paths:
        path = Path(p).expanduser()
        if not (path.exists() or path.is_symlink()):
            raise PathNotFound(f"no such file or directory: {p}")
        roots.append(path.resolve())
    dir_roots = [r for r in roots if r.is_dir()]
    seen: set[Path] = set()
    for root in roots:
        if root.is_dir():
            yield from _walk_dir(root, dir_roots, seen, follow_links, skip, filters)
        elif root not in seen:  # a file named on the command line is the user's explicit choice
            seen.add(root)
            if root.is_file():
                yield Found(root, root.parent, explicit=True)
            else:
                skip(root, "not a regular file")


def _walk_dir(
    root: Path,
    dir_roots: list[Path],
    seen: set[Path],
    follow_links: bool,
    skip: Skipped,
    filters: IndexRules | None = None,
) -> Iterator[Found]:
    walk = _DirWalk(root, dir_roots, seen, follow_links, skip, filters)
    stack = [root]
    while stack:
        dirpath = stack.pop()
        try:
            with os.scandir(dirpath) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skip(dirpath, f"unreadable folder: {exc.strerror or exc}")
            continue
        spec = _gitignore(dirpath)
        if spec is not None:
            walk.specs[dirpath] = spec
        subdirs: list[Path] = []
        leave = SPHINX_BUILD_EXTRAS if sphinx_build({e.name for e in entries}) else frozenset()
        for entry in entries:
            if entry.name.startswith(".") or entry.name in leave:
                continue
            what = walk.kind(dirpath / entry.name, entry)
            if what is not None and what[0] == "dir":
                subdirs.append(what[1])
            elif what is not None:
                yield Found(what[1], root)
        stack.extend(reversed(subdirs))


class _DirWalk:
    """What the walk of one folder decides about each entry: a folder to enter, a file to index (its
    resolved path), or nothing (hidden, ignored, filtered, not loadable, a link out, not a regular file)."""

    def __init__(
        self,
        root: Path,
        dir_roots: list[Path],
        seen: set[Path],
        follow_links: bool,
        skip: Skipped,
        filters: IndexRules | None,
    ) -> None:
        self.root, self.dir_roots, self.seen, self.follow_links = root, dir_roots, seen, follow_links
        self.skip, self.filters = skip, filters
        self.specs: dict[Path, object] = {}  # the .gitignore of each folder walked so far

    def ignored(self, p: Path, is_dir: bool) -> bool:
        for base, sp in self.specs.items():
            if p == base or base not in p.parents:
                continue
            rel = p.relative_to(base).as_posix() + ("/" if is_dir else "")
            if sp.match_file(rel):  # type: ignore[attr-defined]
                return True
        return False

    def kind(self, full: Path, entry: os.DirEntry[str]) -> tuple[str, Path] | None:
        """("dir", path) for a folder to enter, ("file", resolved path) for a file to index, or None."""
        try:
            is_link = entry.is_symlink()
            is_dir = entry.is_dir(follow_symlinks=False)
            is_file = entry.is_file(follow_symlinks=False)
        except OSError as exc:
            self.skip(full, f"unreadable: {exc.strerror or exc}")
            return None
        rel = full.relative_to(self.root).as_posix()
        if is_dir:
            keep = entry.name not in SKIP_DIRS and not _is_venv(full) and not self.ignored(full, True)
            return ("dir", full) if keep and (self.filters is None or not self.filters.skip_dir(rel)) else None
        if (
            loader_for(full) is None
            or self.ignored(full, False)
            or (self.filters is not None and self.filters.skip_file(rel))
        ):
            return None
        resolved = self.link_target(full) if is_link else full
        if resolved is None:
            return None
        if not (resolved.is_file() if is_link else is_file):
            self.skip(full, "not a regular file (FIFO, socket or device)")
            return None
        if resolved in self.seen:
            return None
        self.seen.add(resolved)
        return "file", resolved

    def link_target(self, full: Path) -> Path | None:
        """Where a link to a file leads, if it may be followed (inside the indexed folders, or --follow-links)."""
        try:
            resolved = full.resolve(strict=True)
        except (OSError, RuntimeError):  # dangling, or a loop of links
            return None
        if resolved.is_dir():
            return None
        if not self.follow_links and not _within(resolved, self.dir_roots):
            self.skip(full, f"symlink to {resolved}, outside the indexed folders (--follow-links allows it)")
            return None
        return resolved
