"""The error tree of rag, and the exit code of each.

The core raises these; the CLI (``rag_cli.cli.app``) is the single boundary that
maps them to an exit code and one clean line on stderr. Every message says what
went wrong and what to do about it.

::

    RagError                      exit 1   anything rag itself reports
    ├── UsageError                exit 2   bad argument or option value
    │   └── PathNotFound          exit 2   a path given on the command line is missing
    ├── ConfigError               exit 2   rag.toml is malformed or names unknown things
    ├── IndexError_               exit 3   the index cannot be used
    │   ├── IndexNotFound         exit 3   no index of that name (run `rag index`)
    │   ├── IndexIncompatible     exit 4   built with another fingerprint (use --rebuild)
    │   ├── IndexCorrupt          exit 4   files damaged or missing (use --rebuild)
    │   ├── IndexLocked           exit 5   another process is writing it
    │   └── StoreUnavailable      exit 10  the database store cannot be reached or timed out
    ├── EmbedderError             exit 1   the embedding model cannot be loaded
    ├── AllSourcesFailed          exit 6   every retrieval source failed or timed out
    ├── NoRelevantPassages        exit 7   nothing relevant to answer from
    └── LLMError                  exit 8   every LLM backend failed

`rag eval --baseline` exits 9 when a metric dropped more than the tolerance.
Ctrl-C (SIGINT) exits with 130 and SIGTERM with 143, as shells expect; both unwind
cleanly first (no partial files, pool drained). ``rag serve`` treats both as a
request to stop and exits 0 after a graceful shutdown.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INDEX = 3
EXIT_INDEX_BROKEN = 4
EXIT_LOCKED = 5
EXIT_ALL_SOURCES_FAILED = 6
EXIT_NO_ANSWER = 7
EXIT_LLM = 8
EXIT_REGRESSION = 9
EXIT_STORE = 10
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (a BaseException, so ``except Exception`` does not swallow it)."""

    exit_code = EXIT_TERMINATED


class RagError(Exception):
    """Base of every error rag reports to a user."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(RagError):
    exit_code = EXIT_USAGE


class PathNotFound(UsageError):
    pass


class ConfigError(RagError):
    exit_code = EXIT_USAGE


class IndexError_(RagError):
    exit_code = EXIT_INDEX


class IndexNotFound(IndexError_):
    pass


class IndexIncompatible(IndexError_):
    exit_code = EXIT_INDEX_BROKEN


class IndexCorrupt(IndexError_):
    exit_code = EXIT_INDEX_BROKEN


class IndexLocked(IndexError_):
    exit_code = EXIT_LOCKED


class StoreUnavailable(IndexError_):
    """The PostgreSQL store cannot be reached, refused us, or a statement passed its timeout. ``transient``:
    a dropped connection, worth one more try of an idempotent read."""

    exit_code = EXIT_STORE

    def __init__(self, message: str, *, hint: str | None = None, transient: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient


class EmbedderError(RagError):
    pass


class AllSourcesFailed(RagError):
    exit_code = EXIT_ALL_SOURCES_FAILED

    def __init__(self, message: str, *, hint: str | None = None, degraded: list[Any] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.degraded = degraded or []  # each failed source and why (retrieve.base.Degradation)


class NoRelevantPassages(RagError):
    exit_code = EXIT_NO_ANSWER


class LLMError(RagError):
    exit_code = EXIT_LLM


class SourceError(Exception):
    """A single retrieval source failed; the fan-out turns it into a degradation."""

    def __init__(self, reason: str, *, transient: bool = False, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after
