"""Issue 14, remote side: redirects that would carry secrets, secrets in reasons, `rag serve` with a
token, a port in use, malformed requests and a dropped index. Real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag_cli import runtime
from rag_cli.config import load_settings
from rag_cli.errors import AllSourcesFailed, ConfigError
from rag_cli.retrieve.service import Retrieval
from tests.conftest import run_cli, write
from tests.fakeserver import FakeSearchServer
from tests.serving import Served, start_serve

FIELDS = {"text": "snippet", "title": "title", "url": "link", "score": "score"}
HASH = {"RAG_EMBED_BACKEND": "hash"}


@pytest.fixture
def two_servers() -> Iterator[tuple[FakeSearchServer, FakeSearchServer]]:
    with FakeSearchServer() as a, FakeSearchServer() as b:
        yield a, b


def fan(sources: list[dict[str, Any]], query: str = "rag") -> Any:
    s = load_settings()
    s.sources = sources

    async def go() -> Any:
        async with Retrieval(s, use_index=False) as r:
            try:
                return await r.search(query, k=5)
            except AllSourcesFailed as exc:
                return exc

    return runtime.run(go())


def redirect_source(a: FakeSearchServer, target: str, **kw: Any) -> dict[str, Any]:
    url = a.url("/redirect") + "?to=" + urllib.parse.quote(target, safe="") + "{query}"
    return {
        "name": "kb",
        "type": "http",
        "url": url,
        "results": "data.results",
        "fields": FIELDS,
        "headers": {"X-Api-Key": "${RAG_T_KEY}"},
        "retries": 0,
        **kw,
    }


def test_cross_origin_redirect_not_followed_with_secrets(
    two_servers: Any, rag_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_servers
    monkeypatch.setenv("RAG_T_KEY", "k3y-s3cret")
    res = fan([redirect_source(a, b.url("/ok?q="))])
    assert isinstance(res, AllSourcesFailed)
    reason = res.degraded[0].reason  # type: ignore[attr-defined]
    assert "redirect to another origin" in reason and "k3y" not in reason
    assert b.calls["ok"] == 0  # the key never left for the other origin
    assert a.headers[-1].get("X-Api-Key") == "k3y-s3cret"
    # same origin: followed, the header kept
    res = fan([redirect_source(a, a.url("/ok?q="))])
    assert not isinstance(res, AllSourcesFailed) and res.hits and a.calls["ok"] == 1
    assert a.headers[-1].get("X-Api-Key") == "k3y-s3cret"
    # follow_redirects = "any": followed, without the configured headers
    res = fan([redirect_source(a, b.url("/ok?q="), follow_redirects="any")])
    assert not isinstance(res, AllSourcesFailed) and res.hits
    assert b.calls["ok"] == 1 and "X-Api-Key" not in b.headers[-1]
    res = fan([redirect_source(a, a.url("/ok?q="), follow_redirects="none")])
    assert isinstance(res, AllSourcesFailed)


def test_secrets_in_url_never_in_reasons(rag_home: Path, tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "rag.toml",
        """
[[sources]]
name = "kb"
type = "http"
url = "http://127.0.0.1:${RAG_T_PORT}/search?q={query}&key=${RAG_T_SECRET}"
retries = 0
""",
    )
    env = {"RAG_HOME": str(rag_home), **HASH, "RAG_T_PORT": "99999", "RAG_T_SECRET": "hunter2-s3cret"}
    docs = write(tmp_path / "d/a.md", "# A\n\nlocal text\n").parent
    assert run_cli("index", str(docs), env=env).returncode == 0
    out = run_cli("search", "local", "--json", "--config", str(cfg), env=env)
    assert out.returncode == 0, out.stderr
    degraded = json.loads(out.stdout)["degraded"]
    assert degraded and degraded[0]["source"] == "kb"
    assert "hunter2" not in out.stdout + out.stderr and "99999" not in out.stdout + out.stderr


def test_query_placeholder_not_allowed_in_host(rag_home: Path) -> None:
    with pytest.raises(ConfigError, match="path or query"):
        fan([{"name": "x", "type": "http", "url": "http://{query}.example/s"}])


@pytest.mark.parametrize(
    ("key", "value"), [("timeout", '"fast"'), ("weight", '"heavy"'), ("retries", "-1"), ("timeout", "nan")]
)
def test_bad_source_numbers_are_config_errors(rag_home: Path, tmp_path: Path, key: str, value: str) -> None:
    cfg = write(
        tmp_path / "rag.toml",
        f"""
