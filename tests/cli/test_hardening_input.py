"""Issue 14, the clumsy user's side: unreadable folders, bad flags and config, binary queries, bad
JSONL lines, big files and contexts, and no network call when nothing remote is configured."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rag_cli import runtime
from rag_cli.config import Settings
from rag_cli.embed.base import create
from rag_cli.ingest import segments
from rag_cli.ingest.pipeline import index_paths
from rag_cli.ingest.walk import walk
from tests.conftest import RAG, ROOT, run_cli, write

HASH = {"RAG_EMBED_BACKEND": "hash"}


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"RAG_HOME": str(home), **HASH, **extra}


@pytest.fixture
def indexed(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    docs = write(tmp_path / "d" / "a.md", "# Alpha\n\nAardvarks eat ants at night.\n").parent
    write(docs / "b.md", "# Beta\n\nBadgers dig setts.\n")
    assert run_cli("index", str(docs), env=env_for(home)).returncode == 0
    return home


# -- 6. an unreadable folder is reported, not fatal (simulated: the tests run as root) ---------------


def test_unreadable_folder_warns_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "d"
    write(root / "ok.md", "# Ok\n\nreadable\n")
    write(root / "locked" / "x.md", "# X\n\nhidden\n")
    write(root / "venvish" / "y.md", "# Y\n\nalso hidden\n")
    real_scandir = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    real_is_file = Path.is_file

    def is_file(self: Path) -> bool:
        if self.name == "pyvenv.cfg" and self.parent.name == "venvish":
            raise PermissionError(13, "Permission denied")  # the virtualenv check inside a mode-311 folder
        return real_is_file(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "is_file", is_file)
    skipped: list[tuple[Path, str]] = []
    found = [f.path.name for f in walk([root], on_skip=lambda p, r: skipped.append((p, r)))]
    assert found == ["ok.md", "y.md"]
    assert skipped == [(root / "locked", "unreadable folder: Permission denied")]


def test_unreadable_folder_in_report(hash_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "d"
    write(root / "ok.md", "# Ok\n\nreadable\n")
    write(root / "locked" / "x.md", "# X\n\nhidden\n")
    real_scandir = os.scandir
    monkeypatch.setattr(
        os,
        "scandir",
        lambda p: (
            (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
            if Path(p).name == "locked"
            else real_scandir(p)
        ),
    )
    rep = runtime.run(index_paths([root], hash_settings, create(hash_settings)))
    assert rep.files_indexed == 1
    assert [(Path(s["path"]).name, s["reason"]) for s in rep.skipped] == [
        ("locked", "unreadable folder: Permission denied")
    ]


# -- 12, 15. bad flags and config are one line, exit 2 ------------------------------------------------


@pytest.mark.parametrize("url", ["127.0.0.1:8080/v1", "file:///etc/passwd", "http://127.0.0.1:99999/v1", "http://"])
def test_bad_base_url_is_usage_error(indexed: Path, url: str) -> None:
    out = run_cli("ask", "aardvarks", "--llm", "openai", "--base-url", url, env=env_for(indexed))
    assert out.returncode == 2, out.stderr
    assert "base URL" in out.stderr and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[retrieve]\nbm25_columns = [1]\n", "retrieve_bm25_columns"),
        ("[retrieve]\nk = -5\n", "retrieve_k"),
        ("[retrieve]\nk = 0\n", "retrieve_k"),
        ("[retrieve]\nweights = { dense = -1 }\n", "retrieve_weights"),
        ("[retrieve]\ntimeout = nan\n", "retrieve_timeout"),
    ],
)
def test_config_mistakes_are_one_line(indexed: Path, tmp_path: Path, toml: str, needle: str) -> None:
    cfg = write(tmp_path / "rag.toml", toml)
    out = run_cli("search", "aardvarks", "--config", str(cfg), env=env_for(indexed))
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_max_file_mb_checked(indexed: Path, tmp_path: Path, value: str) -> None:
    out = run_cli("index", str(tmp_path / "d"), "--max-file-mb", value, env=env_for(indexed))
    assert out.returncode == 2 and "index_max_file_mb" in out.stderr and "Traceback" not in out.stderr


def test_rag_home_a_file_or_read_only(tmp_path: Path) -> None:
    docs = write(tmp_path / "d" / "a.md", "# A\n\nApples.\n").parent
    home_file = write(tmp_path / "homefile", "x")
    out = run_cli("index", str(docs), env=env_for(home_file))
    assert out.returncode == 2 and "not a folder" in out.stderr and "Traceback" not in out.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    # root ignores permission bits: a read-only bind is not available, so make indexes/ a file instead
    write(ro / "indexes", "not a folder")
    out = run_cli("index", str(docs), env=env_for(ro))
    assert out.returncode == 2, out.stderr
    assert "cannot create index" in out.stderr and "Traceback" not in out.stderr


def test_eval_broken_queries_and_save_folder(tmp_path: Path) -> None:
    beir = tmp_path / "beir"
    write(beir / "corpus.jsonl", '{"_id": "d1", "title": "T", "text": "aardvarks eat ants"}\n')
    write(beir / "queries.jsonl", '{"_id": "q1", "text": "aardvarks"}\n{broken\n')
    write(beir / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    out = run_cli("eval", str(beir), "--mode", "bm25", env=env_for(tmp_path / "h"))
    assert out.returncode == 2 and "queries.jsonl:2: not JSON" in out.stderr and "Traceback" not in out.stderr
    write(beir / "queries.jsonl", '{"_id": "q1", "text": "aardvarks"}\n')
    out = run_cli("eval", str(beir), "--mode", "bm25", "--save", str(tmp_path), env=env_for(tmp_path / "h"))
    assert out.returncode == 2 and "is a folder" in out.stderr and "Traceback" not in out.stderr


# -- 16. a query that is not UTF-8 ---------------------------------------------------------------------


def test_non_utf8_query(indexed: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_for(indexed)}
    arg = b"aardvarks \xff\xfe"
    out = subprocess.run(
        [*(a.encode() for a in RAG), b"search", arg, b"--json"], capture_output=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.decode("utf-8"))  # valid UTF-8 JSON
    assert data["hits"] and data["degraded"] == [], data["degraded"]
    assert "\ufffd" in data["query"]
    chat = subprocess.run(
        [*(a.encode() for a in RAG), b"chat", b"--llm", b"none"],
        input=b"aardvarks \xff\x1b[2J\n",
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr
    assert b"\x1b" not in chat.stdout and b"\xff" not in chat.stdout
    chat.stdout.decode("utf-8")


# -- 17. JSONL: the bad line is skipped, not the file -----------------------------------------------------


def test_jsonl_bad_lines_skipped_not_the_file(tmp_path: Path) -> None:
    lines = [
        json.dumps({"_id": "a", "title": "Aardvark", "text": "Aardvarks eat ants."}),
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"_id": "b", "title": None, "text": "Badgers dig setts."}),
        json.dumps({"_id": "c", "title": {"a": 1}, "text": "Cats nap."}),
        json.dumps({"_id": 7, "title": "Seven", "text": 12345}),
        json.dumps({"_id": "a", "title": "Again", "text": "A second aardvark document."}),
        "not json",
    ]
    docs = write(tmp_path / "d" / "c.jsonl", "\n".join(lines) + "\n").parent
    home = tmp_path / "home"
    out = run_cli("index", str(docs), "--json", env=env_for(home))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["files"]["indexed"] == 1 and report["skipped"] == []
    messages = " ".join(w["message"] for w in report["warnings"])
    assert "3 bad lines" in messages and "line 2: nested too deep" in messages and "repeated _id" in messages
    found = run_cli("search", "aardvarks badgers cats 12345", "--mode", "bm25", "--json", "-k", "10", env=env_for(home))
    hits = json.loads(found.stdout)["hits"]
    titles = {h["title"] for h in hits}
    assert titles == {"Aardvark", "b", "Seven"}, titles  # no "None", no "{'a': 1}", the first "a" only
    assert not any("None" in h["text"] or "{'a'" in h["text"] for h in hits)


# -- 18. big files stream, contexts are capped, a folder is not a model ----------------------------------


def test_big_file_read_in_segments(hash_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "SEGMENT_BYTES", 4096)
    root = tmp_path / "d"
    body = "".join(f"## Part {i}\n\n" + " ".join(f"word{i}x{j}" for j in range(40)) + "\n\n" for i in range(200))
    write(root / "big.md", "# Big\n\n" + body)
    write(
        root / "big.jsonl",
        "".join(json.dumps({"_id": f"d{i}", "text": f"doc number{i} text"}) + "\n" for i in range(2000)),
    )
    loads: list[int] = []
    real = segments.load_segment

    def spy(loader, path, data, first_line, title, heading):  # type: ignore[no-untyped-def]
        loads.append(len(data))
        return real(loader, path, data, first_line, title, heading)

    monkeypatch.setattr("rag_cli.ingest.prepare.load_segment", spy)
    rep = runtime.run(index_paths([root], hash_settings, create(hash_settings)))
    assert rep.files_indexed == 2 and not rep.skipped
    assert len(loads) > 20 and max(loads) <= 4096
    from rag_cli.store.local.reader import IndexReader

    reader = IndexReader(hash_settings.index_dir)
    try:
        rows = (
            reader._conn()
            .execute(
                "SELECT c.text, c.heading, c.start_line, c.title, f.path FROM chunks c JOIN files f ON f.id = c.file_id"
            )
            .fetchall()
        )
        md = [r for r in rows if r[4].endswith("big.md")]
        lines = (root / "big.md").read_text().split("\n")
        for text, heading, start, title, _ in md:  # line numbers are the file's, headings carried over
            assert title == "Big"
            assert text.split()[0] in lines[start - 1], (start, text[:40])
            assert heading.split(" > ")[-1].startswith("Part") or heading == "Big"
        assert len([r for r in rows if r[4].endswith("big.jsonl")]) == 2000
        ordinals = [
            r[0]
            for r in reader._conn().execute(
                "SELECT ordinal FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.path LIKE '%big.md' ORDER BY c.id"
            )
        ]
        assert ordinals == list(range(len(ordinals)))
    finally:
        reader.close()
    again = runtime.run(index_paths([root], hash_settings, create(hash_settings)))
    assert again.files_unchanged == 2 and again.chunks_added == 0
    (root / "big.md").write_text("# Big\n\n" + body + "\n\x00\x00binary tail")  # fails half-way
    bad = runtime.run(index_paths([root], hash_settings, create(hash_settings)))
    assert [Path(s["path"]).name for s in bad.skipped] == ["big.md"]
    reader = IndexReader(hash_settings.index_dir)
    try:  # the file's parts written before the failure are gone, and so is its old version
        n = reader._conn().execute("SELECT count(*) FROM files WHERE path LIKE '%big.md'").fetchone()[0]
        assert n == 0
        assert reader.stats()["chunks"] == reader._conn().execute("SELECT count(*) FROM chunks").fetchone()[0] == 2000
        reader.refresh()
        assert reader.index is not None and reader.index.ntotal == 2000
    finally:
        reader.close()


def test_context_checks_and_cap(indexed: Path, tmp_path: Path) -> None:
    env = env_for(indexed)
    out = run_cli("ask", "aardvarks", "--llm", "none", "--context", str(tmp_path), env=env)
    assert out.returncode == 2 and "is a folder" in out.stderr
    out = run_cli("ask", "aardvarks", "--llm", "none", "--context", "/dev/zero", env=env)
    assert out.returncode == 2 and "not a regular file" in out.stderr
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:
        fh.write(b"aardvarks context line\n" * (300_000))  # 6.9 MB, over the 4 MiB cap
    out = run_cli("ask", "aardvarks", "--llm", "none", "--context", str(big), env=env)
    assert out.returncode == 0, out.stderr
    assert "only its first 4 MiB" in out.stderr


def test_model_folder_is_refused_and_json_errors_are_objects(indexed: Path, tmp_path: Path) -> None:
    env = env_for(indexed)
    out = run_cli("ask", "aardvarks", "--model", str(tmp_path), env=env)
    assert out.returncode == 2 and "is a folder" in out.stderr and "Traceback" not in out.stderr
    out = run_cli(
        "ask",
        "aardvarks",
        "--llm",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--fallback",
        "",
        "--json",
        env={**env, "RAG_ANSWER_MIN_SCORE": "-1"},
    )
    assert out.returncode == 8, out.stderr
    obj = json.loads(out.stdout)
    assert obj["answer"] is None and obj["exit_code"] == 8 and obj["error"]


# -- 19. no network call without a remote source ------------------------------------------------------


QUESTION = "How many bits per weight does the Q4_K_M quantisation use?"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_offline_run_makes_no_network_call(sample_home: Path, tmp_path: Path) -> None:
    """The real packaged embedder (ONNX Runtime for queries) and `--llm none`: no AF_INET/AF_INET6
    socket, no netlink (what getaddrinfo opens first), in search and in ask."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_HOME": str(sample_home)}
    trace = tmp_path / "trace.txt"
    for args in (["search", QUESTION, "--server", "off"], ["ask", QUESTION, "--llm", "none", "--server", "off"]):
        out = subprocess.run(
            ["strace", "-f", "-qq", "-e", "trace=socket,connect", "-o", str(trace), *RAG, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        calls = [ln for ln in trace.read_text().splitlines() if "AF_INET" in ln or "AF_NETLINK" in ln]
        assert calls == [], calls


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="no network namespaces here")
def test_offline_run_works_without_any_network(sample_home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_HOME": str(sample_home)}
    out = subprocess.run(
        ["unshare", "-n", *RAG, "ask", QUESTION, "--llm", "none", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"]


def test_search_json_error_object_and_readable_info(indexed: Path) -> None:
    """Issue 21, 10: `search --json` printed nothing for a missing index (ask --json printed an object);
    `indexes info` printed a raw epoch and a Python dict."""
    out = run_cli("search", "x", "--json", "-i", "nope", env=env_for(indexed))
    assert out.returncode == 3
    obj = json.loads(out.stdout)
    assert obj["hits"] == [] and obj["exit_code"] == 3 and "nope" in obj["error"]
    info = run_cli("indexes", "info", env=env_for(indexed))
    assert info.returncode == 0
    assert "{" not in info.stdout and "'" not in info.stdout
    updated = next(ln for ln in info.stdout.splitlines() if ln.startswith("updated_at:"))
    assert "-" in updated and ":" in updated.split(": ", 1)[1]
