"""The fan-out against real aiohttp servers on 127.0.0.1: concurrency, deadlines, retries, breakers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag_cli import runtime
from rag_cli.config import load_settings
from rag_cli.errors import AllSourcesFailed
from rag_cli.retrieve.fanout import SearchResult
from rag_cli.retrieve.service import Retrieval
from tests.conftest import run_cli, write
from tests.fakeserver import FakeSearchServer

FIELDS = {"text": "snippet", "title": "title", "url": "link", "score": "score"}


@pytest.fixture
def server() -> Iterator[FakeSearchServer]:
    with FakeSearchServer() as s:
        yield s


def src(server: FakeSearchServer, name: str, path: str, **kw: Any) -> dict[str, Any]:
    sep = "&" if "?" in path else "?"
    return {
        "name": name,
        "type": "http",
        "url": server.url(f"{path}{sep}q={{query}}&n={{k}}"),
        "results": "data.results",
        "fields": FIELDS,
        **kw,
    }


def search(sources: list[dict[str, Any]], query: str = "rag", *, repeat: int = 1, **settings: Any) -> list[Any]:
    s = load_settings(**settings)
    s.sources = sources

    async def go() -> list[Any]:
        out: list[Any] = []
        async with Retrieval(s, use_index=False) as r:
            for _ in range(repeat):
                t0 = time.perf_counter()
                try:
                    res: Any = await r.search(query, k=5)
                except AllSourcesFailed as exc:
                    res = exc
                out.append((res, time.perf_counter() - t0))
            out.append(r.fanout)
        return out

    return runtime.run(go())


def test_sources_run_concurrently(server: FakeSearchServer, rag_home: Path) -> None:
    sources = [src(server, f"s{i}", f"/slow?delay=0.3&tag=s{i}") for i in range(3)]
    (res, elapsed), _ = search(sources)
    assert isinstance(res, SearchResult) and not res.degraded
    assert {h.source for h in res.hits} == {"s0", "s1", "s2"}
    assert elapsed < 0.6 * (3 * 0.3), f"took {elapsed:.2f}s; sequential would be 0.9s"


def test_hanging_source_cut_at_deadline(server: FakeSearchServer, rag_home: Path) -> None:
    sources = [src(server, "hang", "/hang", timeout=0.5), src(server, "ok", "/ok")]
    (res, elapsed), _ = search(sources)
    assert [d.to_dict() for d in res.degraded] == [{"source": "hang", "reason": "timed out after 0.5s"}]
    assert res.hits and all(h.source == "ok" for h in res.hits)
    assert elapsed < 2.0


def test_500_retried_then_reported(server: FakeSearchServer, rag_home: Path) -> None:
    (res, _), _ = search([src(server, "bad", "/fail", retries=2), src(server, "ok", "/ok")])
    assert server.calls["fail"] == 3
    assert (
        res.degraded[0].source == "bad"
        and "HTTP 500" in res.degraded[0].reason
        and "3 attempts" in res.degraded[0].reason
    )


def test_transient_failure_recovers_by_retry(server: FakeSearchServer, rag_home: Path) -> None:
    (res, _), _ = search([src(server, "flaky", "/flaky?fails=2", retries=3)])
    assert not res.degraded and res.hits[0].source == "flaky"
    assert server.calls["flaky"] == 3


def test_429_retry_after_honoured(server: FakeSearchServer, rag_home: Path) -> None:
    (res, elapsed), _ = search([src(server, "rl", "/ratelimit?after=0.4", retries=1, timeout=3)])
    assert not res.degraded and server.calls["ratelimit"] == 2
    assert elapsed >= 0.4
    server.calls.clear()
    (res, elapsed), _ = search(
        [src(server, "rl", "/ratelimit?after=30", retries=1, timeout=1), src(server, "ok", "/ok")]
    )
    assert "would pass the deadline" in res.degraded[0].reason and elapsed < 1.5


def test_breaker_opens_and_skips(server: FakeSearchServer, rag_home: Path) -> None:
    sources = [src(server, "bad", "/fail", retries=0), src(server, "ok", "/ok")]
    results = search(sources, repeat=5, retrieve_breaker_failures=3, retrieve_breaker_cooldown=60)
    fanout = results[-1]
    reasons = [r.degraded[0].reason for r, _ in results[:-1]]
    assert server.calls["fail"] == 3  # calls 4 and 5 never reached the server
    assert all("HTTP 500" in r for r in reasons[:3])
    assert all("circuit open" in r for r in reasons[3:])
    assert fanout.breakers["bad"].state == "open"


@pytest.mark.parametrize(
    "path,reason",
    [
        ("/badjson", "not valid JSON"),
        ("/wrongshape", "is not a list"),
        ("/huge?mb=100", "byte cap"),
        ("/reset", "connection failed"),
    ],
)
def test_malformed_responses_degrade(server: FakeSearchServer, rag_home: Path, path: str, reason: str) -> None:
    (res, elapsed), _ = search([src(server, "x", path, retries=0, max_body_mb=1), src(server, "ok", "/ok")])
    assert res.degraded[0].source == "x" and reason in res.degraded[0].reason
    assert res.hits
    assert elapsed < 2.0


def test_drip_feed_cut_by_deadline(server: FakeSearchServer, rag_home: Path) -> None:
    (res, elapsed), _ = search([src(server, "drip", "/drip", timeout=1.0), src(server, "ok", "/ok")])
    assert "timed out" in res.degraded[0].reason and elapsed < 2.0


def test_all_failed_raises(server: FakeSearchServer, rag_home: Path) -> None:
    (exc, _), _ = search([src(server, "a", "/fail", retries=0), src(server, "b", "/badjson")])
    assert isinstance(exc, AllSourcesFailed)
    assert "a: HTTP 500" in str(exc) and "b: response is not valid JSON" in str(exc)


def test_post_body_template_for_elasticsearch(server: FakeSearchServer, rag_home: Path) -> None:
    es = {
        "name": "es",
        "type": "http",
        "method": "POST",
        "url": server.url("/es/_search"),
        "body": {"query": {"match": {"body": "{query}"}}, "size": "{k}"},
        "results": "hits.hits",
        "fields": {"text": "_source.body", "score": "_score"},
    }
    (res, _), _ = search([es], query="wing lift")
    assert res.hits[0].text == "es hit for wing lift" and res.hits[0].score == 2.0


def test_header_env_refs_sent_and_never_logged(server: FakeSearchServer, rag_home: Path, tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "rag.toml",
        f"""
