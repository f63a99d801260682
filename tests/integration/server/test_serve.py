"""`rag serve` in a subprocess on 127.0.0.1: API, auth, limits, metrics, use as a remote source, SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IMPORTTIME, imported_modules, run_cli, write
from tests.serving import TOKEN, Served, start_serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sample_home: Path) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    home = sample_home
    s = start_serve(home, tmp, "--token", TOKEN, "--access-log", env={"RAG_SERVE_MAX_BODY_KB": "4"})
    yield s
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(30) == 0
    assert "shutting down" in s.log.read_text()
    assert not (home / "run" / f"serve-default-{s.proc.pid}.json").exists()  # unregistered on the way out


def test_search_get_and_post_match_cli_contract(served: Served) -> None:
    status, data = served.request("/search?q=reciprocal+rank+fusion&k=3")
    assert status == 200 and len(data["hits"]) == 3 and data["degraded"] == []
    assert data["hits"][0]["path"].endswith("hybrid-search.md")
    assert {"rank", "score", "path", "title", "text", "chunk_id", "source"} <= set(data["hits"][0])
    status, post = served.request("/search", {"query": "reciprocal rank fusion", "k": 3, "mode": "bm25"})
    assert status == 200 and post["mode"] == "bm25" and len(post["hits"]) == 3
    # hybrid: both scores and their standardised values for every hit (what a federating rag fuses)
    status, hyb = served.request("/search", {"query": "reciprocal rank fusion", "k": 8, "candidates": 4})
    assert status == 200 and 4 <= len(hyb["hits"]) <= 8  # the union of 4 candidates a method
    for h in hyb["hits"]:
        assert set(h["source_scores"]) == {"dense", "bm25"} and set(h["standard_scores"]) == {"dense", "bm25"}
    # without pseudo-relevance feedback (what a federating peer asks for), GET and POST alike
    status, plain = served.request("/search?q=reciprocal+rank+fusion&k=3&mode=bm25&feedback=false")
    assert status == 200 and len(plain["hits"]) == 3
    status, posted = served.request(
        "/search", {"query": "reciprocal rank fusion", "k": 3, "mode": "bm25", "feedback": False}
    )
    assert status == 200 and [h["chunk_id"] for h in posted["hits"]] == [h["chunk_id"] for h in plain["hits"]]
    # results in document order (each file's best passage first), or the fused passage order an answer takes
    status, docs = served.request("/search", {"query": "reciprocal rank fusion", "k": 8})
    status2, passages = served.request("/search?q=reciprocal+rank+fusion&k=8&documents=false")
    assert status == status2 == 200 and len(docs["hits"]) == len(passages["hits"]) == 8
    assert [h["path"] for h in docs["hits"]] != [h["path"] for h in passages["hits"]]
    paths = [h["path"] for h in docs["hits"]]
    firsts = list(dict.fromkeys(paths))
    assert paths[: len(firsts)] == firsts  # every file's first passage before any file's second
    assert [h["score"] for h in docs["hits"]] == sorted((h["score"] for h in docs["hits"]), reverse=True)
    assert served.request("/search", {"query": "x", "documents": "maybe"})[0] == 400


def test_search_by_a_federating_index_s_vector(served: Served) -> None:
    """Issue 30: a federating index sends the vector its dense search used (`vector`, `vector_model`); the
    served index searches with it as it is when it is of its own model, else embeds the query itself without
    feedback. Here the vector is another question's embedding (from /embed): the results must be that
    question's plain dense results, and with a vector of another model, the query's own."""
    query, other = "how are chunks embedded", "which license does the project use"

    def dense(q: str, **extra: Any) -> list[int]:
        status, data = served.request("/search", {"query": q, "k": 3, "mode": "dense", **extra})
        assert status == 200 and len(data["hits"]) == 3, data
        return [h["chunk_id"] for h in data["hits"]]

    plain, plain_other = dense(query, feedback=False), dense(other, feedback=False)
    assert plain != plain_other
    status, emb = served.request("/embed", {"texts": [other]})
    assert status == 200
    vec = [round(v, 4) for v in emb["vectors"][0]]  # within the fixture's 4 KB body limit
    model = f"sentence-transformers/all-MiniLM-L6-v2/{len(vec)}"
    assert dense(query, vector=vec, vector_model=model) == plain_other  # searched by the vector, unmoved
    assert dense(query, vector=vec, vector_model=f"other/{len(vec)}") == plain  # not its model: its own
    # its first passages' stored vectors (its votes in a federated search's shared feedback)
    status, voted = served.request(
        "/search", {"query": query, "k": 2, "mode": "dense", "feedback": False, "vectors": True}
    )
    assert status == 200 and [len(h["vector"]) for h in voted["hits"]] == [len(vec)] * 2
    status, own = served.request("/embed", {"texts": [query]})
    top = voted["hits"][0]
    cos = sum(a * b for a, b in zip(top["vector"], own["vectors"][0], strict=True))
    assert status == 200 and cos == pytest.approx(top["score"], abs=0.02)  # the vector its cosine was of
    # the BM25 feedback words it shares: added to the query at their weight
    status, words = served.request(
        "/search",
        {
            "query": query,
            "k": 3,
            "mode": "bm25",
            "feedback": False,
            "expansion": ["quantisation", "gguf"],
            "expansion_weight": 5,
        },
    )
    assert status == 200 and "quantis" in words["hits"][0]["text"].lower()
    assert (
        "quantis"
        not in served.request("/search", {"query": query, "k": 1, "mode": "bm25", "feedback": False})[1]["hits"][0][
            "text"
        ].lower()
    )
    assert served.request("/search", {"query": "x", "expansion": "license"})[0] == 400
    assert served.request("/search", {"query": "x", "expansion": ["a"], "expansion_weight": -1})[0] == 400
    assert served.request("/search", {"query": "x", "vector": ["a"], "vector_model": model})[0] == 400
    assert served.request("/search", {"query": "x", "vector": [0.1, 0.2]})[0] == 400  # which model made it?
    # its word counts (its share of a federated search's collection statistics), and BM25 by a given collection
    status, counted = served.request(
        "/search", {"query": "quantisation bits", "k": 2, "mode": "bm25", "feedback": False, "counts": True}
    )
    rows, held = counted["collection"]["rows"], counted["collection"]["words"]
    assert status == 200 and rows > 10 and set(held) == {"quantisation", "bits"} and 0 < held["bits"] < rows
    bigger = {"rows": rows * 10, "words": {"quantisation": held["quantisation"], "bits": held["bits"] * 10}}
    status, scaled = served.request(
        "/search", {"query": "quantisation bits", "k": 2, "mode": "bm25", "feedback": False, "collection": bigger}
    )
    assert status == 200 and [h["score"] for h in scaled["hits"]] != [h["score"] for h in counted["hits"]]
    assert "collection" not in scaled
    assert served.request("/search", {"query": "x", "collection": {"rows": 3, "words": {"x": -1}}})[0] == 400
    assert served.request("/search", {"query": "x", "collection": [3]})[0] == 400


def test_search_filters_over_http_and_the_warm_path(served: Served, sample_home: Path) -> None:
    """Issue 19: path, type and since narrow /search (GET and POST) inside the retrieval; a CLI search with
    --path through the running server gets the same hits as in-process."""
    status, data = served.request("/search?q=quantisation+bits&k=5&type=md")
    assert status == 200 and data["hits"] and all(h["path"].endswith(".md") for h in data["hits"])
    status, data = served.request("/search?q=quantisation+bits&k=5&path=guides/*&path=!*.pdf")
    assert status == 200 and data["hits"]
    assert all("/guides/" in h["path"] and not h["path"].endswith(".pdf") for h in data["hits"])
    status, data = served.request("/search", {"query": "quantisation", "k": 5, "path": ["*.txt"], "since": "3650d"})
    assert status == 200 and data["hits"] and all(h["path"].endswith(".txt") for h in data["hits"])
    status, data = served.request("/search", {"query": "quantisation", "since": "2999-01-01"})
    assert status == 200 and data["hits"] == []
    status, data = served.request("/search", {"query": "quantisation", "since": "someday"})
    assert status == 400 and "since" in data["error"]
    env = {"RAG_HOME": str(sample_home), "RAG_SERVE_TOKEN": TOKEN}
    args = ("search", "quantisation bits", "--json", "-k", "4", "--path", "!*.pdf")
    warm = run_cli(*args, "--server", served.url(""), env=env)
    cold = run_cli(*args, "--server", "off", env=env)
    assert warm.returncode == 0 and cold.returncode == 0, warm.stderr + cold.stderr
    ids = [h["chunk_id"] for h in json.loads(warm.stdout)["hits"]]
    assert ids and ids == [h["chunk_id"] for h in json.loads(cold.stdout)["hits"]]


def test_auth(served: Served) -> None:
    assert served.request("/search?q=x", token=None)[0] == 401
    assert served.request("/search?q=x", token="wrong")[0] == 401
    assert served.request("/metrics", token=None)[0] == 401
    status, health = served.request("/healthz", token=None)
    assert status == 200 and health["status"] == "ok" and health["chunks"] > 0
    assert health["bm25"] in ("fts5", "memory")


def wait_bm25_memory(served: Served) -> None:
    """serve starts loading the BM25 postings into memory at start, in the background (store/local/bm25_memory.py)."""
    deadline = time.monotonic() + 30
    while served.request("/healthz")[1]["bm25"] != "memory":
        assert time.monotonic() < deadline, "BM25 postings were not loaded"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "path,body,raw,status",
    [
        ("/search", {"query": "x", "k": 0}, None, 400),
        ("/search", {"query": "x", "k": 1000}, None, 400),
        ("/search", {"query": "x" * 2500}, None, 400),
        ("/search", {"query": ""}, None, 400),
        ("/search", {"query": "x", "mode": "weird"}, None, 400),
        ("/search", {"query": "x", "candidates": 0}, None, 400),
        ("/search", {"query": "x", "candidates": "many"}, None, 400),
        ("/search", {"query": "x", "feedback": "maybe"}, None, 400),
        ("/search", {"query": "x", "feedback": []}, None, 400),  # not a flag (it was a 500)
        ("/search", None, b"{nope", 400),
        ("/further", {"query": "x", "documents": 3, "hits": "many"}, None, 400),
        ("/further", {"query": "x", "documents": 99, "hits": []}, None, 400),
        ("/further", {"query": "x", "documents": True, "hits": []}, None, 400),
        ("/further", {"query": "", "documents": 3, "hits": []}, None, 400),
        ("/search", None, b'{"query": "' + b"x" * 10_000 + b'"}', 413),
        ("/nowhere", None, None, 404),
    ],
)
def test_limits(served: Served, path: str, body: Any, raw: bytes | None, status: int) -> None:
    assert served.request(path, body, raw=raw)[0] == status


def test_metrics_parse(served: Served) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    served.request("/search?q=faiss")
    wait_bm25_memory(served)
    status, text = served.request("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "rag_http_requests",
        "rag_http_request_seconds",
        "rag_source_seconds",
        "rag_source_failures",
        "rag_source_breaker_state",
        "rag_event_loop_lag_seconds",
        "rag_pool_jobs",
    ):
        assert name in families, name
    routes = {s.labels.get("route") for s in families["rag_http_requests"].samples}
    assert "/search" in routes
    sources = {s.labels.get("source") for s in families["rag_source_seconds"].samples}
    assert {"dense", "bm25"} <= sources
    states = {s.labels["state"] for s in families["rag_pool_jobs"].samples}
    assert states == {"active", "queued"}
    assert families["rag_bm25_memory_bytes"].samples[0].value > 0


def test_rag_get_reads_a_remote_sources_hit(served: Served, tmp_path: Path) -> None:
    """Issue 19: `rag get` of a path a remote `rag` source's hit carries asks that server (GET /get)."""
    status, found = served.request("/search?q=faiss+remove+vectors&k=1")
    path = found["hits"][0]["path"]
    status, got = served.request("/get?path=" + urllib.parse.quote(path))
    assert status == 200 and got["path"] == path and got["chunks"]
    assert served.request("/get?path=/nowhere.md")[0] == 404
    assert served.request("/get?path=/x.md&start_line=abc")[0] == 400
    assert served.request("/get?path=" + urllib.parse.quote(path), token=None)[0] == 401
    home = tmp_path / "home3"  # no local index at all, only the team's server
    env = {"RAG_HOME": str(home), "RAG_EMBED_BACKEND": "hash", "TEAM_TOKEN": TOKEN}
    cfg = write(
        tmp_path / "rag.toml",
        f'[[sources]]\nname = "team"\ntype = "rag"\nurl = "{served.url("")}"\n'
        'token = "${TEAM_TOKEN}"\ntimeout = 10\n',
    )
    out = run_cli("get", path, "--config", str(cfg), env=env)
    assert out.returncode == 0, out.stderr
    assert found["hits"][0]["text"][:40] in out.stdout
    data = json.loads(run_cli("get", path, "--json", "--config", str(cfg), env=env).stdout)
    assert data["path"] == path and all(c["source"] == "team" for c in data["chunks"])
    missing = run_cli("get", "/nowhere/else.md", "--config", str(cfg), env=env)
    assert missing.returncode == 2 and "or its rag sources" in missing.stderr


