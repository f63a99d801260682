"""A test plugin: an LLM backend that "runs here" (takes a generation slot of rag serve) and writes
slowly, recording every token it produces, so tests can see a cancelled answer stop generating."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rag_cli.llm.base import Prompt, register
from rag_cli.llm.extractive import ExtractiveBackend


class SlowLocal(ExtractiveBackend):
    name = "slow"
    runs_here = True

    def __init__(self) -> None:
        super().__init__()
        self.delay = float(os.environ.get("RAG_TEST_LLM_DELAY", "0.05"))
        self.count = int(os.environ.get("RAG_TEST_LLM_TOKENS", "200"))
        self.log = Path(os.environ["RAG_TEST_LLM_LOG"]) if os.environ.get("RAG_TEST_LLM_LOG") else None

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        quote = self.answer(prompt)
        yield quote + "\n"
        for i in range(self.count):
            await asyncio.sleep(self.delay)
            if self.log is not None:
                with self.log.open("a") as fh:
                    fh.write(f"{i}\n")
            yield f" word{i}"  # never the same twice in a row: a repeated word is a loop, which rag cuts


def _factory(settings: Any, services: dict[str, Any]) -> SlowLocal:
    return SlowLocal()


register("slow", _factory)