[[sources]]
name = "kb"
type = "http"
url = "http://127.0.0.1:9/s?q={{query}}"
{key} = {value}
""",
    )
    env = {"RAG_HOME": str(rag_home), **HASH}
    docs = write(tmp_path / "d/a.md", "# A\n\nlocal text\n").parent
    assert run_cli("index", str(docs), env=env).returncode == 0
    out = run_cli("search", "local", "--config", str(cfg), env=env)
    assert out.returncode == 2, out.stderr
    assert f"source 'kb': {key}" in out.stderr and "Traceback" not in out.stderr


# -- rag serve -------------------------------------------------------------------------------------


@pytest.fixture
def hash_index(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    docs = write(tmp_path / "d" / "a.md", "# Alpha\n\nAardvarks eat ants at night.\n").parent
    write(docs / "b.md", "# Beta\n\nBadgers dig setts.\n")
    out = run_cli("index", str(docs), env={"RAG_HOME": str(home), **HASH})
    assert out.returncode == 0, out.stderr
    return home


def stop(s: Served) -> None:
    s.proc.send_signal(signal.SIGTERM)
    s.proc.wait(timeout=30)


def test_token_server_does_not_break_local_clients(hash_index: Path, tmp_path: Path) -> None:
    s = start_serve(hash_index, tmp_path, "--token", "tok-123", env=HASH)
    try:
        wait_registered(hash_index)
        env = {"RAG_HOME": str(hash_index), **HASH}
        out = run_cli("search", "aardvarks", "--json", env=env)  # no RAG_SERVE_TOKEN: the registration's
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["hits"]
        wrong = run_cli("search", "aardvarks", "--json", env={**env, "RAG_SERVE_TOKEN": "wrong"})
        assert wrong.returncode == 0, wrong.stderr
        assert json.loads(wrong.stdout)["hits"] and "searching in-process" in wrong.stderr
        assert "Traceback" not in out.stderr + wrong.stderr
    finally:
        stop(s)


def wait_registered(home: Path) -> list[Path]:
    deadline = time.monotonic() + 30  # the registration is written just after "listening" is logged
    while not (regs := list((home / "run").glob("serve-*.json"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return regs


def test_serve_port_in_use_and_bad_host_are_one_line(hash_index: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = run_cli("serve", "--port", str(port), env={"RAG_HOME": str(hash_index), **HASH}, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "cannot listen on 127.0.0.1" in out.stderr and "Traceback" not in out.stderr
    out = run_cli(
        "serve", "--host", "10.255.255.254", "--port", "0", env={"RAG_HOME": str(hash_index), **HASH}, timeout=120
    )  # (bind only: an address this machine does not have, no traffic)
    assert out.returncode == 2 and "cannot listen" in out.stderr and "Traceback" not in out.stderr


def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 exchange with exactly these header bytes (urllib would re-encode them)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_serve_malformed_requests_are_4xx(hash_index: Path, tmp_path: Path) -> None:
    s = start_serve(hash_index, tmp_path, "--token", "tok-123", env=HASH)
    try:
        post = b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok-123\r\n"
        cases = [
            (b'{"query": "aardvarks", "k": Infinity}', b"Content-Type: application/json\r\n", 400),
            (b'{"query": "aardvarks", "k": 1e400}', b"Content-Type: application/json\r\n", 400),
            (b'{"query": "aardvarks", "k": 2.5}', b"Content-Type: application/json\r\n", 400),
            (b'{"query": "aardvarks", "k": true}', b"Content-Type: application/json\r\n", 400),
            (b'{"query": "aard\\ud800varks"}', b"Content-Type: application/json\r\n", 400),
            (b'{"query": "aardvarks"}', b"Content-Type: application/json; charset=bogus\r\n", 400),
            (b'{"query": "aardvarks"}', b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n", 400),
            (b"[" * 30_000, b"Content-Type: application/json\r\n", 400),
        ]
        for body, headers, want in cases:
            status, data = raw_request(s.port, post + headers, body)
            assert status == want, (body[:60], headers, data[:300])
        bad_auth = b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok-\xff\xfe\r\nContent-Type: application/json\r\n"
        status, _ = raw_request(s.port, bad_auth, b'{"query": "aardvarks"}')
        assert status == 401
        status, _ = raw_request(s.port, post + b"Content-Type: application/json\r\n", b'{"query": "aardvarks"}')
        assert status == 200
    finally:
        stop(s)
    log = s.log.read_text()
    assert "Traceback" not in log, log


def test_dropped_index_is_noticed_by_serve(hash_index: Path, tmp_path: Path) -> None:
    s = start_serve(hash_index, tmp_path, env=HASH)
    try:
        assert s.request("/healthz", token=None)[0] == 200
        env = {"RAG_HOME": str(hash_index), **HASH}
        assert run_cli("indexes", "drop", "default", "--yes", env=env).returncode == 0
        status, body = s.request("/healthz", token=None)
        assert status == 503 and body["status"] != "ok"
        status, body = s.request("/search", {"query": "aardvarks"}, token=None)
        assert status == 503 and "gone" in body["error"]
        out = run_cli("search", "aardvarks", "--server", s.url(""), env=env)
        assert out.returncode == 3, out.stderr
        out = run_cli("search", "aardvarks", env=env)
        assert out.returncode == 3 and "Traceback" not in out.stderr
    finally:
        stop(s)


def test_serve_waits_for_nothing_after_sigterm(hash_index: Path, tmp_path: Path) -> None:
    s = start_serve(hash_index, tmp_path, env=HASH)
    t0 = time.monotonic()
    stop(s)
    assert time.monotonic() - t0 < 30 and s.proc.returncode == 0
    assert not list((hash_index / "run").glob("serve-*.json"))


def test_registration_is_private(hash_index: Path, tmp_path: Path) -> None:
    s = start_serve(hash_index, tmp_path, "--token", "tok-123", env=HASH)
    try:
        regs = wait_registered(hash_index)
        assert len(regs) == 1 and regs[0].stat().st_mode & 0o077 == 0
        assert (hash_index / "run").stat().st_mode & 0o077 == 0
    finally:
        stop(s)
    assert subprocess.run(["true"]).returncode == 0


def test_serve_refuses_rebinding_hosts_foreign_origins_and_non_json_bodies(hash_index: Path, tmp_path: Path) -> None:
    """Issue 29, item 5: a web page whose name was rebound to 127.0.0.1 sends its own Host; a page elsewhere
    sends its Origin, and a form's text/plain POST needs no preflight. None of them gets an answer."""
    s = start_serve(hash_index, tmp_path, env=HASH)  # the default: no token
    try:
        ok_json = b"Content-Type: application/json\r\n"
        query = b'{"query": "aardvarks"}'
        ask = b'{"question": "What do aardvarks eat?", "llm": "none"}'
        chat = b'{"model": "rag/default", "messages": [{"role": "user", "content": "What do aardvarks eat?"}]}'
        routes = [
            (b"GET", b"/get?path=" + str(hash_index).encode(), b"", b""),
            (b"GET", b"/search?q=aardvarks", b"", b""),
            (b"POST", b"/search", ok_json, query),
            (b"POST", b"/ask", ok_json, ask),
            (b"POST", b"/v1/chat/completions", ok_json, chat),
            (b"GET", b"/metrics", b"", b""),
        ]
        for method, path, headers, body in routes:
            head = method + b" " + path + b" HTTP/1.1\r\n" + headers
            status, data = raw_request(s.port, head + f"Host: rebind.evil.example:{s.port}\r\n".encode(), body)
            assert status == 421, (path, data[-300:])
            assert b"aardvark" not in data.lower().split(b"\r\n\r\n", 1)[1]
            status, _ = raw_request(s.port, head + b"Host: 127.0.0.1\r\nOrigin: https://evil.example\r\n", body)
            assert status == 403, path
        for host in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", f"[::1]:{s.port}"):
            status, data = raw_request(
                s.port, b"POST /search HTTP/1.1\r\n" + ok_json + f"Host: {host}\r\n".encode(), query
            )
            assert status == 200 and b"Aardvarks" in data, host
        same = f"Host: 127.0.0.1:{s.port}\r\nOrigin: http://127.0.0.1:{s.port}\r\n".encode()
        assert raw_request(s.port, b"POST /search HTTP/1.1\r\n" + ok_json + same, query)[0] == 200
        for kind in (b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x"):
            head = b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + kind + b"\r\n"
            assert raw_request(s.port, head, query)[0] == 415, kind
    finally:
        stop(s)


def test_serve_bounds_costly_filters_and_keeps_its_breaker_closed(hash_index: Path, tmp_path: Path) -> None:
    """Issue 29, item 6: three searches with a 40,000-character glob used to time out and open the local
    sources' breaker for every client for 26 s or more."""
    s = start_serve(hash_index, tmp_path, env=HASH)
    try:
        costly = {"query": "aardvarks", "path": "*a" * 20000 + "N"}
        for _ in range(4):
            status, body = s.request("/search", costly, token=None)
            assert status == 400 and "glob" in body["error"], body
        many = {"query": "aardvarks", "path": [f"*{i}*.md" for i in range(100)]}
        assert s.request("/search", many, token=None)[0] == 400
        for _ in range(4):  # a short deadline the client chose: late, and not the index's fault
            s.request("/search", {"query": "aardvarks", "timeout": 0.000001}, token=None)
        status, body = s.request("/search", {"query": "aardvarks"}, token=None)
        assert status == 200 and body["hits"] and not body["degraded"], body
    finally:
        stop(s)


def test_serve_malformed_reads_are_400_not_500(hash_index: Path, tmp_path: Path) -> None:
    """Issue 29, item 12."""
    s = start_serve(hash_index, tmp_path, env=HASH)
    try:
        assert s.request("/get?path=%00", token=None)[0] == 400
        assert s.request("/get?chunk_id=99999999999999999999999", token=None)[0] == 400
        chat = {"model": "rag/default", "messages": [{"role": "user", "content": [{"type": "text", "text": 123}]}]}
        assert s.request("/v1/chat/completions", chat, token=None)[0] == 400
        assert s.request("/embed", raw=b'{"texts": ["\\ud800"]}', token=None)[0] == 400
        assert "Traceback" not in s.log.read_text()
    finally:
        stop(s)
