"""`rag serve` for programs, agents and chat UIs: /ask (SSE and JSON), the OpenAI-compatible /v1, MCP over
HTTP and stdio, several indexes, the generation queue, disconnects and SIGTERM. Each with its real client:
aiohttp, the `openai` package, the `mcp` SDK; the real packaged GGUF where the model is the point."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IMPORTTIME, ROOT, imported_modules, run_cli
from tests.serving import Served, start_serve

pytestmark = pytest.mark.slow
TOKEN = "ask-t0ken"
Q = "How many bits per weight does the Q4_K_M quantisation use on average?"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def two_homes(tmp_path_factory: pytest.TempPathFactory, sample_home: Path) -> Path:
    """sample_home's index plus a second one, `guides`, of sample_corpus/guides alone."""
    home = tmp_path_factory.mktemp("asks") / "home"
    shutil.copytree(sample_home, home, ignore=shutil.ignore_patterns("run"))
    out = run_cli("index", str(ROOT / "sample_corpus/guides"), "--index", "guides", env={"RAG_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    return home


SERVE_ENV = {"RAG_PLUGINS": "tests.plugins.slow_llm", "RAG_SERVE_ASK_QUEUE": "1", "RAG_LLM_TEMPERATURE": "0"}


@pytest.fixture(scope="module")
def served(two_homes: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("asklog")
    log = tmp / "tokens.log"
    s = start_serve(
        two_homes,
        tmp,
        "--token",
        TOKEN,
        "--index",
        "default",
        "--index",
        "guides",
        env={**SERVE_ENV, "RAG_TEST_LLM_LOG": str(log)},
    )
    s.tokens_log = log  # type: ignore[attr-defined]
    yield s
    s.proc.send_signal(signal.SIGTERM)
    s.proc.wait(timeout=30)


async def sse_events(resp: Any) -> AsyncIterator[tuple[str, Any]]:
    """(event name, parsed data) for each server-sent event of an aiohttp response."""
    name, data = "message", []
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                yield name, (json.loads(text) if text != "[DONE]" else text)
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_ask_sse_streams_the_jsonl_events_with_the_real_gguf(served: Served) -> None:
    import aiohttp

    async def go() -> tuple[Any, list[tuple[str, Any]]]:
        async with (
            aiohttp.ClientSession(headers={**AUTH, "Accept": "text/event-stream"}) as http,
            http.post(served.url("/ask"), json={"question": Q}) as resp,
        ):
            return resp, [ev async for ev in sse_events(resp)]

    resp, events = run(go())
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    names = [n for n, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and "token" in names
    assert all(data["event"] == n for n, data in events)  # the same objects as `rag ask --jsonl`
    done = events[-1][1]
    assert done["backend"] == "local" and done["provenance"]["model"]["packaged"]
    assert "".join(d["text"] for n, d in events if n == "token").strip() == done["answer"]
    assert done["sentences"] and all("verified" in v for v in done["sentences"])
    assert any(s["path"].endswith("local-llms.pdf") for s in done["sources"])


def test_ask_json_is_the_cli_json(served: Served, two_homes: Path) -> None:
    status, data = served.request("/ask", {"question": Q, "llm": "none"}, token=TOKEN)
    assert status == 200
    cli = run_cli("ask", Q, "--json", "--llm", "none", "--server", "off", env={"RAG_HOME": str(two_homes)})
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    assert set(data) == set(expected)
    for key in ("answer", "citations", "verified", "backend", "question", "query"):
        assert data[key] == expected[key], key
    assert [s["location"] for s in data["sources"]] == [s["location"] for s in expected["sources"]]


@pytest.mark.parametrize(
    "body,token,status",
    [
        ({"question": Q}, None, 401),
        ({"question": ""}, TOKEN, 400),
        ({"question": "x" * 2500}, TOKEN, 400),
        ({"question": Q, "llm": "gpt-9"}, TOKEN, 400),
        ({"question": Q, "k": 0}, TOKEN, 400),
        ({"question": Q, "mode": "weird"}, TOKEN, 400),
        ({"question": Q, "index": "nope"}, TOKEN, 404),
    ],
)
def test_ask_rejects_bad_requests(served: Served, body: dict[str, Any], token: str | None, status: int) -> None:
    assert served.request("/ask", body, token=token)[0] == status


def test_ask_declines_off_topic_like_the_cli(served: Served) -> None:
    status, data = served.request("/ask", {"question": "What is the population of Tokyo?"}, token=TOKEN)
    assert status == 200 and data["answer"] is None and data["exit_code"] == 7
    assert "no relevant" in data["error"] or "'Tokyo' appears in no document" in data["error"]


def _metric(served: Served, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    _, text = served.request("/metrics", token=TOKEN)
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_client_that_disconnects_stops_generation(served: Served) -> None:
    import aiohttp

    log: Path = served.tokens_log  # type: ignore[attr-defined]
    before = _metric(served, "rag_answers_total", route="/ask", outcome="cancelled")

    async def go() -> None:
        async with aiohttp.ClientSession(headers={**AUTH, "Accept": "text/event-stream"}) as http:
            resp = await http.post(served.url("/ask"), json={"question": Q, "llm": "slow"})
            async for name, _ in sse_events(resp):
                if name == "token":
                    break
            resp.close()  # hang up mid-answer

    start = _count_lines(log)
    run(go())
    _stops_generating(served, "/ask", before, start)


def _stops_generating(served: Served, route: str, before: float, start: int) -> None:
    """The answer on ``route`` is counted cancelled, writes no more tokens, and frees its slot."""
    log: Path = served.tokens_log  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while _metric(served, "rag_answers_total", route=route, outcome="cancelled") <= before:
        assert time.monotonic() < deadline, f"the answer on {route} was not cancelled"
        time.sleep(0.1)
    stopped_at = _count_lines(log)
    time.sleep(0.5)  # ten more tokens' time: none come
    assert _count_lines(log) == stopped_at and stopped_at - start < 200
    assert _metric(served, "rag_generation_active") == 0


def test_a_full_queue_is_refused_at_once_with_retry_after(served: Served) -> None:
    """One slot, a queue of one: the third concurrent answer gets 429 while the first still writes."""
    import aiohttp

    async def go() -> tuple[int, str | None, bool]:
        async with aiohttp.ClientSession(headers={**AUTH, "Accept": "text/event-stream"}) as http:
            first = await http.post(served.url("/ask"), json={"question": Q, "llm": "slow"})
            assert first.status == 200
            second = asyncio.create_task(http.post(served.url("/ask"), json={"question": Q, "llm": "slow"}))
            deadline = time.monotonic() + 10
            while _metric(served, "rag_generation_queue_depth") < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            async with http.post(served.url("/ask"), json={"question": Q, "llm": "slow"}) as third:
                status, retry = third.status, third.headers.get("Retry-After")
            still_writing = not first.content.at_eof()
            first.close()
            second.cancel()
            return status, retry, still_writing

    status, retry, still_writing = run(go())
    assert status == 429 and retry is not None and int(retry) >= 1 and still_writing
    assert _metric(served, "rag_rejections_total", route="/ask") >= 1


def test_openai_client_against_v1(served: Served) -> None:
    import openai

    client = openai.OpenAI(base_url=served.url("/v1"), api_key=TOKEN, max_retries=0)
    assert [m.id for m in client.models.list()] == ["rag/default", "rag/guides"]
    history = [
        {"role": "user", "content": Q},
        {"role": "assistant", "content": "About 4.5 [1]."},
        {"role": "user", "content": "and what is its file size?"},
    ]
    resp = client.chat.completions.create(model="rag/default", messages=history, extra_body={"llm": "none"})
    text = resp.choices[0].message.content or ""
    assert resp.choices[0].finish_reason == "stop" and "\n\nSources:\n[" in text
    extra = resp.model_extra or {}
    assert extra["citations"] and all({"n", "path", "location"} <= set(c) for c in extra["citations"])
    assert "Q4_K_M" in extra["rag"]["query"] and extra["rag"]["question"] == "and what is its file size?"
    # streaming, with the real packaged model
    chunks = list(
        client.chat.completions.create(model="rag/default", messages=[{"role": "user", "content": Q}], stream=True)
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop" and "Sources:" in streamed
    final = chunks[-1].model_extra or {}
    assert final["rag"]["backend"] == "local" and streamed.startswith(final["rag"]["answer"])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="rag/nope", messages=[{"role": "user", "content": Q}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served.url("/v1"), api_key="wrong", max_retries=0).models.list()


def test_several_indexes_per_server(served: Served) -> None:
    status, res = served.request("/search", {"query": "quantisation", "k": 5, "index": "guides"}, token=TOKEN)
    assert status == 200 and res["hits"] and all("/guides/" in h["path"] for h in res["hits"])
    status, res = served.request("/search?q=glossary&k=10", token=TOKEN)
    assert status == 200 and any("/guides/" not in h["path"] for h in res["hits"])
    status, health = served.request("/healthz?index=guides", token=None)
    assert status == 200 and health["index"] == "guides" and health["chunks"] < served.request("/healthz")[1]["chunks"]
    assert set(served.request("/healthz")[1]["indexes"]) == {"default", "guides"}
    assert served.request("/healthz?index=nope")[0] == 404
    assert _metric(served, "rag_index_chunks", index="guides") == health["chunks"]
    assert _metric(served, "rag_http_requests_total", route="/search", index="guides") >= 1


async def _mcp_calls(client: Any) -> dict[str, Any]:
    tools = await client.list_tools()
    found = await client.call_tool("search", {"query": "what is GGUF", "k": 3, "path": "*.txt"})
    answered = await client.call_tool("ask", {"question": Q, "llm": "none"})
    first = found.structured_content["hits"][0]
    got = await client.call_tool(
        "get", {"path": first["path"], "start_line": first["start_line"], "end_line": first["end_line"]}
    )
    by_id = await client.call_tool("get", {"chunk_id": first["chunk_id"]})
    missing = await client.call_tool("get", {"path": "/nowhere.md"})
    listed = await client.call_tool("indexes", {})
    resources = (await client.list_resources()).resources
    templates = (await client.list_resource_templates()).resource_templates
    doc = next(r for r in resources if str(r.uri).endswith(".txt"))
    read = await client.read_resource(str(doc.uri))
    try:
        await client.read_resource("rag://default/nowhere/else.md")
        unread = None
    except Exception as exc:  # the SDK raises the server's error (not in the index)
        unread = str(exc)
    return {
        "resources": resources,
        "templates": [t.uri_template for t in templates],
        "doc": doc,
        "read": read,
        "unread": unread,
        "tools": sorted(t.name for t in tools.tools),
        "search": found.structured_content,
        "ask": answered.structured_content,
        "get": got.structured_content,
        "by_id": by_id.structured_content,
        "missing": missing,
        "indexes": listed.structured_content,
    }


def _check_mcp(out: dict[str, Any], indexes: set[str]) -> None:
    assert out["tools"] == ["ask", "get", "indexes", "search"]
    hits = out["search"]["hits"]
    assert hits and all(h["path"].endswith(".txt") for h in hits)
    assert "4.5" in out["ask"]["answer"] and out["ask"]["citations"] and out["ask"]["verified"] is True
    assert out["get"]["chunks"] and any(c["text"] == hits[0]["text"] for c in out["get"]["chunks"])
    assert out["by_id"]["chunks"][0]["text"] == hits[0]["text"]
    assert out["missing"].is_error and "not in the index" in out["missing"].content[0].text
    assert {i["name"] for i in out["indexes"]["indexes"]} == indexes
    assert all(i["fingerprint"]["embedder"]["dim"] == 384 for i in out["indexes"]["indexes"])
    # every indexed document is a resource rag://INDEX/PATH, read as the index holds it
    assert out["templates"] == ["rag://{index}/{+path}"]
    assert {str(r.uri).split("/")[2] for r in out["resources"]} == indexes
    total = sum(i["files"] for i in out["indexes"]["indexes"])
    assert len(out["resources"]) == total
    path = "/" + str(out["doc"].uri).split("/", 3)[3]
    assert Path(path).is_file() and out["doc"].mime_type == "text/plain"
    text = out["read"].contents[0].text
    words = Path(path).read_text().split()
    assert text and words[0] in text and words[-1] in text
    assert out["unread"] is not None and "not in the index" in out["unread"]


def test_an_mcp_client_that_leaves_stops_generation(served: Served) -> None:
    """Issue 29, item 7: a `tools/call ask` abandoned mid-answer used to keep its generation slot to the end
    (the SDK runs the tool in a task of its own, and the bridge told it of the disconnect only afterwards)."""
    import aiohttp

    log: Path = served.tokens_log  # type: ignore[attr-defined]
    before = _metric(served, "rag_answers_total", route="mcp", outcome="cancelled")
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "ask", "arguments": {"question": Q, "llm": "slow"}},
    }
    headers = {**AUTH, "Accept": "application/json, text/event-stream"}
    start = _count_lines(log)

    async def go() -> None:
        async with aiohttp.ClientSession(headers=headers) as http:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.5):  # the answer takes 200 x 0.05 s: hang up well before
                    resp = await http.post(served.url("/mcp"), json=call)
                    await resp.read()

    run(go())
    _stops_generating(served, "mcp", before, start)


def test_mcp_over_streamable_http(served: Served) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def go() -> dict[str, Any]:
        http = create_mcp_http_client(headers=AUTH)
        async with http, Client(streamable_http_client(served.url("/mcp"), http_client=http)) as client:
            return await _mcp_calls(client)

    _check_mcp(run(go()), {"default", "guides"})
    assert served.request("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, token=None)[0] == 401


def test_mcp_over_stdio(two_homes: Path) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    env = {**os.environ, "RAG_HOME": str(two_homes), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "rag_cli", "mcp"], env=env)

    async def go() -> dict[str, Any]:
        async with Client(params) as client:
            return await _mcp_calls(client)

    _check_mcp(run(go()), {"default"})


def test_sigterm_ends_answer_streams_cleanly(two_homes: Path, tmp_path: Path) -> None:
    import aiohttp

    s = start_serve(two_homes, tmp_path, env=SERVE_ENV)

    async def go() -> list[tuple[str, Any]]:
        events = []
        async with (
            aiohttp.ClientSession(headers={"Accept": "text/event-stream"}) as http,
            http.post(s.url("/ask"), json={"question": Q, "llm": "slow"}) as resp,
        ):
            async for name, data in sse_events(resp):
                events.append((name, data))
                if name == "token" and sum(n == "token" for n, _ in events) == 1:  # mid-answer: the first sentence
                    s.proc.send_signal(signal.SIGTERM)
        return events

    try:
        events = run(go())
        assert s.proc.wait(timeout=30) == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    assert events[-1][0] == "error" and "shutting down" in events[-1][1]["message"]
    assert "Traceback" not in s.log.read_text()


def test_rag_ask_sends_the_whole_question_to_a_warm_server(served: Served, two_homes: Path) -> None:
    """Issue 31: with a `rag serve` registered for the index and the same reader settings, `rag ask` streams
    the server's answer (its model loaded, no model in the CLI process): the same JSON and JSON Lines
    contract as in-process, the same answer at temperature 0; other reader settings answer in-process."""
    env = {
        "RAG_HOME": str(two_homes),
        "RAG_SERVE_TOKEN": TOKEN,
        "RAG_LLM_TEMPERATURE": "0",
        "RAG_PLUGINS": "tests.plugins.slow_llm",
        "RAG_SERVE_ASK_QUEUE": "1",
    }
    before = _metric(served, "rag_answers_total", route="/ask", outcome="ok")
    warm = run_cli("ask", Q, "--json", "--server", served.url(""), env=env)
    assert warm.returncode == 0, warm.stderr
    assert _metric(served, "rag_answers_total", route="/ask", outcome="ok") == before + 1
    cold = run_cli("ask", Q, "--json", "--server", "off", env=env)
    assert cold.returncode == 0, cold.stderr
    w, c = json.loads(warm.stdout), json.loads(cold.stdout)
    assert set(w) == set(c) and w["backend"] == c["backend"] == "local"
    for key in ("answer", "citations", "verified", "question", "query", "sentences", "dropped"):
        assert w[key] == c[key], key
    assert [s["location"] for s in w["sources"]] == [s["location"] for s in c["sources"]]

    lines = run_cli("ask", Q, "--jsonl", "--server", served.url(""), env={**env, **IMPORTTIME}, process=True)
    assert lines.returncode == 0, lines.stderr
    # the client loads no model, and reads the answer with the stdlib's HTTP client: aiohttp alone would cost
    # ~0.1 s of its first words (bench/warm_ask.py)
    assert {"llama_cpp", "onnxruntime", "numpy", "faiss", "aiohttp"}.isdisjoint(imported_modules(lines.stderr))
    events = [json.loads(line) for line in lines.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and "token" in kinds and "draft" in kinds
    assert _metric(served, "rag_answers_total", route="/ask", outcome="ok") == before + 2

    # another reader setting than the server's: the CLI answers itself (and says nothing: it was not asked to)
    other = run_cli("ask", Q, "--json", "--llm", "none", "--server", served.url(""), env=env)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["backend"] == "none"
    assert _metric(served, "rag_answers_total", route="/ask", outcome="ok") == before + 2
    # a declined question keeps its exit code and JSON object through the server
    off = run_cli("ask", "What is the population of Tokyo?", "--json", "--server", served.url(""), env=env)
    assert off.returncode == 7 and json.loads(off.stdout)["exit_code"] == 7, off.stderr
    # rag chat sends each turn, the follow-up with the query it condensed (searched and judged as such)
    chat = run_cli(
        "chat",
        "--server",
        served.url(""),
        env=env,
        input="How many bits per weight does Q4_K_M use?\nand what about the file size?\n",
    )
    assert chat.returncode == 0 and "rag: no relevant" not in chat.stderr, chat.stderr
    assert chat.stdout.count("Sources:") == 2, chat.stdout
    assert _metric(served, "rag_answers_total", route="/ask", outcome="ok") == before + 4
