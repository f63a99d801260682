"""`rag index --watch` (issue 19): the real CLI watching a folder while files are created, edited,
renamed and deleted; search converges within a bounded time; editors' temporary files start no batch;
Ctrl-C stops cleanly; kill -9 while watching leaves a usable index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag_cli.ingest.watch import is_temporary
from tests.conftest import ROOT, run_cli, write

pytestmark = pytest.mark.slow
CONVERGE = 30.0  # seconds a change may take to reach search (debounce 0.2 s; generous for a loaded machine)


def eventually(check: Callable[[], bool], what: str, timeout: float = CONVERGE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


class Watcher:
    def __init__(self, docs: Path, home: Path) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "RAG_HOME": str(home),
            "RAG_EMBED_BACKEND": "hash",
            "RAG_INDEX_WATCH_DEBOUNCE_MS": "200",
        }
        self.err_path = home.parent / f"watch-{time.monotonic_ns()}.err"
        self.out_path = home.parent / f"watch-{time.monotonic_ns()}.out"
        with open(self.err_path, "w") as err, open(self.out_path, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rag_cli", "index", str(docs), "--watch", "--json"],
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        eventually(lambda: "watching" in self.err(), "the watcher starts")

    def err(self) -> str:
        return self.err_path.read_text()

    def batches(self) -> list[dict]:
        lines = [json.loads(x) for x in self.out_path.read_text().splitlines() if x.strip()]
        return [x for x in lines if x.get("event") == "batch"]

    def files(self, query: str) -> list[str]:
        out = run_cli("search", query, "--mode", "bm25", "--files", "-k", "20", env=self.env)
        assert out.returncode in (0, 3), out.stderr
        return sorted(Path(p).name for p in out.stdout.split())


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[tuple[Path, Watcher]]:
    docs = tmp_path / "docs"
    write(docs / "first.md", "# First\n\nOtters hold hands while sleeping.\n")
    w = Watcher(docs, tmp_path / "home")
    yield docs, w
    if w.proc.poll() is None:
        w.proc.kill()
        w.proc.wait(10)


def test_search_follows_create_edit_rename_delete(watching: tuple[Path, Watcher]) -> None:
    docs, w = watching
    assert w.files("otters") == ["first.md"]
    write(docs / "sub" / "new.md", "# New\n\nCapybaras enjoy warm baths.\n")
    eventually(lambda: w.files("capybaras") == ["new.md"], "a created file is found")
    (docs / "sub" / "new.md").write_text("# New\n\nAxolotls regrow their limbs.\n")
    eventually(
        lambda: w.files("axolotls") == ["new.md"] and w.files("capybaras") == [], "an edit replaces the old text"
    )
    (docs / "sub" / "new.md").rename(docs / "renamed.md")
    eventually(lambda: w.files("axolotls") == ["renamed.md"], "a renamed file is found under its new name only")
    renamed = [b for b in w.batches() if any(p.endswith("renamed.md") for p in b["changed"])][-1]
    assert renamed["chunks"]["embedded"] == 0  # the moved content reused its stored vectors
    (docs / "first.md").unlink()
    eventually(lambda: w.files("otters") == [], "a deleted file leaves the index")
    # editors' temporary files start no batch
    before = len(w.batches())
    for name in (".renamed.md.swp", "renamed.md~", ".#renamed.md", "4913"):
        write(docs / name, "Narwhals swap files.\n")
    time.sleep(1.5)
    assert len(w.batches()) == before and w.files("narwhals") == []
    gens = [b["generation"] for b in w.batches()]
    assert gens == sorted(gens) and len(set(gens)) == len(gens)  # each batch one committed generation
    w.proc.send_signal(signal.SIGINT)
    assert w.proc.wait(20) == 0
    assert "stopped watching" in w.err() and "Traceback" not in w.err()


def test_kill_9_while_watching_leaves_a_usable_index(watching: tuple[Path, Watcher], tmp_path: Path) -> None:
    docs, w = watching
    for i in range(40):  # a stream of changes; the kill lands somewhere in their batches
        write(docs / f"f{i}.md", f"# F{i}\n\nPelican number {i} dives for fish.\n")
        time.sleep(0.02)
    eventually(lambda: len(w.batches()) >= 1, "a batch ran")
    w.proc.kill()
    w.proc.wait(10)
    out = run_cli("search", "pelican", "--mode", "bm25", "--json", env=w.env)
    assert out.returncode == 0, out.stderr
    done = run_cli("index", str(docs), "--json", env=w.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"]["seen"] == 41
    assert len(w.files("pelican")) == 20  # -k 20 of the 40: all indexed


def test_deleting_the_watched_folder_removes_its_files_and_says_so(watching: tuple[Path, Watcher]) -> None:
    """Issue 29, item 15: the run used to exit with one line and leave the deleted folder's files searchable."""
    import shutil

    docs, w = watching
    assert w.files("otters") == ["first.md"]
    shutil.rmtree(docs)
    assert w.proc.wait(CONVERGE) == 2
    assert w.files("otters") == []
    err = w.err().strip().splitlines()
    assert "was deleted; its files left the index" in err[-1] and "Traceback" not in w.err()


@pytest.mark.parametrize(
    ("name", "temporary"),
    [
        ("notes.md.swp", True),
        ("notes.md~", True),
        (".#notes.md", True),
        ("#notes.md#", True),
        ("4913", True),
        ("report.pdf.part", True),
        ("notes.md", False),
        ("draft.txt", False),
        ("temp-notes.md", False),
    ],
)
def test_temporary_names(name: str, temporary: bool) -> None:
    assert is_temporary(f"/docs/{name}") is temporary
