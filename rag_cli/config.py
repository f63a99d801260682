"""Settings, built once at the edge and passed inward.

Precedence, highest first: command-line flag > ``RAG_*`` environment variable >
``./rag.toml`` > the user config file (``<user config dir>/rag/rag.toml``) > default.
``--config FILE`` replaces both file look-ups.

A ``rag.toml`` uses sections whose keys map to flat settings (``[chunk] max_tokens``
is ``chunk_max_tokens``, env ``RAG_CHUNK_MAX_TOKENS``)::

    index = "default"
    workers = 2

    [embed]
    model = "/path/to/sentence-transformers/model"   # default: the packaged all-MiniLM-L6-v2
    batch_size = 64

    [chunk]
    max_tokens = 200
    overlap = 32

    [retrieve]
    mode = "hybrid"
    k = 10
    timeout = 2.0
    weights = { dense = 1.0, bm25 = 1.0 }

    [[sources]]          # remote sources, see docs/reference.md
    name = "wiki"
    type = "http"
    url = "https://kb.example/search?q={query}&n={k}"
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from .errors import ConfigError, UsageError
from .text import clean


def _user_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("rag", appauthor=False))


def user_config_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("rag", appauthor=False))


def user_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("rag", appauthor=False))


# letters, digits and _ first, then also . and -; at most 100: never a path (/ or ..), never empty or hidden
_INDEX_NAME = re.compile(r"\w[\w.-]{0,99}")


def valid_index_name(name: object) -> bool:
    return isinstance(name, str) and _INDEX_NAME.fullmatch(name) is not None


def check_index_name(name: str) -> str:
    """``name`` when it is a safe index name, else a UsageError (so no name reaches outside RAG_HOME)."""
    if not valid_index_name(name):
        raise UsageError(
            f"invalid index name {clean(repr(name))}",
            hint="use letters, digits, '_', '.' and '-' (starting with a letter, digit or '_'), at most 100",
        )
    return name


def index_path(home: Path, name: str) -> Path:
    """Where the index ``name`` lives under ``home`` (the name checked first)."""
    return home / "indexes" / check_index_name(name)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    env = os.environ.get("RAG_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return max(2, cpu_count())


@dataclass
class Settings:
    """Every tunable of rag with its default. See the module docstring for precedence."""

    home: Path = field(default_factory=_user_data_dir)
    index: str = "default"
    store_url: str = ""  # "": the local FAISS + SQLite store; postgresql://...: a shared PostgreSQL + pgvector
    store_timeout: float = 10.0  # seconds a PostgreSQL statement may take (statement_timeout) or a connection wait
    workers: int = 0  # 0: one per core
    embed_backend: str = "sentence-transformers"
    embed_model: str = ""  # "": the packaged all-MiniLM-L6-v2
    embed_batch_size: int = 16  # short batches pad less: 16 beat 32 and 64 (bench/embed_backends.py)
    embed_device: str = "cpu"
    embed_onnx_variant: str = "fp32"  # ONNX graph for the onnx backend and queries: fp32 or int8 (quantized)
    embed_query_cache: int = 1024  # query vectors kept in an LRU cache per process (0: off)
    embed_doc_backend: str = (
        "auto"  # documents: auto (fp32 ONNX Runtime when the model exports, else torch), onnx, torch
    )
    embed_query_backend: str = "auto"  # auto: ONNX Runtime when its export is cached, else torch; onnx; torch
    chunk_max_tokens: int = 200
    chunk_overlap: int = 32
    index_include: list[str] = field(default_factory=list)  # gitignore-style globs: index only matching files
    index_exclude: list[str] = field(default_factory=list)  # gitignore-style globs never indexed (.ragignore's
    # rules, for trees where a .ragignore cannot be written)
    index_max_file_mb: float = 20.0
    index_queue_files: int = 1024  # files loaded ahead of the embedder (QUEUE_BYTES bounds their text)
    index_watch_debounce_ms: int = 800  # rag index --watch: how long events settle into one batch
    index_ann_threshold: int = 200_000  # vectors from which search uses IVF instead of exact flat (0: never)
    index_ann_nprobe: int = 32  # IVF lists probed per query (recall/latency trade-off, bench/ann.py)
    index_file_timeout: float = 30.0  # seconds to load and chunk one file before it is skipped (0: no limit)
    index_checkpoint_seconds: float = 30.0
    index_lock_wait: float = 10.0
    index_follow_links: bool = False  # index symlinks whose target is outside the indexed folders
    retrieve_mode: str = "hybrid"
    retrieve_k: int = 10
    retrieve_timeout: float = 2.0
    retrieve_rrf_k: int = 60
    # RRF weights per source (others: 1.0); BM25 1.5 measured best across Cranfield and sample_corpus (bench/tune.py)
    retrieve_weights: dict[str, float] = field(default_factory=lambda: {"dense": 1.0, "bm25": 1.0})
    retrieve_fusion: str = "zscore"  # zscore: both scores of every candidate, standardised; rrf: ranks
    # pseudo-relevance feedback (retrieve/feedback.py): RM3's expansion weight for BM25, Rocchio's beta for dense
    retrieve_feedback_bm25: float = 0.3
    retrieve_feedback_dense: float = 1.0
    retrieve_bm25_columns: list[float] = field(default_factory=lambda: [2.0, 2.0, 1.0])  # title, heading, body
    # serve and chat score BM25 in memory for indexes up to this many chunks (postings ~110 MiB per 100k
    # chunks of ~120 words, loaded in the background per generation), else FTS5 scores; 0: never (bench/keyword.py)
    retrieve_bm25_memory_chunks: int = 100_000
    retrieve_breaker_failures: int = 3
    retrieve_breaker_cooldown: float = 30.0
    retrieve_collapse_twins: bool = True  # near-identical passages of two files (x.html, x.txt) take one slot
    # hybrid results in document order: each document's best passage first, lifted by this share of its further
    # passages' scores, further passages after (retrieve/fusion.by_document); 0 = the fused passage order
    retrieve_document_bonus: float = 0.25
    retrieve_max_body_mb: float = 8.0
    sources: list[dict[str, Any]] = field(default_factory=list)
    llm_backend: str = "local"
    llm_fallback: list[str] = field(default_factory=lambda: ["none"])
    llm_model: str = ""
    llm_prompt: str = "auto"  # local backend: auto (chat template if the GGUF has one), chat, completion
    # local backend, packaged readers: "fast" (the Q8_0 copy rag derives once from the verified file where that reads
    # prompts faster: llm/packaged.py) or "packaged" (the file as packaged)
    llm_weights: str = "fast"
    llm_base_url: str = "http://127.0.0.1:8080/v1"
    llm_api_key_env: str = "OPENAI_API_KEY"
    llm_max_tokens: int = 256
    llm_temperature: float = 0.1
    llm_context_tokens: int = 4096
    llm_connect_timeout: float = 5.0
    llm_first_token_timeout: float = 60.0
    llm_total_timeout: float = 300.0
    answer_k: int = 0  # passages searched for an answer; 0: 10 with evidence (only their evidence reaches the
    # prompt), 5 without (whole passages: small local models do best with few)
    answer_min_score: float = 0.3  # dense cosine similarity under which a passage counts as unrelated
    # the answer's first N documents each add their 2 best further passages (retrieve/within.py); 0: off
    answer_further_documents: int = 2
    # the best evidence sentence's score (pipeline/evidence.py: 0.5 cosine + 0.5 question words held) under which the
    # passages are taken not to answer; calibrated on the QA sets by bench/refusal.py; 0 turns it off
    answer_min_evidence: float = 0.40
    answer_evidence: bool = True  # the prompt holds each passage's evidence sentences, not the whole passage
    # token budget of the evidence; 0: the reader's own (300; a packaged reader may state more, `rag models`)
    answer_evidence_tokens: int = 0
    answer_verify: bool = True  # check every answer sentence against the passages it cites
    answer_quotes: int = 3  # the best evidence sentences quoted: --llm none's answer, the end of a generated one
    answer_quote: bool = True  # a generated answer ends with them; false: only when nothing it said holds
    answer_unverified: str = "drop"  # a sentence no passage supports: left out (drop) or shown marked (mark)
    # what a generated answer opens with: auto (the evidence quotes when the model's first sentence is unverified or
    # less on the question than the best quote, else the model's sentences), answer (always the model's sentences)
    answer_lead: str = "auto"
    server: str = "auto"  # use a running `rag serve`: auto (the one registered for the index), a URL, or off
    server_connect_timeout: float = 0.5  # seconds to reach its /healthz before searching in-process
    serve_host: str = "127.0.0.1"
    serve_port: int = 8008
    serve_token: str = ""
    serve_max_body_kb: int = 64
    serve_max_query_chars: int = 2000
    serve_max_k: int = 100
    serve_max_inflight: int = 256
    serve_access_log: bool = False  # one logfmt line a request on stderr (rag.serve.access): method, path, status, ms
    serve_shutdown_timeout: float = 5.0  # seconds in-flight requests get to finish after SIGTERM
    serve_cors_origins: list[str] = field(default_factory=list)  # browser origins allowed to call the API (none)
    # host names a request's Host may carry besides IP literals and localhost (DNS rebinding); "*": any
    serve_allowed_hosts: list[str] = field(default_factory=list)
    serve_ask_concurrency: int = 1  # answers the local model writes at once (one model copy each)
    serve_ask_queue: int = 8  # answers that may wait for a slot; past it, 429 with Retry-After at once
    config_files: list[str] = field(default_factory=list)

    @property
    def index_dir(self) -> Path:
        return index_path(self.home, self.index)

    def reader_key(self) -> str:
        """A digest of everything that shapes an answer but the question, k, mode and filters: a warm
        ``rag serve`` answers a client's ``rag ask`` only when its key is the client's (same backends,
        model, prompt, decoding, evidence and verification), so that the answer is the one this process
        would give. A digest, as ``/healthz`` needs no token and a base URL may hold credentials."""
        import hashlib
        import json

        key = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name.startswith(("llm_", "answer_")) and f.name != "answer_k"
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def effective_workers(self) -> int:
        return self.workers if self.workers > 0 else default_workers()


_HINTS: dict[str, Any] | None = None


def _hints() -> dict[str, Any]:
    global _HINTS
    if _HINTS is None:
        _HINTS = get_type_hints(Settings)
    return _HINTS


def _coerce(name: str, value: Any) -> Any:
    hint = _hints()[name]
    origin = getattr(hint, "__origin__", hint)
    try:
        if hint is Path:
            return Path(os.path.expanduser(str(value)))
        if hint is bool:
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if hint in (int, float, str):
            return hint(value)
        if origin is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise TypeError("expected a list")
            item = (getattr(hint, "__args__", None) or (str,))[0]
            return [item(v) for v in value] if item in (int, float, str) else value
        if origin is dict:
            if isinstance(value, str):
                out = {}
                for part in value.split(","):
                    if part.strip():
                        k, _, v = part.partition("=")
                        out[k.strip()] = float(v)
                return out
            if not isinstance(value, dict):
                raise TypeError("expected a table")
            return {k: float(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({exc})") from None
    return value


def _flatten(data: dict[str, Any], source: str) -> dict[str, Any]:
    names = {f.name for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "sources":
            if not isinstance(value, list):
                raise ConfigError(f"{source}: [[sources]] must be an array of tables")
            out["sources"] = value
        elif isinstance(value, dict) and (key not in names or key == "index"):
            for sub, subval in value.items():
                # the [index] table holds the index settings; its `name` is the index to use
                flat = "index" if (key, sub) == ("index", "name") else f"{key}_{sub}"
                if flat not in names:
                    raise ConfigError(f"{source}: unknown setting [{key}] {sub}")
                out[flat] = subval
        elif key in names:
            out[key] = value
        else:
            raise ConfigError(f"{source}: unknown setting {key!r}")
    return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def config_files(config: str | Path | None = None) -> list[Path]:
    """The config files that apply, lowest precedence first."""
    if config:
        return [Path(config)]
    env = os.environ.get("RAG_CONFIG")
    if env:
        return [Path(env)]
    found = []
    user = user_config_dir() / "rag.toml"
    if user.is_file():
        found.append(user)
    local = Path.cwd() / "rag.toml"
    if local.is_file():
        found.append(local)
    return found


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, files, environment and ``overrides`` (None is ignored)."""
    values: dict[str, Any] = {}
    files = config_files(config)
    for path in files:
        values.update(_flatten(read_toml(path), str(path)))
    names = {f.name for f in fields(Settings)}
    for name in names:
        env = os.environ.get(f"RAG_{name.upper()}")
        if env is not None and name not in ("sources", "config_files"):
            values[name] = env
    for name, value in overrides.items():
        if value is not None:
            if name not in names:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = value
    coerced = {k: _coerce(k, v) for k, v in values.items() if k != "sources"}
    settings = Settings(**coerced)
    if "sources" in values:
        settings.sources = values["sources"]
    settings.config_files = [str(p) for p in files]
    validate(settings)
    return settings


