"""FAISS helpers (imported lazily: ``rag --help`` never pays for faiss).

Vectors are L2-normalised, so inner product is cosine similarity. Ids are the
SQLite chunk ids (``IndexIDMap2``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import IndexCorrupt
from .layout import REPAIR, fsync_dir


def faiss() -> Any:
    import faiss as _faiss

    return _faiss


def empty_index(dim: int) -> Any:
    f = faiss()
    return f.IndexIDMap2(f.IndexFlatIP(dim))


def read_index(path: Path) -> Any:
    f = faiss()
    try:
        return f.read_index(str(path))
    except FileNotFoundError:
        raise
    except (RuntimeError, OSError) as exc:
        if not path.exists():
            raise FileNotFoundError(str(path)) from None
        raise IndexCorrupt(
            f"vector file {path.name} is damaged ({str(exc).splitlines()[0][:120]})",
            hint=REPAIR,
        ) from None


def write_index(index: Any, path: Path) -> None:
    """Write ``index`` to ``path`` atomically (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    faiss().write_index(index, str(tmp))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def remove_ids(index: Any, ids: list[int]) -> int:
    if not ids:
        return 0
    import numpy as np

    f = faiss()
    return int(index.remove_ids(f.IDSelectorBatch(np.asarray(ids, dtype=np.int64))))
