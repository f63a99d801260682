"""rag: local-first retrieval-augmented question answering for the command line.

Public API::

    from rag_cli import load_settings, Retrieval, index_paths, runtime

    settings = load_settings(index="docs")
    report = runtime.run(index_paths(["./docs"], settings, embed.create(settings)))
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["Retrieval", "__version__", "index_paths", "load_settings"]


def __getattr__(name: str) -> Any:  # lazy: importing rag_cli stays cheap
    if name == "load_settings":
        from .config import load_settings

        return load_settings
    if name == "Retrieval":
        from .retrieve.service import Retrieval

        return Retrieval
    if name == "index_paths":
        from .ingest.pipeline import index_paths

        return index_paths
    raise AttributeError(name)
