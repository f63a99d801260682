"""`rag index --watch`: keep an index fresh from file-system events.

After the first pass, file-system events (watchfiles: inotify, FSEvents, ReadDirectoryChangesW) are
debounced into batches; each batch runs the ordinary incremental index, so it is one committed
generation, renames reuse the stored vectors (same content hash), deletions leave the index, and a
running `rag serve` picks the generation up as after any `rag index`. Editors' temporary files
(``.swp``, ``~``, ``.#name``, ``#name#``, Vim's ``4913``, partial downloads) never start a batch, and the
walk's own rules (.gitignore, .ragignore, include/exclude) decide what is indexed. A kill at any point
leaves the last committed generation, as any interrupted `rag index` does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TEMP = re.compile(r"(^\.#|^#.*#$|~$|\.sw[a-p]$|\.tmp$|\.temp$|\.part$|\.crdownload$|\.kate-swp$|^4913$|^\.~lock\.)")


def is_temporary(path: str) -> bool:
    """An editor's or a download's temporary file: its events never start a batch."""
    return bool(_TEMP.search(Path(path).name))


@dataclass
class Batch:
    """One batch of changes and what indexing it did."""

    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    report: Any = None  # the IndexReport of the incremental run

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "batch",
            "changed": self.changed,
            "removed": self.removed,
            **(self.report.to_dict() if self.report is not None else {}),
        }


async def watch(
    paths: list[Path],
    settings: Any,
    embedder: Any,
    on_batch: Callable[[Batch], None],
    *,
    progress: Any = None,
    debounce_ms: int = 800,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Index ``paths`` again after each debounced batch of relevant file-system events, until ``stop``
    is set or the task is cancelled. ``ready`` is called once the watcher is running."""
    from watchfiles import Change, DefaultFilter, awatch

    from .pipeline import index_paths

    base = DefaultFilter()

    def relevant(change: Change, path: str) -> bool:
        return base(change, path) and not is_temporary(path)

    roots = [str(p) for p in paths]
    stopping = stop or asyncio.Event()
    events = awatch(
        *roots,
        watch_filter=relevant,
        debounce=debounce_ms,
        step=50,
        stop_event=stopping,
        recursive=True,
        yield_on_timeout=True,
        rust_timeout=200,
    )
    announced = False
    async for changes in events:
        if not announced:  # the first (empty, on timeout) yield: the watcher is running
            announced = True
            if ready is not None:
                ready()
        if not changes:
            continue
        batch = Batch(
            changed=sorted({p for c, p in changes if c != Change.deleted}),
            removed=sorted({p for c, p in changes if c == Change.deleted}),
        )
        alive = [p for p in paths if p.exists() or p.is_symlink()]
        # a followed folder that was deleted: its files leave the index as in any run (they no longer exist)
        batch.report = await index_paths(list(alive), settings, embedder, progress=progress)
        on_batch(batch)
        if len(alive) < len(paths):
            from ..errors import PathNotFound

            gone = ", ".join(str(p) for p in paths if p not in alive)
            raise PathNotFound(
                f"stopped watching: {gone} was deleted; its files left the index (generation {batch.report.generation})"
            )
