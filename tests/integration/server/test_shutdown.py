"""Clean shutdown: SIGTERM and Ctrl-C (SIGINT) during index, ask, chat and serve.

Each run is a real `rag` subprocess. After the signal: the conventional exit code (130 for
SIGINT, 143 for SIGTERM, 0 for a server asked to stop), one clean line and no traceback, the
process gone within a bound (no thread keeps it alive), no child processes left, no partial
files, and the last good index still answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.fakeserver import FakeOpenAI
from tests.integration.ingest.test_crash_safety import FAST, SLOW, errors, index_proc, make_corpus
from tests.serving import start_serve

pytestmark = pytest.mark.slow
CODES = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def wait_for(cond, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def leftovers(home: Path) -> list[str]:
    """Files a clean index must not hold: temporaries and data dirs other than the live one."""
    bad = [str(p) for p in home.rglob("*") if ".tmp" in p.name or p.name.endswith(".pre.onnx")]
    for index in (home / "indexes").iterdir():
        live = (index / "CURRENT").read_text().strip()
        bad += [str(d) for d in index.glob("data-*") if d.name != live]
    return bad


def stop(proc: subprocess.Popen[str], sig: int, timeout: float = 20) -> int:
    kids = children(proc.pid)
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    for k in kids:
        assert not Path(f"/proc/{k}").exists() or "zombie" in Path(f"/proc/{k}/status").read_text(), k
    return rc


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("rebuild", [False, True], ids=["update", "rebuild"])
def test_signal_during_index(tmp_path: Path, sig: int, rebuild: bool) -> None:
    docs, home = tmp_path / "docs", tmp_path / "home"
    make_corpus(docs, 30, seed=1)
    # the runs around the interrupted one embed at full speed; only the interrupted one is slow (index_proc)
    env = {**SLOW, "RAG_HOME": str(home), **FAST}
    assert run_cli("index", str(docs), env=env).returncode == 0
    before = run_cli("search", "alpha river", "--json", "-k", "5", env=env)
    make_corpus(docs, 120, seed=2, variant=1)  # changes plus new files: a long second run
    proc = index_proc(docs, home, *(["--rebuild"] if rebuild else []))
    wait_for(lambda: any(home.glob("indexes/*/data-*/vectors-*.faiss")) and time.sleep(1.5) is None)
    rc = stop(proc, sig)
    code, word = CODES[sig]
    err = errors(proc)
    assert rc == code, err
    assert f"rag: {word}" in err and "Traceback" not in err
    assert leftovers(home) == []
    # the last good index answers (with a rebuild: exactly as before), and the next run completes
    after = run_cli("search", "alpha river", "--json", "-k", "5", env=env)
    assert after.returncode == 0, after.stderr
    if rebuild:
        assert json.loads(after.stdout)["hits"] == json.loads(before.stdout)["hits"]
    done = run_cli("index", str(docs), "--json", env=env)
    assert done.returncode == 0, done.stderr
    files = json.loads(done.stdout)["files"]
    assert files["seen"] == 120 and files["indexed"] + files["unchanged"] == 120 and files["skipped"] == 0


def test_ctrl_c_on_index_does_not_wait_for_a_running_embedding_batch(tmp_path: Path) -> None:
    """Issue 32 item 8: Ctrl-C while the pool embeds a batch that takes a minute stops at once: the rollback does
    not queue behind the batch, the exit does not wait for its thread; a line says what the index keeps."""
    docs, home = tmp_path / "docs", tmp_path / "home"
    make_corpus(docs, 20, seed=1)
    env = {**SLOW, "RAG_HOME": str(home), **FAST}
    assert run_cli("index", str(docs), env=env).returncode == 0
    make_corpus(docs, 40, seed=2, variant=1)
    mark = tmp_path / "embedding"
    proc = index_proc(docs, home, env={"RAG_TEST_EMBED_DELAY": "60", "RAG_TEST_EMBED_MARK": str(mark)})
    wait_for(lambda: mark.exists() or proc.poll() is not None)  # a batch is in the embedder's 60 s sleep
    assert proc.poll() is None, errors(proc)
    t0 = time.monotonic()
    rc = stop(proc, signal.SIGINT, timeout=15)
    assert rc == 130 and time.monotonic() - t0 < 15
    err = errors(proc)
    assert "keeps what its last checkpoint committed" in err and "Traceback" not in err, err
    assert leftovers(home) == []
    after = run_cli("search", "alpha river", "--json", "-k", "3", env=env)
    assert after.returncode == 0 and json.loads(after.stdout)["hits"], after.stderr


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("command", ["ask", "chat"])
def test_signal_during_streamed_answer(sample_home: Path, tmp_path: Path, sig: int, command: str) -> None:
    with FakeOpenAI() as llm:
        # the drip model's words never end a sentence: unchecked, they are on stdout as they come (checked, they
        # would be held until the ~60-word cut of a run-on sentence, 18 s of drip)
        full = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "RAG_HOME": str(sample_home),
            "OPENAI_API_KEY": "sk-x",
            "RAG_ANSWER_VERIFY": "0",
        }
        args = ["--llm", "openai", "--base-url", llm.base_url, "--model", "drip"]
        argv = [sys.executable, "-m", "rag_cli", command, *args]
        if command == "ask":
            argv.insert(4, "How does reciprocal rank fusion combine rankings?")
        out, err = tmp_path / "out.txt", tmp_path / "err.txt"
        with open(out, "w") as fo, open(err, "w") as fe:
            proc = subprocess.Popen(
                argv,
                env=full,
                stdout=fo,
                stderr=fe,
                text=True,
                stdin=subprocess.PIPE if command == "chat" else subprocess.DEVNULL,
            )
            if command == "chat":
                assert proc.stdin is not None
                proc.stdin.write("How does reciprocal rank fusion combine rankings?\n")
                proc.stdin.flush()
            wait_for(lambda: "word2" in out.read_text())
            rc = stop(proc, sig)
            if proc.stdin is not None:
                proc.stdin.close()
        code, word = CODES[sig]
        text = err.read_text()
        assert rc == code, text
        assert f"rag: {word}" in text and "Traceback" not in text
        wait_for(lambda: llm.closed_early == 1, 10)  # the stream to the LLM was closed, not left dangling


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_stops_serve_gracefully_with_requests_in_flight(sample_home: Path, tmp_path: Path, sig: int) -> None:
    """The server stops accepting, lets the in-flight request finish, and exits 0."""
    s = start_serve(sample_home, tmp_path)
    got: list[int] = []

    # eight clients keep requests in flight when the signal lands
    def client() -> None:
        for _ in range(20):
            try:
                status, _ = s.request("/search?q=fusion&k=3", token=None)
            except OSError:
                return
            got.append(status)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: len(got) >= 10)
    rc = stop(s.proc, sig)
    for t in threads:
        t.join(30)
    assert rc == 0
    assert set(got) == {200}  # every answered request was whole; the rest were refused at connect
    log = s.log.read_text()
    assert "shutting down" in log and "Traceback" not in log


def test_interrupted_first_index_is_not_listed(tmp_path: Path) -> None:
    """Issue 21, 10: an interrupted first `rag index` left an empty index in `rag indexes`."""
    docs, home = tmp_path / "docs", tmp_path / "home"
    make_corpus(docs, 60, seed=3)
    env = {**SLOW, "RAG_HOME": str(home), "RAG_INDEX_CHECKPOINT_SECONDS": "3600"}  # no checkpoint before the signal
    proc = index_proc(docs, home, env=env)
    wait_for(lambda: any(home.glob("indexes/*/data-*")) and time.sleep(1.0) is None)
    assert stop(proc, signal.SIGINT) == 130
    listed = run_cli("indexes", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout)["indexes"] == []
    out = run_cli("search", "alpha river", env=env)
    assert out.returncode == 3 and "no index" in out.stderr
    assert run_cli("index", str(docs), env={**env, **FAST}).returncode == 0  # and the next run builds it
    assert [i["name"] for i in json.loads(run_cli("indexes", "--json", env=env).stdout)["indexes"]] == ["default"]