[[sources]]
name = "wiki"
type = "http"
url = "{server.url("/auth")}?q={{query}}"
results = "data.results"
fields = {{ text = "snippet", title = "title", url = "link" }}
headers = {{ Authorization = "Bearer ${{WIKI_TOKEN}}" }}

[[sources]]
name = "broken"
type = "http"
url = "{server.url("/fail")}?q={{query}}"
headers = {{ X-Key = "${{WIKI_TOKEN}}" }}
retries = 0
""",
    )
    env = {"RAG_HOME": str(rag_home), "WIKI_TOKEN": "s3cret-token", "RAG_EMBED_BACKEND": "hash"}
    docs = write(tmp_path / "d/a.md", "# A\n\nlocal text\n").parent
    assert run_cli("index", str(docs), env=env).returncode == 0
    out = run_cli("search", "wing", "--json", "--config", str(cfg), env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert any(h["source"] == "wiki" for h in data["hits"])
    assert data["degraded"] == [{"source": "broken", "reason": "HTTP 500"}]
    assert "source broken degraded: HTTP 500" in out.stderr
    assert "s3cret" not in out.stdout + out.stderr
    wrong = run_cli("search", "wing", "--json", "--config", str(cfg), env={**env, "WIKI_TOKEN": "nope"})
    assert wrong.returncode == 0
    assert {"source": "wiki", "reason": "HTTP 401"} in json.loads(wrong.stdout)["degraded"]
    env_no = {k: v for k, v in env.items() if k != "WIKI_TOKEN"}
    gone = run_cli("search", "wing", "--json", "--config", str(cfg), env=env_no)
    reasons = {d["source"]: d["reason"] for d in json.loads(gone.stdout)["degraded"]}
    assert reasons["wiki"] == "environment variable WIKI_TOKEN is not set"


def test_loop_not_blocked_by_embedding_and_faiss(server: FakeSearchServer, rag_home: Path) -> None:
    """While the real model embeds and FAISS searches on the pool, a loopback request is still served promptly."""
    from rag_cli.embed.base import create
    from rag_cli.store.local.faiss_index import empty_index

    settings = load_settings()
    emb = create(settings)
    emb.model()  # load first: loading is start-up, measured elsewhere
    # seconds of embedding on 2 cores; the test needs only over a second of it, on any machine
    texts = [f"sentence number {i} about retrieval and thread pools" * 3 for i in range(200)]
    import numpy as np

    index = empty_index(emb.dim)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((200_000, emb.dim)).astype("float32")
    index.add_with_ids(vecs, np.arange(len(vecs), dtype="int64"))

    async def main() -> tuple[float, float, float]:
        import aiohttp

        runtime.loop_lag.reset()
        t0 = time.perf_counter()
        work = asyncio.gather(
            runtime.run_blocking(emb.embed, texts),
            runtime.run_blocking(index.search, vecs[:64], 10),
        )
        await asyncio.sleep(0.05)
        latencies = []
        async with aiohttp.ClientSession() as s:
            while not work.done():
                t1 = time.perf_counter()
                async with s.get(server.url("/ok?q=x")) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t1)
                await asyncio.sleep(0.05)
        await work
        return time.perf_counter() - t0, max(latencies), runtime.loop_lag.max_ms

    busy, worst, lag_ms = runtime.run(main(), workers=2)
    assert busy > 1.0, "the blocking work should take a while for this test to mean anything"
    assert worst < busy / 4, f"a loopback request took {worst:.2f}s while the pool was busy for {busy:.2f}s"
    assert lag_ms < busy * 1000 / 4