SEARCH_MODES = ("dense", "bm25", "hybrid")

# (low, high) of numeric settings; a value outside, NaN or infinite is a ConfigError (exit 2)
RANGES: dict[str, tuple[float, float]] = {
    "workers": (0, 1024),
    "embed_batch_size": (1, 4096),
    "answer_evidence_tokens": (0, 100_000),
    "answer_quotes": (1, 20),
    "embed_query_cache": (0, 10_000_000),
    "chunk_max_tokens": (16, 8192),
    "chunk_overlap": (0, 4096),
    "index_max_file_mb": (0.001, 100_000),
    "index_queue_files": (1, 100_000),
    "index_watch_debounce_ms": (10, 600_000),
    "store_timeout": (0.1, 3600),
    "index_ann_threshold": (0, 10**12),
    "index_ann_nprobe": (1, 65536),
    "index_file_timeout": (0, 86400),
    "index_checkpoint_seconds": (0, 86400),
    "index_lock_wait": (0, 86400),
    "retrieve_k": (1, 1000),
    "retrieve_timeout": (0.001, 3600),
    "retrieve_rrf_k": (0, 100_000),
    "retrieve_feedback_bm25": (0, 100),
    "retrieve_feedback_dense": (0, 100),
    "retrieve_document_bonus": (0, 100),
    "retrieve_bm25_memory_chunks": (0, 10**10),
    "retrieve_breaker_failures": (1, 1_000_000),
    "retrieve_breaker_cooldown": (0, 86400),
    "retrieve_max_body_mb": (0.001, 4096),
    "llm_max_tokens": (1, 1_000_000),
    "llm_temperature": (0, 10),
    "llm_context_tokens": (64, 10_000_000),
    "llm_connect_timeout": (0.001, 3600),
    "llm_first_token_timeout": (0.001, 86400),
    "llm_total_timeout": (0.001, 86400),
    "answer_k": (0, 1000),
    "answer_min_score": (-1, 1),
    "answer_further_documents": (0, 100),
    "answer_min_evidence": (0, 2),
    "server_connect_timeout": (0.001, 600),
    "serve_port": (0, 65535),
    "serve_max_body_kb": (1, 1_000_000),
    "serve_max_query_chars": (1, 10_000_000),
    "serve_max_k": (1, 100_000),
    "serve_max_inflight": (1, 1_000_000),
    "serve_shutdown_timeout": (0, 3600),
    "serve_ask_concurrency": (1, 64),
    "serve_ask_queue": (0, 100_000),
}