def test_serve_as_remote_rag_source(served: Served, tmp_path: Path) -> None:
    """Another process uses the server as a `type = "rag"` source next to its own (empty-ish) index."""
    home = tmp_path / "home2"
    docs = write(tmp_path / "d/notes.md", "# Notes\n\nUnrelated local notes about gardening.\n").parent
    env = {"RAG_HOME": str(home), "RAG_EMBED_BACKEND": "hash", "TEAM_TOKEN": TOKEN}
    assert run_cli("index", str(docs), env=env).returncode == 0
    cfg = write(
        tmp_path / "rag.toml",
        f'[[sources]]\nname = "team"\ntype = "rag"\nurl = "{served.url("")}"\ntoken = "${{TEAM_TOKEN}}"\ntimeout = 10\n',
    )
    out = run_cli("search", "which FAISS index cannot remove vectors", "--json", "--config", str(cfg), env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["degraded"] == []
    team = [h for h in data["hits"] if "team" in h["sources"]]
    assert team and any(h["path"].endswith("faiss.rst") for h in team)
    assert all(h["chunk_id"] is not None for h in team)


def test_sigterm_graceful(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docs = write(tmp_path / "d/a.md", "# A\n\napples\n").parent
    env = {"RAG_EMBED_BACKEND": "hash"}
    assert run_cli("index", str(docs), env={"RAG_HOME": str(home), **env}).returncode == 0
    s = start_serve(home, tmp_path, env=env)
    assert s.request("/search?q=apples", token=None)[0] == 200
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(20) == 0
    assert "Traceback" not in s.log.read_text()


def test_load_2000_requests_50_clients(served: Served) -> None:
    """Issue 8: bounded load on loopback: every request answered 200, memory and threads bounded. 208 distinct
    queries, each asked about ten times by 2,000 requests, bring every cache to its steady state (throughput is
    bench/serve_load.py's: three rounds of 2,000 requests)."""
    import asyncio

    from bench.loadgen import rss_mib, run_load, threads

    queries = [f"{w} retrieval" for w in ("fusion", "faiss", "bm25", "chunking", "gguf", "llama", "pdf", "sqlite")]
    queries += [f"question number {i} about embeddings" for i in range(200)]  # mostly distinct: no cache help
    base = f"http://127.0.0.1:{served.port}"
    asyncio.run(run_load(base, queries, total=200, concurrency=10, token=TOKEN))
    rss0, th0 = rss_mib(served.proc.pid), threads(served.proc.pid)
    res = asyncio.run(run_load(base, queries, total=2000, concurrency=50, token=TOKEN, timeout=60))
    rss1, th1 = rss_mib(served.proc.pid), threads(served.proc.pid)
    print(
        f"\n2000 requests: {res.rps:.0f} rps, p50 {res.pct(50):.0f} ms, p99 {res.pct(99):.0f} ms, "
        f"RSS {rss0:.0f} -> {rss1:.0f} MiB, threads {th0} -> {th1}"
    )
    assert res.errors == {} and res.statuses == {200: 2000}
    assert th1 <= th0 + 2  # no thread per request
    assert rss1 < rss0 + 150  # bounded: caches are capped


def test_saturation_answers_503_at_once(sample_home: Path, tmp_path: Path) -> None:
    """With more concurrent searches than the in-flight limit, the excess gets 503 instead of a queue."""
    import asyncio

    from bench.loadgen import run_load

    s = start_serve(sample_home, tmp_path, env={"RAG_SERVE_MAX_INFLIGHT": "2"})
    try:
        base = f"http://127.0.0.1:{s.port}"
        queries = [f"saturation probe {i}" for i in range(500)]
        res = asyncio.run(run_load(base, queries, total=600, concurrency=100, timeout=60))
        assert res.errors == {}
        assert set(res.statuses) <= {200, 503} and res.statuses[503] > 0 and res.statuses[200] > 0
        busy = s.request("/metrics", token=None)[1]
        assert 'status="503"' in busy
        assert s.request("/search?q=fusion", token=None)[0] == 200  # it recovers at once
    finally:
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(30)


def test_warm_path_uses_the_running_server(served: Served, sample_home: Path) -> None:
    """`rag search`/`ask` find the server registered for the index (or take --server URL) and load no model."""
    env = {"RAG_HOME": str(sample_home), "RAG_SERVE_TOKEN": TOKEN}
    local = run_cli("search", "reciprocal rank fusion", "--json", "-k", "3", "--server", "off", env=env)
    for server in (["--server", served.url("")], []):  # explicit URL, then auto-discovery
        out = run_cli(
            "search",
            "reciprocal rank fusion",
            "--json",
            "-k",
            "3",
            *server,
            env={**env, **IMPORTTIME},
            timeout=60,
            process=True,
        )
        assert out.returncode == 0, out.stderr
        assert {"faiss", "onnxruntime", "torch", "sentence_transformers", "numpy"}.isdisjoint(
            imported_modules(out.stderr)
        )
        remote, mine = json.loads(out.stdout), json.loads(local.stdout)
        assert [h["chunk_id"] for h in remote["hits"]] == [h["chunk_id"] for h in mine["hits"]]
        assert remote["hits"][0]["sources"] == mine["hits"][0]["sources"]
    ans = run_cli("ask", "What does reciprocal rank fusion do?", "--llm", "none", "--json", env=env)
    assert ans.returncode == 0, ans.stderr
    assert json.loads(ans.stdout)["citations"]


def test_warm_path_falls_back_when_the_server_is_unreachable(sample_home: Path) -> None:
    out = run_cli(
        "search", "faiss", "--json", "-k", "2", "--server", "http://127.0.0.1:9", env={"RAG_HOME": str(sample_home)}
    )
    assert out.returncode == 0, out.stderr
    assert "not usable" in out.stderr and "in-process" in out.stderr
    assert json.loads(out.stdout)["hits"]


def test_warm_path_ignores_a_server_of_another_index(served: Served, sample_home: Path) -> None:
    out = run_cli("search", "faiss", "--index", "other", "--server", served.url(""), env={"RAG_HOME": str(sample_home)})
    assert "serves index 'default'" in out.stderr
    assert out.returncode == 3  # then in-process: that index does not exist


def _raw(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode(errors="replace")


def test_no_cors_and_no_files_outside_the_index(served: Served) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Origin": "https://evil.example"}
    status, headers, _ = _raw(served.url("/search?q=fusion"), headers=auth)
    assert status == 403 and "Access-Control-Allow-Origin" not in headers  # a page elsewhere gets nothing
    status, headers, _ = _raw(served.url("/search"), method="OPTIONS", headers=auth)
    assert status >= 400 and "Access-Control-Allow-Origin" not in headers
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/sample_corpus/glossary.txt", "/static/x"):
        status, _, body = _raw(served.url(path), headers=auth)
        assert status == 404 and "root:" not in body
    # a query naming a file outside the index finds only indexed passages
    _, data = served.request("/search?q=/etc/passwd+root&k=5")
    assert all("sample_corpus" in h["path"] for h in data["hits"])


def test_cors_only_for_configured_origins(sample_home: Path, tmp_path: Path) -> None:
    s = start_serve(sample_home, tmp_path, env={"RAG_SERVE_CORS_ORIGINS": "https://app.example"})
    try:
        status, headers, _ = _raw(s.url("/search?q=fusion"), headers={"Origin": "https://app.example"})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example"
        _, headers, _ = _raw(s.url("/search?q=fusion"), headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in headers
        status, headers, _ = _raw(s.url("/search"), method="OPTIONS", headers={"Origin": "https://app.example"})
        assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
    finally:
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(30)


def test_arguments_mean_the_same_with_and_without_a_running_server(served: Served, sample_home: Path) -> None:
    """Issue 32, item 7: `-k 500` worked with --server off and exited 1 through a running server (its max_k is
    100); `--mode fuzzy` exited 1 blaming the server instead of 2 before any work."""
    env = {"RAG_HOME": str(sample_home), "RAG_SERVE_TOKEN": TOKEN}
    for server in (["--server", "off"], ["--server", served.url("")], []):
        out = run_cli("search", "fusion", "-k", "500", "--json", *server, env=env)
        assert out.returncode == 0, (server, out.stderr)
        assert len(json.loads(out.stdout)["hits"]) > 10
        bad = run_cli("search", "fusion", "--mode", "fuzzy", *server, env=env)
        assert bad.returncode == 2 and "unknown mode 'fuzzy'" in bad.stderr, (server, bad.stderr)
        assert "server" not in bad.stderr


def test_warm_ask_scores_evidence_with_the_servers_model(served: Served, sample_home: Path) -> None:
    """Through a warm server `rag ask` gets sentence vectors from /embed (in batches under the server's 4 KB
    body limit here): the evidence score, and so the refusal gate, match the in-process path."""
    env = {"RAG_HOME": str(sample_home), "RAG_SERVE_TOKEN": TOKEN}
    q = "How many bits per weight does the Q4_K_M quantisation use on average?"
    warm = run_cli("ask", q, "--llm", "none", "--json", "--server", served.url(""), env=env)
    cold = run_cli("ask", q, "--llm", "none", "--json", "--server", "off", env=env)
    assert warm.returncode == 0 and cold.returncode == 0, warm.stderr + cold.stderr
    w, c = json.loads(warm.stdout)["provenance"], json.loads(cold.stdout)["provenance"]
    assert w["best_evidence"] == pytest.approx(c["best_evidence"], abs=1e-3)
    # the further passages of the first documents come from the server's index (/further), as in-process
    faiss = "Which FAISS index type does not support removing vectors?"  # its page holds more passages
    asked = served.log.read_text().count("path=/further status=200")
    warm = run_cli("ask", faiss, "--llm", "none", "--json", "--server", served.url(""), env=env)
    cold = run_cli("ask", faiss, "--llm", "none", "--json", "--server", "off", env=env)
    assert warm.returncode == 0 and cold.returncode == 0, warm.stderr + cold.stderr
    w, c = json.loads(warm.stdout), json.loads(cold.stdout)
    assert (w["answer"], w["citations"]) == (c["answer"], c["citations"])
    assert [x["location"] for x in w["sources"]] == [x["location"] for x in c["sources"]]
    assert served.log.read_text().count("path=/further status=200") == asked + 1
    gated = run_cli(
        "ask", q, "--llm", "none", "--server", served.url(""), env={**env, "RAG_ANSWER_MIN_EVIDENCE": "1.5"}
    )
    assert gated.returncode == 7 and "min_evidence 1.5" in gated.stderr
    status, data = served.request("/embed", {"texts": ["retrieval", "fusion of ranked lists"]})
    assert status == 200 and len(data["vectors"]) == 2 and len(data["vectors"][0]) == 384
    assert abs(sum(x * x for x in data["vectors"][0]) - 1.0) < 1e-3  # unit vectors
    assert served.request("/embed", {"texts": []})[0] == 400
    assert served.request("/embed", {"texts": ["x"]}, token=None)[0] == 401


def test_embed_shares_the_in_flight_limit(sample_home: Path, tmp_path: Path) -> None:
    """/embed takes one of `serve.max_inflight` slots like /search: past them, 503 at once (counted by route),
    and the in-flight gauge counts it while it runs and is back to 0 after."""
    from concurrent.futures import ThreadPoolExecutor

    s = start_serve(sample_home, tmp_path, env={"RAG_SERVE_MAX_INFLIGHT": "1", "RAG_SERVE_MAX_BODY_KB": "256"})
    texts = [
        f"sentence {i} about reciprocal rank fusion of ranked lists from dense and keyword search" * 3
        for i in range(64)
    ]
    gauge = re.compile(r"^rag_inflight_searches(?:\{[^}]*\})? (\d+)\.0$", re.M)
    try:
        with ThreadPoolExecutor(9) as pool:
            sent = [pool.submit(s.request, "/embed", {"texts": texts}, None) for _ in range(48)]
            seen = []  # the gauge while the embeddings run
            while not all(f.done() for f in sent) and len(seen) < 2000:
                if m := gauge.search(s.request("/metrics", token=None)[1]):
                    seen.append(int(m.group(1)))
            statuses = [f.result()[0] for f in sent]
        assert set(statuses) <= {200, 503} and statuses.count(200) > 0 and statuses.count(503) > 0, statuses
        assert max(seen) == 1, seen  # an /embed request holds the one slot, and the gauge shows it
        metrics = s.request("/metrics", token=None)[1]
        assert re.search(r'rag_rejections_total\{[^}]*route="/embed"[^}]*\} [1-9]', metrics), metrics
        assert re.search(r"^rag_inflight_searches(\{[^}]*\})? 0\.0$", metrics, re.M), metrics
    finally:
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(30)


def test_access_log_one_logfmt_line_a_request_without_the_query(served: Served) -> None:
    """--access-log: each request is one `rag.serve.access` line on stderr; the query string (a user's
    question) is not logged."""
    status, _ = served.request("/search?q=secret+question+words&k=1")
    assert status == 200
    status, _ = served.request("/search?q=x", token="wrong")
    assert status == 401
    lines = [ln for ln in served.log.read_text().splitlines() if "logger=rag.serve.access" in ln]
    ok = [ln for ln in lines if "path=/search status=200" in ln]
    assert ok and ok[-1].startswith("ts=") and " level=info " in ok[-1] and " method=GET " in ok[-1]
    assert " ms=" in ok[-1] and " remote=127.0.0.1" in ok[-1]
    assert any("path=/search status=401" in ln for ln in lines)
    assert not any("secret" in ln for ln in lines)


def test_further_passages_come_from_the_servers_index(served: Served) -> None:
    """`POST /further`: the best passages of the first documents of an answer's passages that it does not hold
    (what `rag ask` answering in-process against this server's search reads, as from its own index)."""
    q = "Which FAISS index type does not support removing vectors?"  # faiss.rst: 6 passages, 2 found
    status, found = served.request("/search", {"query": q, "k": 2, "documents": False})
    assert status == 200 and found["hits"]
    held = [{k: h[k] for k in ("chunk_id", "path", "doc_id", "score", "source")} for h in found["hits"]]
    status, data = served.request("/further", {"query": q, "documents": 1, "hits": held})
    assert status == 200 and data["hits"], data
    ids = {h["chunk_id"] for h in held}
    for h in data["hits"]:
        assert h["path"] == held[0]["path"] and h["chunk_id"] not in ids and h["source"] == "document"
        assert h["text"] and h["further_of"]
    assert served.request("/further", {"query": q, "documents": 0, "hits": held}) == (200, {"hits": []})
    assert served.request("/further", {"query": q, "documents": 1, "hits": held}, token=None)[0] == 401
