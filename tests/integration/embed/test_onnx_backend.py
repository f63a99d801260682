"""The ONNX Runtime backend with the real packaged model: export, layer fusion, int8, and an index built with it."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import pytest

from rag_cli.config import load_settings
from rag_cli.embed import onnx as onnx_mod
from rag_cli.embed.base import create
from tests.conftest import IMPORTTIME, SAMPLE, imported_modules, run_cli

TEXTS = [
    "what is retrieval augmented generation",
    "The boundary layer on a flat plate at high Mach number thickens downstream of the leading edge. " * 3,
    "short",
]


def _ops(path: Path) -> collections.Counter[str]:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    """Vectors of TEXTS from PyTorch, fused fp32 ONNX and int8 ONNX (exports land in the user cache, as in use)."""
    out = {}
    for label, backend, variant in (
        ("torch", "sentence-transformers", "fp32"),
        ("fp32", "onnx", "fp32"),
        ("int8", "onnx", "int8"),
    ):
        emb = create(
            load_settings(
                embed_backend=backend,
                embed_onnx_variant=variant,
                embed_doc_backend="torch" if label == "torch" else "auto",
            )
        )
        out[label] = emb.embed(TEXTS)
        out[f"{label}-embedder"] = emb
    return out


def test_fp32_onnx_equals_pytorch_and_is_fused(vectors: dict[str, Any]) -> None:
    import numpy as np

    assert np.abs(vectors["fp32"] - vectors["torch"]).max() < 1e-4
    f = vectors["fp32-embedder"].onnx_file()
    ops = _ops(f)
    assert ops["Attention"] == 6 and ops["SkipLayerNormalization"] == 12, ops  # one per layer, not ~30 small ops
    assert vectors["fp32-embedder"].fingerprint() == vectors["torch-embedder"].fingerprint()  # interchangeable


def test_int8_is_close_quantized_and_fingerprinted(vectors: dict[str, Any]) -> None:
    cos = (vectors["int8"] * vectors["torch"]).sum(1)
    assert cos.min() > 0.97, cos
    assert cos.max() < 0.99999  # it really is another graph
    ops = _ops(vectors["int8-embedder"].onnx_file())
    assert ops["MatMulInteger"] > 0 and ops["QAttention"] == 6, ops
    assert vectors["int8-embedder"].fingerprint()["quant"] == "int8"  # an fp32 index refuses int8 queries


def test_fusion_is_kept_only_when_it_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny random BERT: fused with the right head count; the wrong count fails the numerics check."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=3000,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(tmp_path / "tiny")
    monkeypatch.setattr(onnx_mod, "fuse", lambda path, config: False)
    plain = onnx_mod.export(tmp_path / "tiny", tmp_path / "plain.onnx")
    monkeypatch.undo()
    assert _ops(plain)["Attention"] == 0
    before = plain.read_bytes()
    wrong = BertConfig(**{**cfg.to_dict(), "num_attention_heads": 2})
    assert onnx_mod.fuse(plain, wrong) is False
    assert plain.read_bytes() == before  # left as exported
    assert onnx_mod.fuse(plain, cfg) is True
    assert _ops(plain)["Attention"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".fused", ".tmp"))]


def test_index_and_search_with_the_int8_backend(tmp_path: Path, vectors: dict[str, Any]) -> None:
    """The real CLI: `rag index` with int8 ONNX, then a search finds the right file; torch is never imported."""
    env = {
        "RAG_HOME": str(tmp_path / "home"),
        "RAG_EMBED_BACKEND": "onnx",
        "RAG_EMBED_ONNX_VARIANT": "int8",
        **IMPORTTIME,
    }
    out = run_cli("index", str(SAMPLE), "--json", env=env, timeout=600, process=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["chunks"]["added"] > 0
    assert {"torch", "sentence_transformers"}.isdisjoint(imported_modules(out.stderr))  # export cached (fixture)
    res = run_cli(
        "search",
        "Who introduced the term retrieval-augmented generation?",
        "--mode",
        "dense",
        "--json",
        "--server",
        "off",
        env=env,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    hits = json.loads(res.stdout)["hits"]
    assert any(h["path"].endswith("concepts/rag-overview.md") for h in hits[:3]), [h["path"] for h in hits]
    # an index quantized from an older export of the graph is refused, not searched with other vectors
    manifest = next((tmp_path / "home" / "indexes" / "default").glob("data-*/manifest.json"))
    data = json.loads(manifest.read_text())
    assert data["fingerprint"]["embedder"]["export"] == onnx_mod.EXPORT_VERSION
    data["fingerprint"]["embedder"].pop("export")
    manifest.write_text(json.dumps(data))
    old = run_cli("search", "retrieval", "--json", "--server", "off", env=env)
    assert old.returncode == 4 and "--rebuild" in old.stderr, old.stderr[-2000:]


def _vectors_of(home: Path) -> dict[str, Any]:
    import sqlite3

    import numpy as np

    db = next((home / "indexes" / "default").glob("data-*/rag.sqlite"))
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT f.path, c.ordinal, v.v FROM chunks c JOIN files f ON f.id = c.file_id JOIN vectors v ON v.id = c.id"
        ).fetchall()
    finally:
        conn.close()
    return {(p, o): np.frombuffer(b, dtype=np.float32) for p, o, b in rows}


def test_default_index_embeds_with_fp32_onnx_exported_once_in_the_open(tmp_path: Path) -> None:
    """Issue 17: the fastest correct path is the default. The first run on a machine exports the model with a
    note on stderr; later runs do not; the vectors are PyTorch's, so both kinds of index answer alike."""
    import numpy as np

    cache = tmp_path / "onnx-cache"
    base = {"RAG_ONNX_CACHE": str(cache)}
    # fresh processes: one that has loaded the encoder already has nothing to prepare
    first = run_cli(
        "index",
        str(SAMPLE / "concepts"),
        "--json",
        env={**base, "RAG_HOME": str(tmp_path / "h1")},
        timeout=900,
        process=True,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert "preparing the ONNX encoder" in first.stderr and "ONNX encoder ready" in first.stderr
    assert json.loads(first.stdout)["documents_embedded_by"] == "onnx"
    again = run_cli(
        "index", str(SAMPLE / "concepts"), "--json", env={**base, "RAG_HOME": str(tmp_path / "h2")}, process=True
    )
    assert again.returncode == 0 and "ONNX" not in again.stderr, again.stderr[-2000:]
    torch_env = {**base, "RAG_HOME": str(tmp_path / "h3"), "RAG_EMBED_DOC_BACKEND": "torch"}
    old = run_cli("index", str(SAMPLE / "concepts"), "--json", env=torch_env)
    assert old.returncode == 0 and json.loads(old.stdout)["documents_embedded_by"] == "torch", old.stderr[-2000:]
    onnx_vecs, torch_vecs = _vectors_of(tmp_path / "h2"), _vectors_of(tmp_path / "h3")
    assert onnx_vecs.keys() == torch_vecs.keys() and onnx_vecs
    assert max(float(np.abs(onnx_vecs[k] - torch_vecs[k]).max()) for k in onnx_vecs) < 1e-4
    for home in ("h2", "h3"):
        res = run_cli(
            "search",
            "Who introduced the term retrieval-augmented generation?",
            "--json",
            "--server",
            "off",
            env={**base, "RAG_HOME": str(tmp_path / home)},
        )
        assert res.returncode == 0 and json.loads(res.stdout)["hits"][0]["path"].endswith("rag-overview.md")
