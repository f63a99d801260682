"""ONNX Runtime encoder for sentence-transformers BERT-style models (mean pooling + L2 norm).

The ONNX file is exported once from the model folder with torch (``export``); its
BERT-style layers are fused by ONNX Runtime's transformer optimizer (one Attention,
SkipLayerNorm and BiasGelu op per layer instead of ~30 small ops; the int8 graph
quantized from it ran ~15% faster in bench/embed_backends.py, fp32 about the same).
The file is cached under the user cache dir, keyed by the model files and
``EXPORT_VERSION``; after that, encoding needs only ``onnxruntime``, ``tokenizers``
and numpy, which import in ~0.1 s instead of ~6 s for sentence-transformers. Vectors
match the PyTorch backend (cosine 1.0 to 1e-6 on the packaged model).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import EmbedderError

EXPORT_VERSION = "2"  # bump when export() changes the graph it writes: old caches are then ignored


def cache_path(model_dir: Path, variant: str = "fp32") -> Path:
    """Where the ONNX export of ``model_dir`` lives (changes when the model files change)."""
    from ..config import user_cache_dir

    h = hashlib.sha256(f"{EXPORT_VERSION}:{model_dir.resolve()}".encode())
    for name in ("model.safetensors", "pytorch_model.bin", "config.json"):
        f = model_dir / name
        if f.exists():
            st = f.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    root = Path(os.environ.get("RAG_ONNX_CACHE", user_cache_dir() / "onnx"))
    return root / h.hexdigest()[:16] / f"model-{variant}.onnx"


def export(model_dir: Path, out: Path) -> Path:
    """Export the transformer of ``model_dir`` to ONNX at ``out`` (atomic; needs torch, transformers, onnx)."""
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise EmbedderError(f"exporting to ONNX needs torch and transformers: {exc}") from None
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # stderr is for rag's own progress
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:  # eager attention exports the plain MatMul/Softmax pattern the fusion below recognises
        base = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    except (TypeError, ValueError):
        base = AutoModel.from_pretrained(str(model_dir))
    base.eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = tuple(torch.ones(2, 16, dtype=torch.long) for _ in names)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Wrapper(base),
                dummy,
                str(tmp),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]},
                opset_version=17,
                dynamo=False,
            )
        fuse(tmp, base.config)
        os.replace(tmp, out)
    except Exception as exc:  # torch.onnx raises many kinds
        raise EmbedderError(f"ONNX export of {model_dir} failed: {exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def fuse(path: Path, config: Any) -> bool:
    """Fuse the BERT-style layers of the ONNX graph at ``path`` in place, if that works and changes nothing.

    The fused graph is kept only when ONNX Runtime's optimizer recognised attention layers and its
    output matches the unfused graph (max abs difference <= 1e-3 on a padded batch); any other
    model keeps the plain export.
    """
    import logging

    import numpy as np

    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    if not heads or not hidden:
        return False
    fused = path.with_name(f"{path.name}.fused")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        model = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
        if not model.get_fused_operator_statistics().get("Attention"):
            return False
        model.save_model_to_file(str(fused))
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, 2000, size=(3, 24), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[1, 10:], mask[2, 3:] = 0, 0  # right padding, as OnnxEncoder feeds it
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        a, b = (_run_once(f, feeds) for f in (path, fused))
        if float(np.abs((a - b) * mask[:, :, None]).max()) > 1e-3:
            return False
        os.replace(fused, path)
        return True
    except Exception:  # the optimizer raises many kinds; the unfused export is still correct
        return False
    finally:
        fused.unlink(missing_ok=True)


def _run_once(onnx_file: Path, feeds: dict[str, Any]) -> Any:
    sess = session(onnx_file, threads=1)
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def session(onnx_file: Path, threads: int) -> Any:
    """A CPU inference session on ``threads`` intra-op threads (no spinning between runs, quiet logs)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])


def quantize(src: Path, out: Path) -> Path:
    """Dynamic int8 quantization of ``src`` (weights per output channel; activations at run time), atomic."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_name(f".{out.stem}.{os.getpid()}.pre.onnx")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        # DefaultTensorType: the exported graph leaves some shapes unknown to the quantizer
        quantize_dynamic(
            str(pre), str(tmp), weight_type=QuantType.QInt8, per_channel=True, extra_options={"DefaultTensorType": 1}
        )
        os.replace(tmp, out)
    except Exception as exc:  # onnx/onnxruntime raise many kinds
        raise EmbedderError(f"int8 quantization of {src} failed: {exc}") from None
    finally:
        for f in (pre, tmp):
            f.unlink(missing_ok=True)
    return out


class OnnxEncoder:
    """Tokenize with ``tokenizers``, run the ONNX graph, mean-pool over the mask, L2-normalise."""

    def __init__(self, onnx_file: Path, tokenizer_file: Path, max_length: int, threads: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.session = session(onnx_file, threads)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Any:
        import numpy as np

        encs = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
        out = np.zeros((len(encs), 0), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encs[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, i in enumerate(idx):
                n = len(encs[i].ids)
                ids[row, :n] = encs[i].ids
                mask[row, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]
            summed = (hidden * mask[:, :, None]).sum(axis=1)
            vecs = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            if out.shape[1] == 0:
                out = np.zeros((len(encs), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out
