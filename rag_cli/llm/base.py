"""The LLM Backend protocol (an async token stream) and its registry.

A backend turns a :class:`Prompt` into text pieces as they are generated. It
raises :class:`BackendFailed` when it cannot answer; ``started`` says whether
any token had been yielded (the answer pipeline only falls back to the next
backend before the first token).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Settings
    from ..types import Hit


@dataclass
class Prompt:
    """What a backend needs: the question, the numbered passages, and both prompt shapes."""

    question: str
    passages: list[Hit]
    completion: str = ""  # for base models (completion-style, few-shot)
    system: str = ""  # for chat models
    user: str = ""
    prefix: str = ""  # text the completion prompt already put in the answer's mouth
    extra_context: str = ""
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    quotes: list[tuple[int, str]] = field(default_factory=list)  # the best evidence sentences, (number, text)


class BackendFailed(Exception):
    def __init__(self, reason: str, *, started: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.started = started


@runtime_checkable
class Backend(Protocol):
    """What the answer pipeline uses of a backend. Built-ins and plugins subclass :class:`BaseBackend`, which
    gives every capability its default, so the pipeline reads them directly instead of probing."""

    name: str

    @property
    def completion(self) -> bool: ...  # it takes the completion-style prompt (a base model), not chat messages

    wants_evidence: bool  # its prompt holds the passages' evidence sentences rather than whole passages
    quotes: bool  # its whole answer is evidence quoted word for word (--llm none): nothing to add after it
    runs_here: bool  # it generates on this machine's cores: rag serve gives it a generation slot
    evidence_tokens: int  # the evidence budget it reads best with, unless [answer] evidence_tokens sets one

    def load(self) -> None:
        """Load what it needs before the first prompt (blocking: runs on the pool)."""
        ...

    def describe(self) -> dict[str, Any]:
        """The model, for an answer's provenance."""
        ...

    def context_tokens(self) -> int:
        """The context window, in tokens."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model (an estimate is fine for remote models)."""
        ...

    def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        """Yield the answer's text as it is generated."""
        ...


class BaseBackend:
    """The defaults of :class:`Backend`'s capabilities: a chat model, fed evidence, that writes its own words
    somewhere else (a remote API), with nothing to load."""

    name = "backend"
    wants_evidence = True
    quotes = False
    runs_here = False
    evidence_tokens = 300

    @property
    def completion(self) -> bool:
        return False

    def load(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


BackendFactory = Callable[["Settings", dict[str, Any]], Backend]
_REGISTRY: dict[str, BackendFactory] = {}


def register(name: str, factory: BackendFactory) -> None:
    _REGISTRY[name] = factory


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    from . import extractive, local, openai  # noqa: F401  (registering is their import side effect)


def require(*wanted: str) -> None:
    """ConfigError (exit 2) for a backend name no built-in or plugin registers."""
    known = names()
    for name in wanted:
        if name not in known:
            raise ConfigError(f"unknown LLM backend {name!r}; choose one of {', '.join(known)}")


def create(name: str, settings: Settings, services: dict[str, Any] | None = None) -> Backend:
    require(name)
    return _REGISTRY[name](settings, services or {})
