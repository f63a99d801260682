"""Ingestion: finding files, loading them, chunking, and the index pipeline."""

from .chunking import ChunkerConfig, chunk_document
from .loaders import LOADERS, SkipFile, load_bytes, register_loader
from .pipeline import IndexReport, index_paths

__all__ = [
    "LOADERS",
    "ChunkerConfig",
    "IndexReport",
    "SkipFile",
    "chunk_document",
    "index_paths",
    "load_bytes",
    "register_loader",
]
