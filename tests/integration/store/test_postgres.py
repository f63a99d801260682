"""The PostgreSQL + pgvector store (issue 18) against a real server: pgserver runs PostgreSQL 16 with
pgvector from a pip package, no root and no system service. The real CLI in subprocesses, the hash
embedder (the store is the point here, not the model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, write

pgserver = pytest.importorskip("pgserver", reason="the postgres extra (pgserver) is not installed")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("pgdata")
    server = pgserver.get_server(str(data), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def env_for(url: str, home: Path, **extra: str) -> dict[str, str]:
    return {"RAG_STORE_URL": url, "RAG_HOME": str(home), "RAG_EMBED_BACKEND": "hash", **extra}


def docs(root: Path, n: int, tag: str = "doc") -> Path:
    for i in range(n):
        body = "\n\n".join(f"Paragraph {j} of {tag} {i}: kestrel {tag}{i} words and more words {j}." for j in range(6))
        write(root / f"{tag}{i}.md", f"# {tag.title()} {i}\n\n{body}\n")
    return root


def counts(url: str, index: str) -> dict[str, int]:
    """Chunks per file path in the database."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f'SELECT f.path, count(c.id) FROM "rag_{index}".files f LEFT JOIN "rag_{index}".chunks c '
            "ON c.file_id = f.id GROUP BY f.path"
        ).fetchall()
    return {Path(p).name: n for p, n in rows}


