"""The Embedder protocol and its registry.

An embedder turns texts into L2-normalised float32 vectors and counts tokens the
way its model does. ``embed`` blocks: callers run it on the runtime pool.
Backends register a factory under a name; ``create(settings)`` picks one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from ..config import Settings


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int
    max_tokens: int

    def fingerprint(self) -> dict[str, Any]:
        """What must match for two indexes' vectors to be comparable."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts without special tokens (cheap: no model load)."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised float32 vectors, shape (len(texts), dim). Blocking."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """One normalised query vector, shape (dim,). Blocking."""
        ...

    # what indexing asks of a model with several ways to run (BaseEmbedder's defaults: one way, nothing to do)
    fallback_reason: str  # why it settled on its slower way, or ""
    parallel_calls: int  # document batches worth embedding at once (one per core for a single-threaded runtime)

    def concurrent_queries(self, calls: int) -> None:
        """Share the cores among ``calls`` query encodes running at once (before the first query)."""
        ...

    def load_for_queries(self) -> None:
        """Make :meth:`embed_query` ready now (blocking): loading the model is start-up, not a search's time."""
        ...

    def export_needed(self) -> bool:
        """Whether :meth:`prepare_documents` has a one-off export to do first (worth a note to the user)."""
        ...

    def prepare_documents(self) -> str:
        """Settle how documents are embedded (blocking, once per run); returns the backend's name."""
        ...

    def prepare_query_encoder(self) -> bool:
        """After indexing, ready the fast query encoder for later searches (blocking); False: none."""
        ...


class BaseEmbedder:
    """Defaults of :class:`Embedder`'s indexing hooks for a model with one way to run."""

    name = "embedder"
    fallback_reason = ""
    parallel_calls = 1

    def concurrent_queries(self, calls: int) -> None:
        return None

    def load_for_queries(self) -> None:
        return None

    def export_needed(self) -> bool:
        return False

    def prepare_documents(self) -> str:
        return self.name

    def prepare_query_encoder(self) -> bool:
        return False


EmbedderFactory = Callable[["Settings"], Embedder]
_REGISTRY: dict[str, EmbedderFactory] = {}


def model_id(embedder: Embedder) -> str:
    """``MODEL/DIM`` from the embedder's fingerprint: what another index must run for a query vector made here
    to be its own (a federated search's shared vector)."""
    fp = embedder.fingerprint()
    return f"{fp.get('model')}/{fp.get('dim')}"


def register(name: str, factory: EmbedderFactory) -> None:
    _REGISTRY[name] = factory


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    from . import hashing, sentence  # noqa: F401  (registering is their import side effect)


_CACHE: dict[tuple[str, ...], Embedder] = {}


def create(settings: Settings) -> Embedder:
    """The embedder for ``settings`` (cached per process: models load once)."""
    _load_builtins()
    # every setting the embedder is built from: one process asking for another (documents through torch
    # instead of ONNX Runtime, queries through ONNX) gets that, not the first one cached
    key = (
        settings.embed_backend,
        settings.embed_model,
        str(settings.embed_batch_size),
        settings.embed_device,
        settings.embed_onnx_variant,
        settings.embed_doc_backend,
        settings.embed_query_backend,
        str(settings.embed_query_cache),
    )
    if key in _CACHE:
        return _CACHE[key]
    factory = _REGISTRY.get(settings.embed_backend)
    if factory is None:
        raise ConfigError(f"unknown embedding backend {settings.embed_backend!r}; choose one of {', '.join(names())}")
    emb = factory(settings)
    _CACHE[key] = emb
    return emb
