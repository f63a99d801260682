"""Embedding: the :class:`Embedder` protocol, its registry, and the built-in backends."""

from .base import Embedder, create, names, register

__all__ = ["Embedder", "create", "names", "register"]