def check_url(what: str, url: str) -> str:
    """``url`` when it is an http(s) URL with a host and a valid port, else a ConfigError."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as exc:
        raise ConfigError(f"{what} {url!r} is not a valid URL ({exc})") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(
            f"{what} {url!r} must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080/v1"
        )
    if port == 0:
        raise ConfigError(f"{what} {url!r}: port 0 is not a port to connect to")
    return url


def validate(settings: Settings) -> None:
    """Range-check what files, the environment and flags gave (flags are checked by the CLI too)."""
    import math

    check_index_name(settings.index)
    if settings.retrieve_mode not in SEARCH_MODES:  # before any work, whichever path (a server or in-process) runs
        raise ConfigError(f"unknown mode {settings.retrieve_mode!r}; choose one of {', '.join(SEARCH_MODES)}")
    for name, (lo, hi) in RANGES.items():
        value = getattr(settings, name)
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ConfigError(f"setting {name!r} must be from {lo:g} to {hi:g}, not {value!r}")
    cols = settings.retrieve_bm25_columns
    if len(cols) != 3 or not all(math.isfinite(c) and c >= 0 for c in cols):
        raise ConfigError(f"setting 'retrieve_bm25_columns' needs 3 weights >= 0 (title, heading, body), not {cols!r}")
    for key, w in settings.retrieve_weights.items():
        if not (math.isfinite(w) and w >= 0):
            raise ConfigError(f"setting 'retrieve_weights': weight of {key!r} must be a number >= 0, not {w!r}")
    if settings.answer_unverified not in ("drop", "mark"):
        raise ConfigError(f"setting 'answer_unverified' must be drop or mark, not {settings.answer_unverified!r}")
    if settings.answer_lead not in ("auto", "answer"):
        raise ConfigError(f"setting 'answer_lead' must be auto or answer, not {settings.answer_lead!r}")
    if settings.llm_prompt not in ("auto", "chat", "completion"):
        raise ConfigError(f"setting 'llm_prompt' must be auto, chat or completion, not {settings.llm_prompt!r}")
    if settings.llm_weights not in ("fast", "packaged"):
        raise ConfigError(f"setting 'llm_weights' must be fast or packaged, not {settings.llm_weights!r}")
    if settings.retrieve_fusion not in ("zscore", "rrf"):
        raise ConfigError(f"setting 'retrieve_fusion' must be zscore or rrf, not {settings.retrieve_fusion!r}")
    if settings.server not in ("auto", "off", "none", ""):
        check_url("--server", settings.server)
    check_url("llm base URL (--base-url, [llm] base_url)", settings.llm_base_url)
    if settings.store_url and not settings.store_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"store URL {redact(settings.store_url)!r} must start with postgresql:// (or be empty for the local store)"
        )
    if settings.home.exists() and not settings.home.is_dir():
        raise ConfigError(f"RAG_HOME {settings.home} is not a folder")


_USERINFO = re.compile(r"(://[^:/@?#]*:)([^@]*)@")  # scheme://user:PASSWORD@
_SECRET_PARAM = re.compile(r"((?:^|[?&;\s])(?:ssl)?pass(?:word|wd)?\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s;]*)", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` (or a libpq ``key=value`` string) without its password in any form: the userinfo
    (``postgresql://user:***@host/db``), a ``password=`` / ``sslpassword=`` parameter (``?password=***``)."""
    out = _USERINFO.sub(r"\1***@", url, count=1)
    return _SECRET_PARAM.sub(lambda m: m.group(1) + "***", out)


def secrets_of(url: str) -> list[str]:
    """The password(s) ``url`` carries, raw and percent-decoded, to scrub from a driver's message."""
    from urllib.parse import unquote

    found = [m.group(2) for m in _USERINFO.finditer(url)]
    found += [m.group(2).strip("'") for m in _SECRET_PARAM.finditer(url)]
    out: list[str] = []
    for s in found:
        for form in (s, unquote(s)):
            if len(form) >= 3 and form not in out and form != "***":
                out.append(form)
    return sorted(out, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (a database driver's message) without the secrets of ``url``, in whatever form it quotes them."""
    out = redact(text)
    for secret in secrets_of(url):
        out = out.replace(secret, "***")
    return out


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})
