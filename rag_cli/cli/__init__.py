"""The command-line layer: thin modules that parse options, call the core and render."""

from .app import app, main

__all__ = ["app", "main"]
