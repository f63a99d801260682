"""kill -9 during indexing, and concurrent writers: the index is never corrupted."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, write

pytestmark = pytest.mark.slow

SLOW = {
    "RAG_EMBED_BACKEND": "slow-hash",
    "RAG_PLUGINS": "tests.plugins.slow_embed",
    "RAG_TEST_EMBED_DELAY": "0.3",
    "RAG_INDEX_CHECKPOINT_SECONDS": "0.2",
    "RAG_INDEX_QUEUE_FILES": "4",
}
FAST = {"RAG_TEST_EMBED_DELAY": "0.01"}  # the same embedder at full speed, for the runs nothing interrupts


def make_corpus(root: Path, n: int, seed: int, variant: int = 0) -> None:
    rng = random.Random(seed)
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "theta",
        "kappa",
        "lambda",
        "sigma",
        "omega",
        "river",
        "stone",
        "cloud",
    ]
    for i in range(n):
        body = "\n\n".join(" ".join(rng.choice(words) for _ in range(40)) + "." for _ in range(3))
        write(root / f"d{i // 50}/f{i:04d}.md", f"# File {i} v{variant}\n\n{body}\n")


def index_proc(docs: Path, home: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `rag index` in the background; its stderr goes to a file next to ``home`` (see ``errors``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_HOME": str(home), **SLOW, **(env or {})}
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"stderr-{time.monotonic_ns()}.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag_cli", "index", str(docs), *extra],
            env=env,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    proc.stderr_path = err.name  # type: ignore[attr-defined]
    return proc


def errors(proc: subprocess.Popen[str]) -> str:
    return Path(proc.stderr_path).read_text()  # type: ignore[attr-defined]


def snapshot(home: Path) -> list[tuple[str, int, str]]:
    """(path, ordinal, text) of every chunk in the live generation, via a reader."""
    code = (
        "import json,sys; from rag_cli.store.local.reader import IndexReader; from pathlib import Path;"
        "r = IndexReader(Path(sys.argv[1])); r.refresh();"
        "rows = r._conn().execute('SELECT f.path, c.ordinal, c.text FROM chunks c JOIN files f ON f.id=c.file_id').fetchall();"
        "assert r.index.ntotal == len(rows), (r.index.ntotal, len(rows));"
        "print(json.dumps(sorted(rows)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(home / "indexes" / "default")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [tuple(r) for r in json.loads(out.stdout)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_random_points(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    docs, home = tmp_path / "docs", tmp_path / "home"
    make_corpus(docs, 60, seed)
    first = index_proc(docs, home, env=FAST)
    assert first.wait(120) == 0, errors(first)
    base = snapshot(home)
    assert base

    # change the corpus: modify some, delete some, add some
    make_corpus(docs, 40, seed + 100, variant=1)
    for p in sorted(docs.rglob("f005*.md")):
        p.unlink()
    write(docs / "extra/new.md", "# New\n\nA brand new document about omega rivers.\n")

    killed_mid_run = 0
    for attempt in range(3):
        proc = index_proc(docs, home)
        time.sleep(rng.uniform(0.4, 1.2))
        killed_mid_run += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # the index is always readable and consistent: FAISS count == chunk rows
        snap = snapshot(home)
        assert snap, f"empty index after kill {attempt}"
        search = run_cli("search", "omega river", "--mode", "bm25", "--json", env={"RAG_HOME": str(home), **SLOW})
        assert search.returncode == 0, search.stderr
        assert json.loads(search.stdout)["hits"]

    assert killed_mid_run >= 2, "the kills should land while indexing runs"
    done = index_proc(docs, home, env=FAST)
    assert done.wait(180) == 0
    final = snapshot(home)

    clean_home = tmp_path / "clean"
    clean = index_proc(docs, clean_home, env=FAST)
    assert clean.wait(180) == 0
    assert final == snapshot(clean_home)
    # nothing left behind: one data folder, at most two vector generations, no temp files
    index_dir = home / "indexes" / "default"
    data_dirs = list(index_dir.glob("data-*"))
    assert len(data_dirs) == 1
    assert len(list(data_dirs[0].glob("vectors-*.faiss"))) <= 2
    assert not list(data_dirs[0].glob(".*.tmp"))


def test_kill_9_during_rebuild_keeps_old_index(tmp_path: Path) -> None:
    docs, home = tmp_path / "docs", tmp_path / "home"
    make_corpus(docs, 40, 7)
    assert index_proc(docs, home, env=FAST).wait(120) == 0
    before = snapshot(home)
    proc = index_proc(docs, home, "--rebuild")
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert snapshot(home) == before
    assert index_proc(docs, home, "--rebuild", env=FAST).wait(120) == 0
    assert snapshot(home) == before
    assert len(list((home / "indexes" / "default").glob("data-*"))) == 1


def test_concurrent_writers(tmp_path: Path) -> None:
    docs, home = tmp_path / "docs", tmp_path / "home"
    make_corpus(docs, 40, 9)
    a = index_proc(docs, home)
    time.sleep(0.8)
    b = index_proc(docs, home, "--wait", "0")
    assert b.wait(60) == 5
    assert "being written by another rag process" in errors(b)
    c = index_proc(docs, home, "--wait", "120")
    assert a.wait(120) == 0
    assert c.wait(120) == 0
    out = json.loads(run_cli("index", str(docs), "--json", env={"RAG_HOME": str(home), **SLOW}).stdout)
    assert out["files"]["unchanged"] == 40
    snapshot(home)


def test_reader_during_writes_sees_whole_generations(tmp_path: Path) -> None:
    """A reader searching while another process commits generation after generation (changed, new and
    deleted files) always sees one generation: inside a snapshot the FAISS ids equal the chunk ids in
    SQLite, and every dense score is the dot product of the query with the vector of that very text."""
    import faiss
    import numpy as np

    from rag_cli.embed.hashing import HashEmbedder
    from rag_cli.store.local.reader import IndexReader
    from rag_cli.types import Chunk

    docs, home = tmp_path / "docs", tmp_path / "home"
    make_corpus(docs, 40, seed=5)
    env = {**SLOW, "RAG_HOME": str(home), "RAG_TEST_EMBED_DELAY": "0.05", "RAG_INDEX_CHECKPOINT_SECONDS": "0"}
    assert run_cli("index", str(docs), env=env).returncode == 0
    reader = IndexReader(home / "indexes" / "default")
    emb = HashEmbedder()
    q = emb.embed_query("alpha river stone")
    gens: set[int] = set()
    checks = 0
    for variant in range(1, 5):
        make_corpus(docs, 40 + 10 * variant, seed=5 + variant, variant=variant)
        for old in sorted(docs.rglob("*.md"))[: 3 * variant]:
            old.unlink()  # deletions too
        proc = index_proc(docs, home)
        while proc.poll() is None or checks < 20 * variant:
            reader.maybe_refresh(0.0)
            with reader.snapshot():
                index = reader._local.pinned
                time.sleep(0.03)  # a slow query: commits land while the snapshot is held
                conn = reader._conn()
                ids = {r[0] for r in conn.execute("SELECT id FROM chunks")}
                faiss_ids = set(faiss.vector_to_array(index.id_map).tolist())
                assert ids == faiss_ids, "vectors and rows of different generations"
                gens.add(int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]))
                hits = reader.hits(reader.dense(q, 5), "dense")
                for h in hits:
                    text = Chunk("", h.text, h.title, h.heading).embedding_text()
                    assert abs(float(np.dot(q, emb.embed([text])[0])) - h.score) < 1e-4
            checks += 1
        assert proc.wait(60) == 0, errors(proc)
    reader.close()
    assert len(gens) >= 4 and checks >= 80  # the reader really saw many generations go by
