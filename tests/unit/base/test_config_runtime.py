from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag_cli import runtime
from rag_cli.config import load_settings
from rag_cli.errors import ConfigError
from tests.conftest import ROOT, write


def test_precedence_flag_env_file_default(rag_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write(tmp_path / "rag.toml", 'index = "fromfile"\n[retrieve]\nk = 7\ntimeout = 3.5\n[chunk]\nmax_tokens = 120\n')
    s = load_settings()
    assert (s.index, s.retrieve_k, s.retrieve_timeout, s.chunk_max_tokens) == ("fromfile", 7, 3.5, 120)
    monkeypatch.setenv("RAG_INDEX", "fromenv")
    monkeypatch.setenv("RAG_RETRIEVE_K", "9")
    s = load_settings()
    assert (s.index, s.retrieve_k) == ("fromenv", 9)
    s = load_settings(index="fromflag", retrieve_k=None)
    assert (s.index, s.retrieve_k) == ("fromflag", 9)
    assert load_settings().retrieve_mode == "hybrid"


def test_config_errors(rag_home: Path, tmp_path: Path) -> None:
    write(tmp_path / "bad.toml", "index = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(tmp_path / "bad.toml")
    write(tmp_path / "unk.toml", "[retrieve]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(tmp_path / "unk.toml")
    write(tmp_path / "type.toml", '[retrieve]\nk = "many"\n')
    with pytest.raises(ConfigError, match="retrieve_k"):
        load_settings(tmp_path / "type.toml")


def test_pool_counts_active_and_queued() -> None:
    pool = runtime.BoundedPool(1)
    gate = threading.Event()
    f1 = pool.submit(gate.wait, 5)
    f2 = pool.submit(lambda: 1)
    time.sleep(0.05)
    assert (pool.active, pool.queued) == (1, 1)
    gate.set()
    assert f2.result(5) == 1 and f1.result(5)
    time.sleep(0.01)
    assert (pool.active, pool.queued, pool.completed) == (0, 0, 2)
    pool.shutdown()


def test_a_dropped_pool_is_counted_while_its_job_runs_then_forgotten() -> None:
    release = threading.Event()
    started = threading.Event()

    def job() -> None:
        started.set()
        release.wait(10)

    try:
        runtime.configure(1)
        fut = runtime.pool().submit(job)
        assert started.wait(10)
        runtime.drop_pool()  # an interruption: the running job keeps its thread
        assert runtime.busy() == 1
        release.set()
        fut.result(10)
        assert runtime.busy() == 0
        for _ in range(3):  # pools dropped with nothing running are not kept
            runtime.pool()
            runtime.drop_pool()
        assert len(runtime._dropped) <= 1  # the last one, until the next drop or count
        assert runtime.busy() == 0 and runtime._dropped == []
    finally:
        release.set()
        runtime.configure()


def test_run_blocking_keeps_loop_free() -> None:
    async def main() -> float:
        runtime.loop_lag.reset()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        await runtime.run_blocking(time.sleep, 0.3)
        t.cancel()
        return ticks

    ticks = runtime.run(main(), workers=2)
    assert ticks >= 10  # the loop kept ticking while the pool slept


def test_cli_import_is_light() -> None:
    """Building every command's --help must not import heavy libraries (pydantic: typer 0.29+ pulls it in)."""
    code = (
        "import sys, io; from rag_cli.cli.app import main; sys.stdout = io.StringIO(); "
        "[main([c, '--help']) for c in ('index', 'search', 'ask', 'chat', 'serve', 'eval')]; "
        "sys.stdout = sys.__stdout__; "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'faiss', 'llama_cpp', 'onnxruntime', 'transformers', "
        "'numpy', 'aiohttp', 'prometheus_client', 'pydantic') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_readme_config_examples_load(tmp_path: Path) -> None:
    """Every ```toml block of the README and docs/ is a valid config (the docs cannot drift from the settings)."""
    import re

    from rag_cli.config import load_settings

    root = Path(__file__).resolve().parents[3]
    readme = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        f = tmp_path / f"ex{i}.toml"
        f.write_text(block)
        load_settings(config=f)
    f = tmp_path / "named.toml"
    f.write_text('[index]\nname = "books"\nfile_timeout = 3\n')
    s = load_settings(config=f)
    assert s.index == "books" and s.index_file_timeout == 3.0


def test_modules_keep_to_their_layers() -> None:
    """scripts/check_layers.py (make lint): no import from a layer above, sideways, or of a private name."""
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "scripts" / "check_layers.py"
    spec = importlib.util.spec_from_file_location("check_layers", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.violations() == []


def test_the_layer_check_finds_what_breaks_the_layers(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "check_layers", Path(__file__).resolve().parents[3] / "scripts" / "check_layers.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pkg = tmp_path / "rag_cli"
    for name, body in {
        "store/layout.py": "from ..cli.output import clean\n",
        "llm/openai.py": "from ..retrieve.remote import backoff\n",
        "pipeline/verify.py": "from .prompting import _CITE\n",
        "text.py": "import os\n",
        "retrieve/client.py": "def f():\n    from ..pipeline.answer import Event\n",
    }.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(body)
    found = "\n".join(mod.violations(pkg))
    assert "store/layout.py:1: imports cli.output from a layer above" in found
    assert "llm/openai.py:1: imports retrieve.remote sideways" in found
    assert "pipeline/verify.py:1: imports private _CITE" in found
    assert "retrieve/client.py:2: imports pipeline.answer from a layer above" in found  # a lazy import counts too
    assert "text.py" not in found


def test_the_import_linter_contract_breaks_on_a_wrong_import(tmp_path: Path) -> None:
    """pyproject's import-linter layers contract (make lint), run on a small tree of the same packages: kept for
    downward imports, broken by an upward one (store -> cli) and a sideways one (llm -> retrieve)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    (tmp_path / "pyproject.toml").write_text((root / "pyproject.toml").read_text())
    pkg = tmp_path / "rag_cli"
    import re
    import tomllib

    contract = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    units = [m.split(".", 1)[1] for layer in contract["layers"] for m in re.split(r"\s*[|:]\s*", layer)]
    assert {"cli", "pipeline", "retrieve", "store", "runtime", "text"} <= set(units)
    for unit in (u for u in units if u != "__main__"):
        (pkg / unit).mkdir(parents=True)
        (pkg / unit / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("from . import cli\n")
    (pkg / "cli" / "ask.py").write_text("from ..pipeline import answer\nfrom ..text import x\n")
    lint = [str(Path(sys.executable).parent / "lint-imports"), "--no-logo", "--no-cache"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    kept = run()
    assert kept.returncode == 0, kept.stdout + kept.stderr
    (pkg / "store" / "layout.py").write_text("from ..cli import ask\n")
    (pkg / "llm" / "openai.py").write_text("from ..retrieve import remote\n")
    broken = run()
    assert broken.returncode == 1
    assert "rag_cli.store.layout -> rag_cli.cli" in broken.stdout
    assert "rag_cli.llm.openai -> rag_cli.retrieve" in broken.stdout
