"""Packaged models (llm/packaged.py, `rag models`) and the local backend's prompt shape, with fake parts and a
fake llama.cpp: assembling in order, the pinned hash refused when it differs, names accepted by --model."""

from __future__ import annotations

import ctypes
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


class FakeQuantizeParams(ctypes.Structure):
    _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int), ("allow_requantize", ctypes.c_bool)]


@pytest.fixture
def fake_quantizer(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, int, bool]]:
    """llama_cpp's quantiser as packaged.derive calls it: the copy is the source's bytes, reversed; each call
    recorded (its source's bytes, the file type, requantising allowed). A source starting "FAIL" fails."""
    calls: list[tuple[bytes, int, bool]] = []

    def quantize(src: bytes, dst: bytes, params: Any) -> int:
        p = params._obj
        data = Path(src.decode()).read_bytes()
        calls.append((data, p.ftype, p.allow_requantize))
        if data.startswith(b"FAIL"):
            return 1
        Path(dst.decode()).write_bytes(data[::-1])
        return 0

    fake = types.SimpleNamespace(llama_model_quantize_default_params=FakeQuantizeParams, llama_model_quantize=quantize)
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    return calls


def fast_entry(sha: str, fast: str = "q8_0") -> packaged.Packaged:
    from dataclasses import replace as changed

    return changed(entry(sha), fast=fast)


@pytest.fixture
def fast_reader(
    fake_parts: Path, fake_quantizer: list[tuple[bytes, int, bool]], monkeypatch: pytest.MonkeyPatch
) -> packaged.Packaged:
    """The fake parts' reader, with a Q8_0 copy to derive, in the catalogue as "fake-reader"."""
    model = fast_entry(hashlib.sha256(b"".join(PARTS)).hexdigest())
    monkeypatch.setitem(packaged.CATALOGUE, "fake-reader", model)
    return model


def test_the_fast_copy_is_derived_once_from_the_checked_file(
    fast_reader: packaged.Packaged, fake_quantizer: list[tuple[bytes, int, bool]]
) -> None:
    whole, model = b"".join(PARTS), fast_reader
    assert packaged.resolve("fake-reader", "packaged") == model.path and fake_quantizer == []  # as packaged
    copy = packaged.resolve("fake-reader", "fast")
    assert copy == packaged.derived_file(model) and copy is not None and copy.read_bytes() == whole[::-1]
    assert fake_quantizer == [(whole, packaged._FTYPES["q8_0"], True)]  # from the checked file, requantised
    record = packaged.derived_record(model)
    assert record is not None and record["sha256"] == hashlib.sha256(whole[::-1]).hexdigest()
    assert packaged.resolve("fake-reader", "fast") == copy and len(fake_quantizer) == 1  # kept: not derived again
    assert not [p for p in copy.parent.iterdir() if p.name.endswith(".tmp")]
    copy.write_bytes(b"changed since")  # a copy changed after it was made is made again
    assert packaged.derived_record(model) is None
    assert packaged.resolve("fake-reader", "fast") == copy and copy.read_bytes() == whole[::-1]
    assert len(fake_quantizer) == 2


def test_a_copy_made_from_another_pinned_file_is_not_used(fast_reader: packaged.Packaged) -> None:
    model = fast_reader
    packaged.resolve("fake-reader", "fast")
    repinned = fast_entry("1" * 64)  # a new release pins another file: the old copy's record names the old one
    assert packaged.derived_record(repinned) is None
    packaged.forget(model)  # `rag models install --force` forgets the copy's record too
    assert packaged.derived_record(model) is None and packaged.verified_path(model) is None


def test_a_reader_without_a_faster_type_reads_its_packaged_file(
    fake_parts: Path, fake_quantizer: list[tuple[bytes, int, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fast_entry(hashlib.sha256(b"".join(PARTS)).hexdigest(), fast="")
    monkeypatch.setitem(packaged.CATALOGUE, "fake-reader", model)
    assert packaged.resolve("fake-reader", "fast") == model.path and fake_quantizer == []
    assert packaged.derived_record(model) is None


def test_a_failed_copy_is_a_clear_error_and_leaves_nothing(
    fake_parts: Path, fake_quantizer: list[tuple[bytes, int, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake_parts / "fakepart1" / "data" / "part01.bin").write_bytes(b"FAIL|")
    whole = b"FAIL|" + b"".join(PARTS[1:])
    model = fast_entry(hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(packaged.CATALOGUE, "fake-reader", model)
    with pytest.raises(LLMError) as caught:
        packaged.resolve("fake-reader", "fast")
    assert "q8_0 copy" in str(caught.value) and 'weights = "packaged"' in (caught.value.hint or "")
    assert not packaged.derived_file(model).exists() and packaged.derived_record(model) is None
    assert not [p for p in packaged.derived_file(model).parent.iterdir() if p.name.endswith(".tmp")]
    assert packaged.resolve("fake-reader", "packaged") == model.path  # the packaged file still serves


def test_the_backend_reads_the_fast_copy_and_names_it(
    fast_reader: packaged.Packaged, capsys: pytest.CaptureFixture[str]
) -> None:
    whole, model = b"".join(PARTS), fast_reader
    s = load_settings()
    fast = local._factory(replace(s, llm_model="fake-reader"), {})
    assert fast.weights == "fast" and fast.model_path() == packaged.derived_file(model)
    assert "writing a q8_0 copy of fake-reader" in capsys.readouterr().err  # once, said on stderr
    assert fast.model_path() == packaged.derived_file(model) and capsys.readouterr().err == ""
    described = fast.describe()
    assert described["sha256"] == model.sha256  # the pinned file it came from, and the copy it reads
    assert described["weights"] == {"type": "q8_0", "sha256": hashlib.sha256(whole[::-1]).hexdigest()}
    plain = local._factory(replace(s, llm_model="fake-reader", llm_weights="packaged"), {})
    assert plain.model_path() == model.path and "weights" not in plain.describe()
    from rag_cli.config import validate

    with pytest.raises(ConfigError, match="llm_weights"):
        validate(replace(s, llm_weights="small"))


def test_models_install_writes_the_fast_copy_once(
    fast_reader: packaged.Packaged,
    fake_quantizer: list[tuple[bytes, int, bool]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from rag_cli.cli import output
    from rag_cli.cli.app import main

    monkeypatch.setattr(output, "env", output.Env())
    model = fast_reader
    assert main(["models", "install", "fake-reader"]) == 0
    assert capsys.readouterr().out.strip() == str(packaged.derived_file(model))
    assert main(["models", "install", "fake-reader"]) == 0 and len(fake_quantizer) == 1  # kept
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}["fake-reader"]
    assert row["fast"] == "q8_0" and row["fast_copy"]["path"] == str(packaged.derived_file(model))
    assert row["fast_copy"]["bytes"] == packaged.derived_file(model).stat().st_size  # a number, as "bytes" is
    assert main(["models"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("fake-reader"))
    assert "(reads its q8_0 copy, 0 MB)" in line
    monkeypatch.setenv("RAG_LLM_WEIGHTS", "packaged")  # who reads the packaged file gets no copy written
    packaged.derived_file(model).unlink()
    assert main(["models", "install", "fake-reader"]) == 0
    assert capsys.readouterr().out.strip() == str(model.path) and len(fake_quantizer) == 1
