"""The ``openai`` backend: any OpenAI-compatible ``/v1/chat/completions`` endpoint, streamed.

Works with OpenAI, Ollama, vLLM, LM Studio and the llama.cpp server. It POSTs
``stream: true`` over the process's aiohttp session and parses server-sent
events (``data: {...}`` lines; ``data: [DONE]`` ends). Timeouts: connect,
first token, total. Transient failures (connection errors, 5xx, 429) are
retried with jittered backoff, but only before the first token: a stream that
breaks mid-answer is reported, never silently restarted. The API key is read
from the environment variable named by ``llm_api_key_env`` and never logged.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from ..config import Settings
from ..resilience import backoff
from .base import BackendFailed, BaseBackend, Prompt, register


class OpenAIBackend(BaseBackend):
    name = "openai"

    def __init__(self, settings: Settings, services: dict[str, Any]) -> None:
        self.base_url = settings.llm_base_url.rstrip("/")
        self.model = settings.llm_model or "default"
        self.key_env = settings.llm_api_key_env
        self.connect_timeout = settings.llm_connect_timeout
        self.first_token_timeout = settings.llm_first_token_timeout
        self.total_timeout = settings.llm_total_timeout
        self.temperature = settings.llm_temperature
        self.n_ctx = settings.llm_context_tokens
        self.retries = 2
        self.http = services.get("http")

    def context_tokens(self) -> int:
        return self.n_ctx

    def describe(self) -> dict[str, Any]:
        from ..resilience import redact_urls

        return {"name": self.model, "base_url": redact_urls(self.base_url)}

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)  # no tokenizer for a remote model: about 4 characters a token

    def body(self, prompt: Prompt) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}],
            "stream": True,
            "max_tokens": prompt.max_tokens,
            "temperature": self.temperature,
        }

    async def _session(self) -> Any:
        if self.http is not None:
            return await self.http()
        raise BackendFailed("no HTTP session available")

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        import aiohttp

        session = await self._session()
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get(self.key_env or "", "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.base_url}/chat/completions"
        loop = asyncio.get_running_loop()
        t_end = loop.time() + self.total_timeout
        attempt = 0
        started = False
        while True:
            timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_connect=self.connect_timeout)
            try:
                async with asyncio.timeout(self.first_token_timeout):
                    resp = await session.post(url, json=self.body(prompt), headers=headers, timeout=timeout)
                try:
                    if resp.status >= 400:
                        text = (await resp.content.read(2000)).decode("utf-8", "replace")
                        transient = resp.status == 429 or resp.status >= 500
                        raise _Retryable(f"HTTP {resp.status}: {_short(text)}", transient)
                    async for piece in self._events(resp, loop, t_end, started):
                        started = True
                        yield piece
                    return
                finally:
                    resp.close()  # closes the HTTP stream too when the consumer stops early (Ctrl-C)
            except _Retryable as exc:
                reason, transient = exc.reason, exc.transient
            except TimeoutError:
                if started:
                    raise BackendFailed("stream stalled: total timeout passed", started=True) from None
                reason, transient = f"no first token within {self.first_token_timeout:g}s", False
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                if started:
                    raise BackendFailed(f"stream broke mid-answer ({type(exc).__name__})", started=True) from None
                reason, transient = f"cannot reach {self.base_url} ({type(exc).__name__})", True
            if not transient or attempt >= self.retries:
                raise BackendFailed(reason + (f" after {attempt + 1} attempts" if attempt else ""))
            attempt += 1
            await asyncio.sleep(backoff(attempt))

    async def _events(
        self, resp: Any, loop: asyncio.AbstractEventLoop, t_end: float, started: bool
    ) -> AsyncIterator[str]:
        """Parse the SSE stream: ``data: {json}`` lines; ``data: [DONE]`` ends it."""
        first = not started
        got_done = False
        while True:
            limit = self.first_token_timeout if first else max(0.0, t_end - loop.time())
            try:
                async with asyncio.timeout(limit):
                    line = await resp.content.readline()
            except TimeoutError:
                if first:
                    raise
                raise BackendFailed("stream stalled: total timeout passed", started=True) from None
            if not line:
                break
            text = line.decode("utf-8", "replace").strip()
            if not text.startswith("data:"):
                continue
            data = text[5:].strip()
            if data == "[DONE]":
                got_done = True
                break
            try:
                event = json.loads(data)
            except ValueError:
                raise BackendFailed("malformed event in stream", started=not first) from None
            if isinstance(event, dict) and event.get("error"):
                raise BackendFailed(f"server error: {_short(str(event['error']))}", started=not first)
            try:
                choice = event["choices"][0]
            except (KeyError, IndexError, TypeError):
                continue
            delta = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
            if delta:
                first = False
                yield delta
            if choice.get("finish_reason"):
                got_done = True
        if not got_done:
            if first:
                raise _Retryable("stream ended before any token", True)
            raise BackendFailed("stream ended mid-answer (no [DONE])", started=True)


class _Retryable(Exception):
    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def _short(text: str) -> str:
    return " ".join(text.split())[:200]


register("openai", OpenAIBackend)
