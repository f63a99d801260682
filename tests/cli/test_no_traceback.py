"""Issue 21: no traceback reaches a terminal, for any command. Every command is run with the mistakes
users make (missing or damaged index, bad options, missing files, bad config) and must answer with its
documented exit code and one clean line (or click's usage block), never a Python traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_cli, write

# (arguments, exit code); "{d}" is a folder of documents, "{nb}" a folder that is not a BEIR set
NO_INDEX = [
    (["index"], 2),
    (["index", "/nonexistent/docs"], 2),
    (["index", "{d}", "--chunk-tokens", "1"], 2),
    (["index", "{d}", "--index", "../escape"], 2),
    (["search", "apples"], 3),
    (["search", "apples", "-k", "0"], 2),
    (["ask", "apples"], 3),
    (["ask", "--no-index", "apples"], 2),
    (["ask", "apples", "--context", "/nonexistent/file"], 2),
    (["ask", "apples", "--llm", "bogus"], 2),
    (["ask", "apples", "--fallback", "none,bogus"], 2),
    (["ask", "apples", "--model", "/nonexistent.gguf"], 2),
    (["chat"], 3),
    (["chat", "--llm", "bogus"], 2),
    (["serve", "--index", "nope"], 3),
    (["serve", "--port", "70000"], 2),
    (["mcp", "--index", "nope"], 3),
    (["eval", "/nonexistent"], 2),
    (["eval", "{nb}"], 2),
    (["indexes", "info", "nope"], 3),
    (["get", "{d}/a.md"], 3),
    (["indexes", "drop", "nope", "--yes"], 3),
    (["--bogus"], 2),
    (["nosuchcommand"], 2),
]

WITH_INDEX = [
    (["search", "apples", "--mode", "bogus"], 2),
    (["search", "-"], 2),
    (["get", "/nowhere/at/all.md"], 2),
    (["get", "{d}/a.md:5-1"], 2),
    (["ask", "apples", "--llm", "openai", "--base-url", "notaurl"], 2),
    (["ask", "apples", "--model", "/tmp"], 2),
]


def _clean(out: str, err: str) -> None:
    assert "Traceback" not in out + err and 'File "' not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "an error must say something"
    assert lines[-1].startswith(("rag: ", "Error: ")), err


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("notb")
    write(root / "d" / "a.md", "# Alpha\n\nApples are red and crisp.\n")
    (root / "nb").mkdir()
    return {"d": str(root / "d"), "nb": str(root / "nb"), "root": str(root)}


def _args(args: list[str], tree: dict[str, str]) -> list[str]:
    return [a.format(**tree) for a in args]


@pytest.mark.parametrize(("args", "code"), NO_INDEX, ids=[" ".join(a) for a, _ in NO_INDEX])
def test_user_mistakes_without_an_index(args: list[str], code: int, tree: dict[str, str], tmp_path: Path) -> None:
    out = run_cli(*_args(args, tree), env={"RAG_HOME": str(tmp_path / "home"), "RAG_EMBED_BACKEND": "hash"})
    assert out.returncode == code, out.stderr
    _clean(out.stdout, out.stderr)


@pytest.fixture(scope="module")
def indexed(tree: dict[str, str]) -> str:
    home = str(Path(tree["root"]) / "home")
    out = run_cli("index", tree["d"], env={"RAG_HOME": home, "RAG_EMBED_BACKEND": "hash"})
    assert out.returncode == 0, out.stderr
    return home


@pytest.mark.parametrize(("args", "code"), WITH_INDEX, ids=[" ".join(a) for a, _ in WITH_INDEX])
def test_user_mistakes_with_an_index(args: list[str], code: int, tree: dict[str, str], indexed: str) -> None:
    out = run_cli(*_args(args, tree), env={"RAG_HOME": indexed, "RAG_EMBED_BACKEND": "hash"}, input="")
    assert out.returncode == code, out.stderr
    _clean(out.stdout, out.stderr)


def test_bad_config_and_damaged_index(tree: dict[str, str], tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "x = [\n")
    out = run_cli("search", "apples", env={"RAG_HOME": str(tmp_path / "h"), "RAG_CONFIG": str(bad)})
    assert out.returncode == 2
    _clean(out.stdout, out.stderr)
    home = tmp_path / "home"
    env = {"RAG_HOME": str(home), "RAG_EMBED_BACKEND": "hash"}
    assert run_cli("index", tree["d"], env=env).returncode == 0
    (home / "indexes" / "default" / "CURRENT").write_text("garbage\n")
    for args in (["search", "apples"], ["ask", "apples", "--llm", "none"], ["indexes", "info", "default"]):
        out = run_cli(*args, env=env)
        assert out.returncode == 4, (args, out.stderr)
        _clean(out.stdout, out.stderr)


@pytest.mark.slow
def test_a_missing_embedding_model(tree: dict[str, str], tmp_path: Path) -> None:
    out = run_cli("index", tree["d"], "--embed-model", "/nonexistent/model", env={"RAG_HOME": str(tmp_path / "h")})
    assert out.returncode == 1 and "embedding model" in out.stderr and "/nonexistent/model" in out.stderr
    _clean(out.stdout, out.stderr)


def test_a_bug_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """An exception rag did not foresee (a plugin's bug here) is one line naming it; RAG_DEBUG=1 shows
    the traceback for the report."""
    write(
        tmp_path / "plug" / "buggy_plugin.py",
        "from rag_cli.llm.base import register\n"
        "def boom(settings, services):\n    raise ZeroDivisionError('plugin bug')\n"
        "register('buggy', boom)\n",
    )
    home = tmp_path / "home"
    write(tmp_path / "d" / "a.md", "# Alpha\n\nApples are red and crisp.\n")
    env = {
        "RAG_HOME": str(home),
        "RAG_EMBED_BACKEND": "hash",
        "RAG_PLUGINS": "buggy_plugin",
        "PYTHONPATH": f"{tmp_path / 'plug'}:{Path(__file__).resolve().parents[2]}",
    }
    assert run_cli("index", str(tmp_path / "d"), env=env).returncode == 0
    out = run_cli("ask", "apples red crisp", "--llm", "buggy", "--fallback", "", "--mode", "bm25", env=env)
    assert out.returncode == 1, out.stderr
    _clean(out.stdout, out.stderr)
    assert "internal error: ZeroDivisionError: plugin bug" in out.stderr
    out = run_cli(
        "ask", "apples red crisp", "--llm", "buggy", "--fallback", "", "--mode", "bm25", env={**env, "RAG_DEBUG": "1"}
    )
    assert out.returncode == 1 and "Traceback" in out.stderr and "ZeroDivisionError" in out.stderr


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (["index"], "rag index [OPTIONS] PATH..."),
        (["search"], "rag search [OPTIONS] QUERY"),
        (["ask"], "rag ask [OPTIONS] [QUESTION]"),
        (["eval"], "rag eval [OPTIONS] DATASET"),
        (["indexes", "drop"], "rag indexes drop [OPTIONS] NAME"),
    ],
)
def test_usage_lines_name_arguments_plainly(command: list[str], usage: str) -> None:
    """Issue 21, 10: usage lines showed `{paths}...`."""
    out = run_cli(*command, "--help")
    assert out.returncode == 0 and f"Usage: {usage}\n" in out.stdout and "{" not in out.stdout.split("\n")[0]


def test_demo_says_where_its_index_is() -> None:
    """Issue 21, 9: `make demo` keeps its index in ./.rag-home and its last line says how to use it."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}  # under `make test`
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        env=env,
    )
    last = out.stdout.strip().splitlines()[-1]
    assert "RAG_HOME=" in last and "--index demo" in last
