"""Issue 32, item 1: the answer streams as the model writes it. Each piece of text is a ``draft`` event at
once; each sentence, once checked, is a ``verdict`` event followed by the ``token`` the answer shows of it (none
when it is left out). A terminal shows the draft dimmed and strikes a left-out sentence; plain output and
JSON see only checked text, as before."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rag_cli import runtime
from rag_cli.config import Settings, replace
from rag_cli.embed.base import create
from rag_cli.ingest.pipeline import index_paths
from rag_cli.llm import base as llm_base
from rag_cli.llm.extractive import ExtractiveBackend
from rag_cli.pipeline.answer import answer, jsonl_event
from rag_cli.retrieve.service import Retrieval
from tests.conftest import run_pty, write

SUPPORTED = "According to [1], kestrels hover over fields while hunting voles."
UNSUPPORTED = " The moon is made of green cheese and tastes of walnuts [1]."
PIECES = [w + " " for w in SUPPORTED.split()] + [w + " " for w in UNSUPPORTED.split()]


class Scripted(ExtractiveBackend):
    """Writes a supported sentence and an unsupported one, a word at a time, stamping when each is sent."""

    name = "scripted"
    quotes = False
    wants_evidence = True
    sent: ClassVar[list[tuple[float, str]]] = []

    async def stream(self, prompt: llm_base.Prompt) -> AsyncIterator[str]:
        for piece in PIECES:
            await asyncio.sleep(0.01)
            Scripted.sent.append((time.monotonic(), piece))
            yield piece


def _events(settings: Settings, tmp_path: Path) -> list[tuple[float, Any]]:
    docs = tmp_path / "docs"
    write(docs / "birds.md", "# Birds\n\nKestrels hover over fields while hunting voles. They nest on cliffs.\n")
    write(docs / "other.md", "# Other\n\nOwls hunt at night over meadows.\n")
    runtime.run(index_paths([docs], settings, create(settings)))
    llm_base.register("scripted", lambda s, services: Scripted())

    async def go() -> list[tuple[float, Any]]:
        async with Retrieval(settings) as r:
            return [
                (time.monotonic(), ev)
                async for ev in answer("Where do kestrels hunt voles?", r, settings, backends=["scripted"])
            ]

    return runtime.run(go())


def test_drafts_arrive_as_written_and_verdicts_follow(hash_settings: Settings, tmp_path: Path) -> None:
    settings = replace(hash_settings, answer_min_evidence=0.0, answer_min_score=-1.0, answer_quote=False)
    Scripted.sent.clear()
    events = _events(settings, tmp_path)
    kinds = [ev.kind for _, ev in events]
    drafts = [(t, ev.data) for t, ev in events if ev.kind == "draft"]
    assert "".join(d for _, d in drafts).split() == "".join(PIECES).split()  # every word, as written
    # the first words are on their way before the model has written the first sentence's end
    first_sentence_end = next(t for t, p in Scripted.sent if p.strip().endswith("voles."))
    assert drafts[0][0] < first_sentence_end
    verdicts = [ev.data for _, ev in events if ev.kind == "verdict"]
    assert [v["shown"] for v in verdicts if v["raw"].strip()] == [True, False]
    assert verdicts[1]["reason"] == "no source supports it" and "green cheese" in verdicts[1]["raw"]
    # a verdict comes before the token that shows its sentence, and the tokens are the answer
    first_token = kinds.index("token")
    assert kinds.index("verdict") < first_token and kinds.index("draft") < first_token
    result = events[-1][1].data
    assert "".join(ev.data for _, ev in events if ev.kind == "token").strip() == result.answer
    assert "green cheese" not in result.answer and result.answer.startswith("According to [1]")
    assert result.timings["first_draft_ms"] < result.timings["first_text_ms"] <= result.timings["total_ms"]
    lines = [jsonl_event(ev) for _, ev in events if ev.kind in ("draft", "verdict")]
    assert {ln["event"] for ln in lines} == {"draft", "verdict"}
    json.dumps(lines)  # JSON Lines and SSE carry them as they are


def test_a_terminal_shows_the_draft_then_strikes_what_is_left_out(hash_settings: Settings, tmp_path: Path) -> None:
    from rich.console import Console

    from rag_cli.cli.ask import Renderer

    settings = replace(hash_settings, answer_min_evidence=0.0, answer_min_score=-1.0, answer_quote=False)
    events = _events(settings, tmp_path)

    class Env:  # what the renderer asks of the CLI's environment: a terminal on stdout and stderr
        stdout_tty = stderr_tty = True
        stdin_tty = False

        def console(self, stream: str) -> Console:
            return Console(force_terminal=True, width=100, color_system="standard")

        def warn(self, msg: str) -> None:
            pass

        def err(self, msg: str) -> None:
            pass

    view = Renderer(Env(), False)  # type: ignore[arg-type]
    seen_dim_draft = False
    for _, ev in events:
        if ev.kind == "done":
            break
        view.event(ev)
        if ev.kind == "draft" and view.draft.strip() and not view.view.strip():
            seen_dim_draft = True  # words on screen before any sentence was checked
    assert seen_dim_draft
    assert "~~The moon is made of green cheese" in view.view
    assert view.view.startswith("According to [1], kestrels hover") and view.draft.strip() == ""
    view._stop_live()


@pytest.mark.slow
def test_words_reach_a_terminal_while_the_model_writes(sample_home: Path) -> None:
    """Under a pseudo-terminal, with the default settings (unsupported sentences left out), the slow model's
    words appear on screen as it writes them: the test types Ctrl-C when "word3" is on screen, mid-answer.
    Before, they were held back until checked and then left out, so nothing of them ever reached the screen."""
    env = {
        "RAG_HOME": str(sample_home),
        "RAG_PLUGINS": "tests.plugins.slow_llm",
        "RAG_TEST_LLM_DELAY": "0.1",
        "RAG_TEST_LLM_TOKENS": "80",
    }
    q = "How many bits per weight does the Q4_K_M quantisation use?"
    code, screen = run_pty(
        "ask", q, "--llm", "slow", "--fallback", "", env=env, timeout=120, keys=[(b"word3", b"\x03")]
    )
    assert b"word3" in screen
    assert code == 130, screen[-800:]  # stopped mid-answer: the words were there before the end
