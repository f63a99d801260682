"""Packaged models (llm/packaged.py, `rag models`) and the local backend's prompt shape, with fake parts and a
fake llama.cpp: assembling in order, the pinned hash refused when it differs, names accepted by --model."""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rag_cli.config import Settings, load_settings, replace
from rag_cli.errors import ConfigError, LLMError
from rag_cli.llm import local, packaged
from rag_cli.llm.base import Prompt

PARTS = [b"GGUF-part-one|", b"part-two|", b"part-three"]


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three importable part packages (fakepart1..3, each data/partNN.bin) on sys.path; the cache in tmp."""
    site = tmp_path / "site"
    for i, blob in enumerate(PARTS, start=1):
        pkg = site / f"fakepart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return site


def entry(sha: str, name: str = "fake-reader") -> packaged.Packaged:
    return packaged.Packaged(
        name,
        "reader",
        "a fake",
        ("fakepart1==1",),
        packaged._parts("fakepart", 3, "data/part{i:02d}.bin"),
        f"{name}.gguf",
        sha,
        sum(map(len, PARTS)),
        "MIT",
        "chat",
    )


def test_assemble_concatenates_the_parts_in_order_and_checks_the_hash(fake_parts: Path) -> None:
    whole = b"".join(PARTS)
    model = entry(hashlib.sha256(whole).hexdigest())
    assert packaged.installed(model) and packaged.verified_path(model) is None
    path = packaged.assemble(model)
    assert path.read_bytes() == whole and path.parent.name == "models"
    assert packaged.verified_path(model) == path
    path.write_bytes(whole[:-1] + b"X")  # changed after the check (size equal, mtime not): checked again
    assert packaged.verified_path(model) is None


def test_a_single_file_is_used_in_place_and_its_check_recorded_in_a_new_cache(fake_parts: Path) -> None:
    one = packaged.Packaged(
        "fake-one",
        "reader",
        "a fake",
        ("fakepart1==1",),
        packaged._parts("fakepart", 1, "data/part{i:02d}.bin"),
        "fake-one.gguf",
        hashlib.sha256(PARTS[0]).hexdigest(),
        len(PARTS[0]),
        "MIT",
        "chat",
    )
    assert not (fake_parts.parent / "cache").exists()  # a fresh machine: no cache folder yet
    path = packaged.assemble(one)
    assert path == fake_parts / "fakepart1" / "data" / "part01.bin"  # not copied
    assert packaged.verified_path(one) == path


def test_a_hash_mismatch_is_refused_and_leaves_no_file(fake_parts: Path) -> None:
    model = entry("0" * 64)
    with pytest.raises(LLMError) as caught:
        packaged.assemble(model)
    assert "refusing to use it" in str(caught.value) and "rag models install fake-reader" in (caught.value.hint or "")
    assert not any((Path(packaged.user_cache_dir()) / "models").glob("*fake-reader*"))
    assert packaged.verified_path(model) is None


def test_models_install_refuses_a_mismatch_with_one_line(
    fake_parts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rag_cli.cli import output
    from rag_cli.cli.app import main

    monkeypatch.setattr(output, "env", output.Env())  # writes to this test's captured streams
    monkeypatch.setitem(packaged.CATALOGUE, "fake-reader", entry("f" * 64))
    assert main(["models", "install", "fake-reader"]) == 8  # EXIT_LLM; the parts are installed: no pip run
    err = capsys.readouterr().err
    assert "SHA-256" in err and "Traceback" not in err
    good = entry(hashlib.sha256(b"".join(PARTS)).hexdigest())
    monkeypatch.setitem(packaged.CATALOGUE, "fake-reader", good)
    assert main(["models", "install", "fake-reader"]) == 0
    assert capsys.readouterr().out.strip() == str(good.path)
    assert main(["models", "--json"]) == 0
    import json

    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert rows["fake-reader"]["state"] == "ready" and rows["gemma3-270m"]["role"] == "reader"
    assert rows["qwen2.5-coder-1.5b"]["evidence_tokens"] == 600 and rows["all-minilm-l6-v2"]["evidence_tokens"] is None
    assert main(["models", "install", "no-such-model"]) == 2


def test_model_names_for_the_local_backend(fake_parts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    monkeypatch.setitem(packaged.CATALOGUE, "fake-reader", entry("0" * 64))
    assert local.model_ref(replace(s, llm_model="fake-reader")) == "fake-reader"
    with pytest.raises(ConfigError, match="embedder"):
        local.model_ref(replace(s, llm_model="all-minilm-l6-v2"))
    with pytest.raises(ConfigError) as caught:
        local.model_ref(replace(s, llm_model="qwen-typo"))
    assert "qwen2.5-coder-1.5b" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="llm_prompt"):
        from rag_cli.config import validate

        validate(replace(s, llm_prompt="instruct"))


class FakeLlama:
    """llama_cpp.Llama as the backend uses it: metadata, and both generation calls (recorded)."""

    calls: ClassVar[list[tuple[str, Any]]] = []

    def __init__(self, model_path: str, **kw: Any) -> None:
        self.metadata = {"tokenizer.chat_template": "{{ messages }}"} if "instruct" in model_path else {}

    def create_chat_completion(self, messages: list[dict[str, str]], **kw: Any) -> Any:
        FakeLlama.calls.append(("chat", messages))
        return iter([{"choices": [{"delta": {"role": "assistant"}}]}, {"choices": [{"delta": {"content": "Hi [1]."}}]}])

    def create_completion(self, prompt: str, **kw: Any) -> Any:
        FakeLlama.calls.append(("completion", prompt))
        return iter([{"choices": [{"text": "1], hi."}]}])

    def close(self) -> None:
        pass


@pytest.mark.parametrize("style", ["auto", "completion", "chat"])
@pytest.mark.parametrize("name", ["base.gguf", "instruct.gguf"])
def test_the_prompt_shape_follows_the_gguf_chat_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, style: str
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=FakeLlama))
    monkeypatch.setattr(local, "_MODELS", {})
    FakeLlama.calls = []
    path = tmp_path / name
    path.write_bytes(b"GGUF")
    backend = local.LlamaCppBackend(str(path), prompt_style=style)
    prompt = Prompt("q?", [], completion="Sources ... Answer: According to [", system="SYS", user="USER", max_tokens=8)
    text = "".join(backend._pieces(backend.load(), prompt))
    chat = style == "chat" or (style == "auto" and name == "instruct.gguf")
    assert backend.completion is (not chat)
    if chat:
        assert FakeLlama.calls == [
            ("chat", [{"role": "system", "content": "SYS"}, {"role": "user", "content": "USER"}])
        ]
        assert text == "Hi [1]."
    else:
        assert FakeLlama.calls[0][0] == "completion" and text == "1], hi."


def test_settings_carry_the_prompt_style(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LLM_PROMPT", "completion")
    s: Settings = load_settings()
    assert s.llm_prompt == "completion"
    backend = local._factory(replace(s, llm_model=""), {})
    assert backend.prompt_style == "completion"
