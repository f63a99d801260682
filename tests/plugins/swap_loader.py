"""A test plugin: a loader for ``.swap`` files that, on its first call, swaps the folder named by
``RAG_TEST_SWAP_DIR`` for a link to ``RAG_TEST_SWAP_TARGET`` (a folder outside the indexed tree), as an
attacker racing `rag index` would between the walk and the reads: the folder-swap race, driven
deterministically (files are read in walk order, and this file sorts first)."""

from __future__ import annotations

import os
from pathlib import Path

from rag_cli.ingest.loaders import load_text, register_loader

_done = False


def load_swap(path: str, data: bytes):  # type: ignore[no-untyped-def]
    global _done
    if not _done:
        _done = True
        victim = Path(os.environ["RAG_TEST_SWAP_DIR"])
        victim.rename(victim.with_name(".moved-" + victim.name))
        victim.symlink_to(os.environ["RAG_TEST_SWAP_TARGET"], target_is_directory=True)
    return load_text(path, data)


register_loader(".swap", load_swap)
