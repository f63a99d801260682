"""Plugins: modules that register embedders, sources, LLM backends or loaders.

Built-ins register themselves the same way. Extra modules are named in
``RAG_PLUGINS`` (comma-separated module names) or installed with an entry point
in the ``rag_cli.plugins`` group; importing them is all it takes.
"""

from __future__ import annotations

import importlib
import os

from .errors import ConfigError

_loaded = False


def load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in [n.strip() for n in os.environ.get("RAG_PLUGINS", "").split(",") if n.strip()]:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"cannot load plugin {name!r}: {exc}") from None
    from importlib.metadata import entry_points

    for ep in entry_points(group="rag_cli.plugins"):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin should not break rag
            import sys

            print(f"warning: plugin {ep.name!r} failed to load: {exc}", file=sys.stderr)
