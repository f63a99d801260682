"""FAISS helpers (imported lazily: ``rag --help`` never pays for faiss).

Vectors are L2-normalised, so inner product is cosine similarity. Ids are the
SQLite chunk ids.

Small indexes are exact (``IndexIDMap2(IndexFlatIP)``). From ``ann_threshold``
vectors on, the writer switches to an inverted-file index (``IndexIVFFlat``, nlist
about 4 x sqrt(n), ``nprobe`` stored in the file): search cost drops from all n
vectors to about nprobe/nlist of them, and unlike HNSW it supports removing ids,
which incremental re-indexing needs. It is re-trained when the index has grown 16x
since training, and goes back to flat when it shrinks under half the threshold.
bench/ann.py measures build time, memory, latency and recall@10 against flat.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from ...errors import IndexCorrupt
from ..layout import REPAIR, fsync_dir


def faiss() -> Any:
    import faiss as _faiss

    return _faiss


def empty_index(dim: int) -> Any:
    f = faiss()
    return f.IndexIDMap2(f.IndexFlatIP(dim))


def is_ivf(index: Any) -> bool:
    return isinstance(index, faiss().IndexIVF)


def nlist_for(n: int) -> int:
    return int(min(65536, max(16, 4 * n**0.5)))


def build_ivf(xb: Any, ids: Any, nprobe: int, seed: int = 1234) -> Any:
    """An IVF-Flat inner-product index over ``xb`` (n x d float32) with ``ids`` (int64)."""
    import numpy as np

    n = len(xb)
    sample = xb[train_rows(n, seed)] if n > train_size(n) else xb
    batches = ((xb[s : s + 100_000], ids[s : s + 100_000]) for s in range(0, n, 100_000))
    return build_ivf_from(np.ascontiguousarray(sample, dtype=np.float32), batches, n, nprobe, seed)


def train_size(n: int) -> int:
    return min(n, 40 * nlist_for(n))  # faiss wants >= 39 points per centroid


def train_rows(n: int, seed: int = 1234) -> Any:
    """Which of ``n`` rows (sorted positions) train the IVF index of ``n`` vectors."""
    import numpy as np

    return np.sort(np.random.default_rng(seed).choice(n, train_size(n), replace=False))


def build_ivf_from(sample: Any, batches: Any, n: int, nprobe: int, seed: int = 1234) -> Any:
    """An IVF-Flat inner-product index for ``n`` vectors, trained on ``sample`` and filled from ``batches``
    of (vectors, ids): the vectors need not all be in memory at once."""
    f = faiss()
    d = sample.shape[1]
    nlist = nlist_for(n)
    quantizer = f.IndexFlatIP(d)
    index = f.IndexIVFFlat(quantizer, d, nlist, f.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(sample)
    for xb, ids in batches:
        index.add_with_ids(xb, ids)
    index.nprobe = min(nprobe, nlist)
    return index


def reconstruct(index: Any, chunk_id: int) -> Any:
    """The stored vector of ``chunk_id``, or None if the index does not hold it (an IVF index needs
    :func:`with_lookup` first)."""
    try:
        return index.reconstruct(int(chunk_id))
    except RuntimeError:
        return None


def with_lookup(index: Any) -> Any:
    """``index``, able to look vectors up by id: IVF lists get a hashed direct map (a few bytes a vector)."""
    if is_ivf(index):
        f = faiss()
        f.extract_index_ivf(index).set_direct_map_type(f.DirectMap.Hashtable)
    return index


def flat_contents(index: Any) -> tuple[Any, Any]:
    """(vectors, ids) of a flat ``IndexIDMap2`` index."""
    f = faiss()
    n = index.ntotal
    ids = f.vector_to_array(index.id_map).astype("int64")
    xb = index.index.reconstruct_n(0, n) if n else None
    return xb, ids


def wants_ivf(index: Any, count: int, threshold: int) -> bool | None:
    """True: (re)build as IVF; False: go back to flat; None: keep the current structure."""
    if threshold <= 0:
        return False if is_ivf(index) else None
    if not is_ivf(index):
        return True if count >= threshold else None
    if count < threshold // 2:
        return False
    if nlist_for(count) >= 4 * index.nlist:  # grown 16x since training
        return True
    return None


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
