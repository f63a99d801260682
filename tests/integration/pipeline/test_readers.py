"""A real instruct GGUF (SmolLM2-135M-Instruct, the smallest packaged reader; `make test` installs it with
`rag models install smollm2-135m`) answering through its own chat template, in-process and through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from rag_cli.llm import packaged
from tests.conftest import run_cli

pytestmark = pytest.mark.slow
SMOL = packaged.CATALOGUE["smollm2-135m"]


@pytest.fixture(scope="module", autouse=True)
def smollm2() -> None:
    if not packaged.installed(SMOL):
        assert not os.environ.get("CI"), "make test installs smollm2-135m (rag models install smollm2-135m)"
        pytest.skip("rag models install smollm2-135m")


def answered(question: str, settings: Any) -> tuple[list[str], Any]:
    """The drafts streamed while the real model wrote, and the answer's result (in-process, the sample index)."""
    from rag_cli import runtime
    from rag_cli.pipeline.answer import answer
    from rag_cli.retrieve.service import Retrieval

    pieces: list[str] = []

    async def go() -> Any:
        async with Retrieval(settings) as r:
            async for event in answer(question, r, settings):
                if event.kind == "draft":
                    pieces.append(event.data)
                if event.kind == "done":
                    return event.data

    return pieces, runtime.run(go())


def test_instruct_gguf_answers_through_its_chat_template(sample_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag_cli.config import load_settings
    from rag_cli.llm.base import create

    monkeypatch.setenv("RAG_HOME", str(sample_home))
    settings = load_settings(llm_model="smollm2-135m", llm_fallback=[], llm_temperature=0.0, llm_max_tokens=64)
    backend = create("local", settings)
    pieces, result = answered("What is retrieval-augmented generation?", settings)
    assert backend.describe()["model"] == "smollm2-135m"
    assert pieces and result.backend == "local"  # the model wrote: drafts streamed before the end
    assert not "".join(pieces).startswith("According to [")  # no completion prefix: the chat template answered
    assert result.provenance["model"]["sha256"] == SMOL.sha256


def test_rag_ask_model_name_through_the_cli(sample_home: Path) -> None:
    out = run_cli(
        "ask",
        "What is retrieval-augmented generation?",
        "--model",
        "smollm2-135m",
        "--json",
        env={"RAG_HOME": str(sample_home), "RAG_LLM_TEMPERATURE": "0"},
    )
    assert out.returncode in (0, 7), out.stderr
    data = json.loads(out.stdout)
    assert data["provenance"]["model"]["model"] == "smollm2-135m"
    assert data["provenance"]["backend"] == "local"


def test_the_default_reader_is_the_packaged_qwen_0_5b(sample_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no --model, rag answers with the default reader chosen by measurement (issue 31): Qwen2.5-Coder 0.5B
    Instruct, installed with rag, through its chat template (the other tests pin Gemma 3 270M, the fastest)."""
    from rag_cli.config import load_settings
    from rag_cli.llm.local import DEFAULT_READER

    monkeypatch.delenv("RAG_LLM_MODEL", raising=False)
    monkeypatch.setenv("RAG_HOME", str(sample_home))
    settings = load_settings(llm_fallback=[], llm_temperature=0.0, llm_max_tokens=48)
    assert settings.llm_model == "" and DEFAULT_READER == "qwen2.5-coder-0.5b"
    pieces, result = answered("What value of k is usually used in reciprocal rank fusion?", settings)
    model = packaged.CATALOGUE[DEFAULT_READER]
    assert result.backend == "local" and result.provenance["model"]["sha256"] == model.sha256
    copy = packaged.derived_record(model)  # it reads the Q8_0 copy made from that file ([llm] weights = "fast")
    assert copy is not None and result.provenance["model"]["weights"] == {"type": "q8_0", "sha256": copy["sha256"]}
    assert pieces and not "".join(pieces).startswith("According to [")  # the chat template, not the completion
    assert result.citations and set(result.citations) <= set(range(1, len(result.sources) + 1))


@pytest.mark.parametrize(("weights", "file_type"), [("fast", "7"), ("packaged", "15")])
def test_the_fast_copy_is_a_real_q8_0_gguf_of_the_packaged_model(weights: str, file_type: str) -> None:
    """llama.cpp's own quantiser writes the Q8_0 copy (`[llm] weights = "fast"`) from the checked Q4_K_M file of
    the default reader (installed with rag), and llama.cpp loads it: same model, another file type."""
    from rag_cli.llm.local import DEFAULT_READER, LlamaCppBackend

    assert packaged.CATALOGUE[DEFAULT_READER].fast == "q8_0"
    backend = LlamaCppBackend(DEFAULT_READER, n_ctx=256, weights=weights)
    meta = backend.load().metadata
    assert meta["general.file_type"] == file_type  # 7: MOSTLY_Q8_0, 15: MOSTLY_Q4_K_M
    assert meta["general.architecture"] == "qwen2"
    assert backend.count_tokens("git rebase --onto") > 0
