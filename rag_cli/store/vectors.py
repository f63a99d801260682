"""FAISS helpers (imported lazily: ``rag --help`` never pays for faiss).

Vectors are L2-normalised, so inner product is cosine similarity. Ids are the
SQLite chunk ids (``IndexIDMap2``).
"""

from __future__ import annotations

import errno
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
    try:
        try:
            faiss().write_index(index, str(tmp))
        except RuntimeError as exc:  # faiss reports write errors (a full disk among them) as RuntimeError
            msg = str(exc)
            code = errno.ENOSPC if "No space left" in msg else errno.EIO
            raise OSError(code, os.strerror(code) + f" (writing {path.name})") from None
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def remove_ids(index: Any, ids: list[int]) -> int:
    if not ids:
        return 0
    import numpy as np

    f = faiss()
    return int(index.remove_ids(f.IDSelectorBatch(np.asarray(ids, dtype=np.int64))))