def search(env: dict[str, str], query: str, *args: str) -> dict:
    out = run_cli("search", query, "--json", *args, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_index_search_ask_and_incremental(pg: str, tmp_path: Path) -> None:
    root = docs(tmp_path / "d", 6)
    env = env_for(pg, tmp_path / "home", RAG_INDEX="basic")
    first = run_cli("index", str(root), "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["files"]["indexed"] == 6
    assert not (tmp_path / "home" / "indexes" / "basic").exists()  # nothing written locally
    for mode in ("dense", "bm25", "hybrid"):
        hits = search(env, "kestrel doc3", "--mode", mode, "-k", "3")["hits"]
        assert hits and hits[0]["path"].endswith("doc3.md"), (mode, hits[:1])
    ans = run_cli("ask", "kestrel doc4 words", "--llm", "none", "--mode", "bm25", "--json", env=env)
    assert ans.returncode == 0, ans.stderr
    assert any(s["path"].endswith("doc4.md") for s in json.loads(ans.stdout)["sources"])
    before = counts(pg, "basic")
    assert len(before) == 6 and all(n > 0 for n in before.values())
    # incremental: one added, one modified, one deleted, the rest untouched
    write(root / "new.md", "# New\n\nA heron in the reeds.\n")
    (root / "doc1.md").write_text("# Doc 1\n\nNow about otters only.\n")
    (root / "doc2.md").unlink()
    again = json.loads(run_cli("index", str(root), "--json", env=env).stdout)
    assert again["files"] == {"seen": 6, "indexed": 2, "unchanged": 4, "removed": 1, "skipped": 0}
    after = counts(pg, "basic")
    assert set(after) == set(before) - {"doc2.md"} | {"new.md"} and after["doc1.md"] == 1
    assert search(env, "otters", "--mode", "bm25", "-k", "1")["hits"][0]["path"].endswith("doc1.md")
    import psycopg

    with psycopg.connect(pg) as conn:  # BM25's postings follow their chunks: none orphaned, none missing
        orphans, covered, chunks = conn.execute(
            'SELECT (SELECT count(*) FROM "rag_basic".postings p LEFT JOIN "rag_basic".chunks c ON c.id = p.chunk_id '
            'WHERE c.id IS NULL), (SELECT count(DISTINCT chunk_id) FROM "rag_basic".postings), '
            '(SELECT count(*) FROM "rag_basic".chunks)'
        ).fetchone()
    assert orphans == 0 and covered == chunks == sum(after.values())
    assert not any(h["path"].endswith("doc2.md") for h in search(env, "kestrel doc2", "-k", "10")["hits"])
    listed = json.loads(run_cli("indexes", "--json", env=env).stdout)
    assert "basic" in [i["name"] for i in listed["indexes"]]
    info = json.loads(run_cli("indexes", "info", "basic", "--json", env=env).stdout)
    assert info["files"] == 6 and info["chunks"] == sum(after.values())
    assert run_cli("indexes", "drop", "basic", env=env).returncode == 2  # no --yes off a terminal
    assert run_cli("indexes", "drop", "basic", "--yes", env=env).returncode == 0
    assert "basic" not in [i["name"] for i in json.loads(run_cli("indexes", "--json", env=env).stdout)["indexes"]]
    assert run_cli("search", "otters", env=env).returncode == 3


def test_fingerprint_mismatch_is_refused(pg: str, tmp_path: Path) -> None:
    root = docs(tmp_path / "d", 2)
    env = env_for(pg, tmp_path / "home", RAG_INDEX="fp")
    assert run_cli("index", str(root), env=env).returncode == 0
    other = run_cli("index", str(root), "--chunk-tokens", "64", env=env)
    assert other.returncode == 4 and "built with other settings" in other.stderr and "Traceback" not in other.stderr
    assert run_cli("index", str(root), "--chunk-tokens", "64", "--rebuild", env=env).returncode == 0


def _indexer(root: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rag_cli", "index", str(root), "--json"],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("overlap", [False, True], ids=["disjoint", "overlapping"])
def test_three_concurrent_indexers(pg: str, tmp_path: Path, overlap: bool) -> None:
    """Three processes (standing in for three machines) ingest into one index at once: the chunk counts
    afterwards are exactly those of one process indexing everything, with no file twice."""
    index = f"conc_{'o' if overlap else 'd'}"
    roots = [docs(tmp_path / f"part{i}", 12, tag=f"p{i}x") for i in range(3)]
    env = env_for(pg, tmp_path / "home", RAG_INDEX=index)
    # overlapping: every process indexes the parent of all three folders
    targets = [tmp_path] * 3 if overlap else roots
    procs = [_indexer(t, env) for t in targets]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    got = counts(pg, index)
    ref_env = env_for(pg, tmp_path / "home", RAG_INDEX=f"{index}_ref")
    assert run_cli("index", *(str(r) for r in roots), env=ref_env).returncode == 0
    assert got == counts(pg, f"{index}_ref") and len(got) == 36


def test_kill_9_mid_run_leaves_no_partial_file(pg: str, tmp_path: Path) -> None:
    root = docs(tmp_path / "d", 40)
    env = env_for(
        pg,
        tmp_path / "home",
        RAG_INDEX="killed",
        RAG_PLUGINS="tests.plugins.slow_embed",
        RAG_EMBED_BACKEND="slow-hash",
        RAG_TEST_EMBED_DELAY="0.2",
        RAG_INDEX_QUEUE_FILES="2",
    )
    ref = env_for(pg, tmp_path / "home", RAG_INDEX="killed_ref")
    assert run_cli("index", str(root), env=ref).returncode == 0
    want = counts(pg, "killed_ref")
    proc = _indexer(root, env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if len(counts(pg, "killed")) >= 3:
                break
        except Exception:  # the schema is not there yet
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # reaps it and closes its pipes
    partial = counts(pg, "killed")
    assert 0 < len(partial) < 40
    assert all(n == want[name] for name, n in partial.items())  # every file there is whole
    assert run_cli("index", str(root), env=env, timeout=300).returncode == 0
    assert counts(pg, "killed") == want


def test_two_serve_replicas_answer_alike(pg: str, tmp_path: Path) -> None:
    from tests.serving import start_serve

    root = docs(tmp_path / "d", 8)
    env = env_for(pg, tmp_path / "home", RAG_INDEX="replicas")
    assert run_cli("index", str(root), env=env).returncode == 0
    a = start_serve(tmp_path / "home-a", tmp_path, env={**env, "RAG_HOME": str(tmp_path / "home-a")})
    b = start_serve(tmp_path / "home-b", tmp_path, env={**env, "RAG_HOME": str(tmp_path / "home-b")})
    try:
        for q in ("kestrel p0x3", "words and more words 4", "doc5"):
            sa, ra = a.request("/search?q=" + q.replace(" ", "+") + "&k=5", token=None)
            sb, rb = b.request("/search?q=" + q.replace(" ", "+") + "&k=5", token=None)
            assert sa == sb == 200
            assert [h["chunk_id"] for h in ra["hits"]] == [h["chunk_id"] for h in rb["hits"]] and ra["hits"]
    finally:
        for s in (a, b):
            s.proc.send_signal(signal.SIGTERM)
            s.proc.wait(30)


def test_database_down_is_one_clear_line(tmp_path: Path) -> None:
    """A database that is not there: exit 10 and one line, no traceback, no hang (the wait is [store] timeout)."""
    env = env_for("postgresql://nobody@127.0.0.1:1/none", tmp_path / "home", RAG_STORE_TIMEOUT="2")
    for args in (["search", "anything"], ["index", str(docs(tmp_path / "d", 1))], ["indexes"]):
        t0 = time.monotonic()
        out = run_cli(*args, env=env, timeout=60)
        assert out.returncode == 10, (args, out.stderr)
        assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1 and "rag: error: PostgreSQL" in out.stderr
        assert time.monotonic() - t0 < 30


def test_database_stopped_while_serving(tmp_path: Path) -> None:
    """The database goes away under a running `rag serve`: searches fail fast with the reason (503, every
    source degraded), the server stays up, and answers again once the database is back."""
    from tests.serving import start_serve

    data = tmp_path / "pgdata"
    server = pgserver.get_server(str(data), cleanup_mode="stop")
    url = server.get_uri()
    root = docs(tmp_path / "d", 3)
    env = env_for(url, tmp_path / "home", RAG_INDEX="down", RAG_STORE_TIMEOUT="1", RAG_RETRIEVE_TIMEOUT="6")
    assert run_cli("index", str(root), env=env).returncode == 0
    served = start_serve(tmp_path / "home", tmp_path, env=env)
    try:
        assert served.request("/search?q=kestrel&k=2", token=None)[0] == 200
        server.cleanup()  # stops PostgreSQL
        t0 = time.monotonic()
        status, body = served.request("/search?q=kestrel&k=2", token=None)
        assert status == 503 and body["degraded"] and all("PostgreSQL" in d["reason"] for d in body["degraded"])
        assert time.monotonic() - t0 < 20
        out = run_cli("search", "kestrel", "--server", "off", env=env, timeout=60)
        assert out.returncode == 10 and "Traceback" not in out.stderr
        server = pgserver.get_server(str(data), cleanup_mode="stop")  # back
        deadline = time.monotonic() + 30
        while served.request("/search?q=kestrel&k=2", token=None)[0] != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.5)
    finally:
        served.proc.send_signal(signal.SIGTERM)
        served.proc.wait(30)
        server.cleanup()


def test_a_dropped_connection_is_tried_again(pg: str, tmp_path: Path) -> None:
    """Reads are idempotent: a pooled connection the server dropped is replaced and the read tried again
    (full-jitter backoff, as remote sources retry); without that the search after a database restart fails."""
    import psycopg

    from rag_cli.config import load_settings
    from rag_cli.store import base as store_base

    root = docs(tmp_path / "d", 3)
    assert run_cli("index", str(root), env=env_for(pg, tmp_path / "home", RAG_INDEX="retry")).returncode == 0
    reader = store_base.open_reader(load_settings(index="retry", store_url=pg, embed_backend="hash"))
    assert reader.bm25("kestrel doc1", 3)
    with psycopg.connect(pg, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'rag' AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert killed >= 1
    hits = reader.bm25("kestrel doc1", 3)
    assert hits and reader.hits(hits, "bm25")[0].path.endswith("doc1.md")


def test_a_name_of_several_tokens_is_looked_up_as_a_phrase(pg: str, tmp_path: Path) -> None:
    root = tmp_path / "d"
    write(root / "ide.md", "# Editors\n\nEclipse 3.0 on MacOSX works with Git over SSH. GitLab mirrors: example.com.\n")
    env = env_for(pg, tmp_path / "home", RAG_INDEX="names", RAG_ANSWER_MIN_EVIDENCE="0")
    assert run_cli("index", str(root), env=env).returncode == 0
    ok = run_cli("ask", "Does Eclipse 3.0 work with Git?", "--llm", "none", "--mode", "bm25", env=env)
    assert ok.returncode == 0, ok.stderr
    for q, name in (("When is Git 3.0 released?", "Git 3.0"), ("Is Git on GitLab.com mirrored?", "GitLab.com")):
        out = run_cli("ask", q, "--llm", "none", "--mode", "bm25", env=env)
        assert out.returncode == 7 and f"'{name}' appears in no document" in out.stderr, out.stderr


SECRET = "hunter2-s3cret"


def _with_password_param(url: str) -> str:
    return url + ("&" if "?" in url else "?") + f"password={SECRET}"


def test_a_password_given_as_a_url_parameter_is_never_printed(pg: str, tmp_path: Path) -> None:
    """Issue 29, item 8: `?password=` was printed by `rag indexes` (text and --json) and in the one-line
    error for a database that cannot be reached; a malformed percent-escape reached the user in the
    driver's message."""
    url = _with_password_param(pg)
    env = env_for(url, tmp_path / "home")
    assert run_cli("index", str(docs(tmp_path / "d", 2)), "--index", "pw", env=env).returncode == 0
    for args in (("indexes",), ("indexes", "--json"), ("search", "kestrel", "--index", "pw", "--json")):
        out = run_cli(*args, env=env)
        assert out.returncode == 0, out.stderr
        assert SECRET not in out.stdout + out.stderr, args
    down = {
        "param": f"postgresql://postgres@127.0.0.1:1/db?password={SECRET}&connect_timeout=1",
        "userinfo": f"postgresql://postgres:{SECRET}@127.0.0.1:1/db?connect_timeout=1",
        "bad escape": "postgresql://postgres:hunter2-%zzs3cret@127.0.0.1:1/db",
        "conninfo": f"host=127.0.0.1 port=1 password={SECRET} dbname=db connect_timeout=1",
    }
    for what, bad in down.items():
        for args in (("indexes",), ("indexes", "--json"), ("search", "kestrel")):
            out = run_cli(*args, env={**env, "RAG_STORE_URL": bad, "RAG_STORE_TIMEOUT": "0.5"}, timeout=60)
            assert out.returncode != 0, (what, args)
            assert SECRET not in out.stdout + out.stderr and "%zzs3cret" not in out.stderr, (what, args, out.stderr)


def test_long_index_names_cannot_share_a_schema(pg: str, tmp_path: Path) -> None:
    """Issue 29, item 9: PostgreSQL cut names to 63 bytes, so two 100-character names with the same first
    59 characters read (and dropped) each other's data."""
    env = env_for(pg, tmp_path / "home")
    stem = "x" * 59
    out = run_cli("index", str(docs(tmp_path / "d", 1)), "--index", stem + "-one", env=env)
    assert out.returncode == 2 and "too long for a PostgreSQL store" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    fits = "y" * 59  # rag_ + 59 bytes = 63: the longest name that fits
    assert run_cli("index", str(docs(tmp_path / "e", 1)), "--index", fits, env=env).returncode == 0
    assert fits in run_cli("indexes", env=env).stdout


def test_bm25_takes_a_federated_search_s_collection_idf(pg: str, tmp_path: Path) -> None:
    """Issue 30 (federated parity): PostgreSQL's BM25 scores a word with a federated search's collection idf
    (store/base.Collection) as the local store does: its own counts change nothing, a bigger collection scales a
    one-word query's scores by the ratio of the two idfs, and scores_for agrees with bm25."""
    from rag_cli.config import load_settings
    from rag_cli.store import base as store_base

    root = docs(tmp_path / "d", 4)
    write(root / "rare.md", "# Rare\n\nA kestrel hovers; the zyzzyva sleeps.\n")
    assert run_cli("index", str(root), env=env_for(pg, tmp_path / "home", RAG_INDEX="idf")).returncode == 0
    reader = store_base.open_reader(load_settings(index="idf", store_url=pg, embed_backend="hash"))
    try:
        for query in ("kestrel words", "zyzzyva", "paragraph kestrel doc2"):
            own = store_base.word_counts(reader, query)
            assert own[0] == reader.count and all(0 < n <= own[0] for n in own[1].values()), own
            same, plain = reader.bm25(query, 50, collection=own), reader.bm25(query, 50)
            assert [c for c, _ in same] == [c for c, _ in plain], query
            assert [s for _, s in same] == pytest.approx([s for _, s in plain], rel=1e-9), query
        ((word, held),) = store_base.word_counts(reader, "zyzzyva")[1].items()
        bigger = (reader.count * 7, {word: held + 2})
        ratio = store_base.bm25_idf(bigger[0], held + 2) / store_base.bm25_idf(reader.count, held)
        plain, moved = reader.bm25("zyzzyva", 5), reader.bm25("zyzzyva", 5, collection=bigger)
        assert plain and [s for _, s in moved] == pytest.approx([s * ratio for _, s in plain], rel=1e-9)
        scored = reader.scores_for([c for c, _ in moved], None, "zyzzyva", collection=bigger)
        assert [scored[c]["bm25"] for c, _ in moved] == pytest.approx([s for _, s in moved], rel=1e-9)
    finally:
        reader.close()
