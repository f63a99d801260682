"""A test plugin: a loader for ``.stuck`` files that blocks in one call it cannot be interrupted in
(like a parser caught in a pathological input), to exercise the hard per-file time budget."""

from __future__ import annotations

import os
import time

from rag_cli.ingest.loaders import load_text, register_loader


def load_stuck(path: str, data: bytes):  # type: ignore[no-untyped-def]
    time.sleep(float(os.environ.get("RAG_TEST_STUCK_SECONDS", "60")))
    return load_text(path, data)


register_loader(".stuck", load_stuck)
