from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_corpus"
RAG = [sys.executable, "-m", "rag_cli"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("NO_COLOR", None)
# the tests answer with Gemma 3 270M (the fastest packaged reader; its completion prompt), installed by make test;
# the default reader (Qwen2.5-Coder 0.5B) has its own test (tests/integration/pipeline/test_readers.py)
os.environ.setdefault("RAG_LLM_MODEL", "gemma3-270m")


@pytest.fixture
def rag_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("RAG_HOME", str(home))
    for var in ("RAG_INDEX", "RAG_EMBED_BACKEND", "RAG_CONFIG", "RAG_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def hash_settings(rag_home: Path):
    from rag_cli.config import load_settings

    return load_settings(embed_backend="hash", index="t", index_checkpoint_seconds=1000.0)


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 180,
    cwd: Path | None = None,
    process: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``rag ARGS`` with ``env`` added to the environment, ``input`` on stdin (else none), in ``cwd`` (the repo):
    through the CLI's entry point in this process (:func:`run_cli_here`), or with ``process=True`` as the real
    command in a fresh interpreter (startup, imports, signals, exit, what a shell sees), bounded by ``timeout``.
    A run that loads plugins or sets the interpreter's own variables (``PYTHON*``) is always a process: a plugin
    is imported once per process, and those variables act at startup."""
    if not process and not any(k == "RAG_PLUGINS" or k.startswith("PYTHON") for k in env or {}):
        return run_cli_here(*args, env=env, input=input, cwd=cwd)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [*RAG, *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
        cwd=cwd or ROOT,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def run_cli_here(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point (``rag_cli.cli.app.main``) in this process, ``env`` set, ``input`` as stdin, stdout
    and stderr captured (the environment, working directory, output streams and SIGTERM handler restored
    after): the same result as the real command without starting an interpreter and loading its models."""
    import contextlib
    import importlib
    import io
    import signal

    from rag_cli.cli import output

    cli_app = importlib.import_module("rag_cli.cli.app")
    # a library that binds sys.stderr at import (mcp: stdio_client's errlog=sys.stderr default) is imported
    # before the streams are redirected, or it would keep this run's capture for the rest of the session
    with contextlib.suppress(ImportError):
        importlib.import_module("mcp")

    saved_environ, saved_env, saved_cwd = dict(os.environ), output.get_env(), os.getcwd()
    saved_sigterm = signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env or {})
    output.set_env(output.Env(stdout=out, stderr=err, stdin=io.StringIO(input or "")))
    os.chdir(cwd or ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = cli_app.main(list(args))
            except SystemExit as exc:  # what a process would exit with
                rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        output.set_env(saved_env)
        os.environ.clear()
        os.environ.update(saved_environ)
        signal.signal(signal.SIGTERM, saved_sigterm)
    return subprocess.CompletedProcess(["rag", *args], rc, out.getvalue(), err.getvalue())


IMPORTTIME = {"PYTHONPROFILEIMPORTTIME": "1"}  # env for run_cli: stderr lists every import (-X importtime)


def imported_modules(stderr: str) -> set[str]:
    """Top-level modules a run with ``IMPORTTIME`` imported, read from its stderr."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="session")
def sample_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RAG_HOME with sample_corpus indexed by the real packaged model (built once per test session)."""
    import json

    home = tmp_path_factory.mktemp("samplehome")
    out = run_cli("index", str(SAMPLE), "--json", env={"RAG_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["skipped"] == []
    return home


def run_pty(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cols: int = 100,
    rows: int = 40,
    keys: list[tuple[float | bytes, bytes]] | None = None,
) -> tuple[int, bytes]:
    """Run the real CLI with stdin, stdout and stderr on a pseudo-terminal; returns (exit code, screen
    bytes). ``keys``: (delay in seconds, or bytes to wait for on the screen since the previous key;
    bytes to type), in order. Reads are bounded by ``timeout``."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TERM": "xterm-256color",
        "COLUMNS": str(cols),
        "LINES": str(rows),
        "PROMPT_TOOLKIT_NO_CPR": "1",
        **(env or {}),
    }

    def controlling_tty() -> None:  # a session of its own with the pty as its terminal: Ctrl-C is SIGINT
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [*RAG, *args], stdin=slave, stdout=slave, stderr=slave, env=full_env, cwd=ROOT, preexec_fn=controlling_tty
    )
    os.close(slave)
    out = bytearray()
    pending = list(keys or [])
    deadline = time.monotonic() + timeout
    mark = 0  # screen bytes seen when the previous key was typed

    def due() -> bool:
        when = pending[0][0]
        if isinstance(when, bytes):
            return when in bytes(out[mark:])
        return time.monotonic() >= last + when

    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if pending and due():
                os.write(master, pending.pop(0)[1])
                last, mark = time.monotonic(), len(out)
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal is gone
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None and not pending:
                break
        else:
            proc.kill()
            raise AssertionError(f"{args} did not finish within {timeout} s; screen: {bytes(out[-2000:])!r}")
        return proc.wait(timeout=10), bytes(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
