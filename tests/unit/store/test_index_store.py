"""The index pipeline and store with the fast hash embedder: incremental updates, generations, lock."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rag_cli import runtime
from rag_cli.config import Settings, replace
from rag_cli.embed.base import create
from rag_cli.errors import IndexIncompatible, IndexLocked, IndexNotFound
from rag_cli.ingest.pipeline import IndexReport, index_paths
from rag_cli.store import layout
from rag_cli.store.local.lock import IndexLock
from rag_cli.store.local.reader import IndexReader, fts_query
from tests.conftest import write


def build(settings: Settings, *paths: Path, rebuild: bool = False) -> IndexReport:
    return runtime.run(index_paths(list(paths), settings, create(settings), rebuild=rebuild))


def corpus(root: Path) -> Path:
    write(root / "a.md", "# Alpha\n\nApples are red fruit.\n\n## More\n\nBananas are yellow.\n")
    write(root / "b.txt", "Cherries grow on trees.\n\nDates come from palms.\n")
    write(root / "sub/c.rst", "Cee\n===\n\nElderberries are dark purple.\n")
    return root


def chunk_rows(settings: Settings) -> list[tuple[str, int, str]]:
    reader = IndexReader(settings.index_dir)
    try:
        reader.refresh()
        conn = reader._conn()
        return sorted(conn.execute("SELECT f.path, c.ordinal, c.text FROM chunks c JOIN files f ON f.id = c.file_id"))
    finally:
        reader.close()


def search(settings: Settings, q: str, mode: str = "bm25") -> list[str]:
    reader = IndexReader(settings.index_dir)
    try:
        reader.refresh()
        if mode == "bm25":
            hits = reader.hits(reader.bm25(q, 5), "bm25")
        else:
            hits = reader.hits(reader.dense(create(settings).embed_query(q), 5), "dense")
        return [Path(h.path).name for h in hits if h.path]
    finally:
        reader.close()


def test_first_build_and_search(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    rep = build(hash_settings, root)
    assert (rep.files_seen, rep.files_indexed, rep.files_unchanged) == (3, 3, 0)
    assert rep.chunks_added == len(chunk_rows(hash_settings)) > 0
    assert search(hash_settings, "elderberries purple")[0] == "c.rst"
    assert search(hash_settings, "bananas yellow", mode="dense")[0] == "a.md"


def test_no_change_rerun_touches_nothing(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    build(hash_settings, root)
    before = chunk_rows(hash_settings)
    rep = build(hash_settings, root)
    assert (rep.files_indexed, rep.files_unchanged, rep.chunks_added, rep.chunks_removed) == (0, 3, 0, 0)
    assert chunk_rows(hash_settings) == before


def test_modify_add_delete_touch(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    build(hash_settings, root)
    write(root / "b.txt", "Figs are sweet.\n")  # modify
    write(root / "d.md", "# Dee\n\nGrapes make wine.\n")  # add
    (root / "sub/c.rst").unlink()  # delete
    a = root / "a.md"
    os.utime(a, (time.time() + 100, time.time() + 100))  # touch: same content, new mtime
    rep = build(hash_settings, root)
    assert rep.files_indexed == 2
    assert rep.files_removed == 1
    assert rep.files_unchanged == 1
    paths = {Path(p).name for p, _, _ in chunk_rows(hash_settings)}
    assert paths == {"a.md", "b.txt", "d.md"}
    assert search(hash_settings, "cherries") == []
    assert search(hash_settings, "figs sweet")[0] == "b.txt"
    # the touched file's new mtime was recorded, so the next run does not even hash it
    rep2 = build(hash_settings, root)
    assert rep2.files_unchanged == 3 and rep2.files_indexed == 0


def test_result_equals_clean_build(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    build(hash_settings, root)
    write(root / "a.md", "# Alpha\n\nApples are green now.\n")
    write(root / "e.txt", "Eggplants are vegetables.\n")
    build(hash_settings, root)
    incremental = [(Path(p).name, o, t) for p, o, t in chunk_rows(hash_settings)]
    clean = replace(hash_settings, index="clean")
    build(clean, root)
    assert incremental == [(Path(p).name, o, t) for p, o, t in chunk_rows(clean)]


def test_skips_are_reported_and_drop_old_chunks(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    write(root / "bin.txt", b"\x00\x01\x02\x03")
    write(root / "empty.md", "")
    write(root / "huge.txt", "word " * 300_000)
    write(root / "bad.pdf", b"%PDF-1.4 broken")
    write(root / "latin.txt", b"caf\xe9 \xff\xfe")
    settings = replace(hash_settings, index_max_file_mb=1.0)
    rep = build(settings, root)
    reasons = {Path(s["path"]).name: s["reason"] for s in rep.skipped}
    assert set(reasons) == {"bin.txt", "empty.md", "huge.txt", "bad.pdf"}
    assert "binary" in reasons["bin.txt"] and "empty" in reasons["empty.md"]
    assert "too large" in reasons["huge.txt"] and "malformed PDF" in reasons["bad.pdf"]
    # not UTF-8 is no longer a reason to lose a file (issue 19): decoded, and the user is told how
    assert [(Path(w["path"]).name, w["message"]) for w in rep.warnings] == [
        ("latin.txt", "not UTF-8: decoded as cp1252 (detected)")
    ]
    assert rep.files_indexed == 4
    # a file that was fine and turns binary leaves the index
    write(root / "b.txt", b"\x00\x00\x00")
    build(settings, root)
    assert "b.txt" not in {Path(p).name for p, _, _ in chunk_rows(settings)}


def test_unreadable_file_skipped(hash_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = corpus(tmp_path / "docs")
    real_open = os.open

    def guarded_open(path, *a, **kw):  # type: ignore[no-untyped-def]
        if str(path).endswith("b.txt"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **kw)

    monkeypatch.setattr(os, "open", guarded_open)
    rep = build(hash_settings, root)
    assert [(Path(s["path"]).name, s["reason"]) for s in rep.skipped] == [("b.txt", "unreadable: permission denied")]
    assert rep.files_indexed == 2


def test_ignore_rules(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    write(root / ".hidden/x.md", "# hidden\n\ntext\n")
    write(root / "node_modules/y.md", "# nm\n\ntext\n")
    write(root / ".venv/pyvenv.cfg", "home = /usr\n")
    write(root / "myenv/pyvenv.cfg", "home = /usr\n")
    write(root / "myenv/lib.py", "x = 1\n")
    write(root / ".gitignore", "ignored/\n*.log.md\n")
    write(root / "ignored/z.md", "# ig\n\ntext\n")
    write(root / "notes.log.md", "# log\n\ntext\n")
    write(root / "image.png", b"\x89PNG")
    rep = build(hash_settings, root)
    assert rep.files_seen == 3


def test_fingerprint_mismatch_needs_rebuild(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    build(hash_settings, root)
    other = replace(hash_settings, chunk_max_tokens=50)
    with pytest.raises(IndexIncompatible, match="--rebuild"):
        build(other, root)
    rep = build(other, root, rebuild=True)
    assert rep.files_indexed == 3
    assert len([d for d in hash_settings.index_dir.glob("data-*")]) == 1


def test_missing_index(hash_settings: Settings) -> None:
    with pytest.raises(IndexNotFound, match="rag index"):
        IndexReader(hash_settings.index_dir)


def test_lock_excludes_second_writer(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    build(hash_settings, root)
    settings = replace(hash_settings, index_lock_wait=0.2)
    with IndexLock(settings.index_dir / "lock"), pytest.raises(IndexLocked, match="another rag process"):
        build(settings, root)


def test_reader_follows_new_generation(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    build(hash_settings, root)
    reader = IndexReader(hash_settings.index_dir)
    reader.refresh()
    gen = reader.generation
    write(root / "new.md", "# N\n\nKiwis are fuzzy.\n")
    build(hash_settings, root)
    assert reader.refresh() is True and reader.generation > gen
    assert next(h.path for h in reader.hits(reader.bm25("kiwis", 3), "bm25")).endswith("new.md")
    # old generations are cleaned, keeping at most the previous one
    data = layout.require_data_dir(hash_settings.index_dir)
    assert len(list(data.glob("vectors-*.faiss"))) <= 2
    reader.close()


def test_fts_query_quotes_terms() -> None:
    assert fts_query('what is "BM25" AND k1?') == '"bm25" OR "k1"'
    assert fts_query("the") == '"the"'
    assert fts_query("!!!") == ""


def test_ivf_above_threshold_follows_adds_removes_and_shrinks(hash_settings: Settings, tmp_path: Path) -> None:
    """Past ``index_ann_threshold`` the vector file is IVF; updates and deletions keep it consistent with
    the chunks; searching it finds each document by its own words; shrinking goes back to exact flat."""
    from rag_cli.store.local import faiss_index

    settings = replace(hash_settings, index_ann_threshold=60, index_ann_nprobe=64)
    docs = tmp_path / "docs"
    words = ["amber", "basil", "cedar", "dune", "ember", "fjord", "garnet", "heron", "iris", "jade"]
    for i in range(80):
        write(docs / f"d{i:03d}.md", f"# Doc {i}\n\n{words[i % 10]} {words[(i * 3) % 10]} number{i}\n")

    def structure() -> tuple[bool, int]:
        reader = IndexReader(settings.index_dir)
        try:
            reader.refresh()
            return faiss_index.is_ivf(reader.index), reader.index.ntotal
        finally:
            reader.close()

    build(settings, docs)
    assert structure() == (True, 80)
    for i in (5, 42, 77):
        assert search(settings, f"{words[i % 10]} {words[(i * 3) % 10]} number{i}", "dense")[0].endswith(f"d{i:03d}.md")
    for i in range(0, 80, 2):  # 40 removed: above half the threshold, still IVF
        (docs / f"d{i:03d}.md").unlink()
    write(docs / "d001.md", "# Doc 1\n\nchanged words entirely\n")
    build(settings, docs)
    assert structure() == (True, 40)
    assert search(settings, "changed words entirely", "dense")[0].endswith("d001.md")
    for i in range(1, 80, 2)[:15]:
        (docs / f"d{i:03d}.md").unlink()
    build(settings, docs)
    assert structure() == (False, 25)  # under half the threshold: exact again


def test_ivf_trains_on_a_sample_read_from_the_vectors_table(
    hash_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big index is made IVF from the vectors table in batches, trained on a sample of its rows (the
    flat index in memory is let go first); the sample is exactly the rows asked for, and the index finds
    each document."""
    import sqlite3

    import numpy as np

    from rag_cli.store.local import faiss_index, writer
    from rag_cli.store.local.writer import IndexWriter

    monkeypatch.setattr(faiss_index, "train_size", lambda n: min(n, 48))  # fewer rows than vectors: a sample
    monkeypatch.setattr(writer, "TABLE_BATCH", 7)  # samples and batches across many reads
    settings = replace(hash_settings, index_ann_threshold=60, index_ann_nprobe=64)
    docs = tmp_path / "docs"
    for i in range(90):
        write(docs / f"d{i:03d}.md", f"# Doc {i}\n\nsample{i} token{i * 7} word{i % 5}\n")
    build(settings, docs)
    reader = IndexReader(settings.index_dir)
    try:
        reader.refresh()
        assert faiss_index.is_ivf(reader.index) and reader.index.ntotal == 90
    finally:
        reader.close()
    for i in (3, 47, 88):
        assert search(settings, f"sample{i} token{i * 7} word{i % 5}", "dense")[0] == f"d{i:03d}.md"
    w = IndexWriter.__new__(IndexWriter)  # only its table reading
    w.conn = sqlite3.connect(layout.require_data_dir(settings.index_dir) / layout.DB)
    w.dim = create(settings).dim
    try:
        all_ids = np.concatenate([ids for _, ids in w._table_batches()])
        rows = np.array([0, 6, 7, 9, 10, 13, 14, 89])
        picked = list(w._table_batches(rows))
        assert np.array_equal(np.concatenate([ids for _, ids in picked]), all_ids[rows])
        assert sum(len(m) for m, _ in picked) == 8 and picked[0][0].shape[1] == w.dim
    finally:
        w.conn.close()


def test_embed_parallel_keeps_row_order() -> None:
    """Split into concurrent calls, the vectors still line up with their texts."""
    import numpy as np

    from rag_cli.embed.hashing import HashEmbedder
    from rag_cli.ingest.vectors import embed_parallel

    class Parallel(HashEmbedder):
        parallel_calls = 3

        def __init__(self) -> None:
            super().__init__()
            self.calls: list[int] = []

        def embed(self, texts):  # type: ignore[no-untyped-def]
            self.calls.append(len(texts))
            return super().embed(texts)

    emb = Parallel()
    texts = [f"text {'word ' * (i % 17)} number {i}" for i in range(100)]
    got = runtime.run(embed_parallel(emb, texts), workers=3)
    assert sorted(emb.calls) == [33, 33, 34]
    assert np.allclose(got, HashEmbedder().embed(texts))


def test_unknown_words_checks_a_name_of_several_tokens_as_a_phrase(hash_settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root / "ide.md", "# Editors\n\nEclipse 3.0 on MacOSX works with Git over SSH. GitLab mirrors: example.com.\n")
    build(hash_settings, root)
    reader = IndexReader(hash_settings.index_dir)
    try:
        reader.refresh()
        # every token is somewhere, but "Git 3.0" and "GitLab.com" are written nowhere; "Eclipse 3.0" is
        assert reader.unknown_words(["Git", "3.0", "Eclipse 3.0", "Git 3.0", "GitLab.com", "Dependabot"]) == [
            "Git 3.0",
            "GitLab.com",
            "Dependabot",
        ]
    finally:
        reader.close()


def test_bm25_expansion_adds_the_weighted_score_of_its_words(hash_settings: Settings, tmp_path: Path) -> None:
    """Pseudo-relevance feedback's expanded query: BM25(query) + weight * BM25(words) for every chunk either
    matches (a chunk only the words match included), ranked and scored alike, from FTS5 and from memory."""
    build(hash_settings, corpus(tmp_path / "docs"))
    reader = IndexReader(hash_settings.index_dir, bm25_memory_max=1000)
    try:
        reader.refresh()
        cols = (2.0, 2.0, 1.0)
        for memory in (False, True):
            if memory:
                assert reader.load_bm25_memory(cols) is not None
            base = dict(reader.bm25("apples red", 100, cols))
            extra = dict(reader.bm25("bananas cherries", 100, cols))
            want = {i: base.get(i, 0.0) + 0.5 * extra.get(i, 0.0) for i in base.keys() | extra.keys()}
            got = reader.bm25("apples red", 100, cols, None, (["bananas", "cherries"], 0.5))
            assert set(extra) - set(base) and dict(got) == pytest.approx(want, rel=1e-12), memory
            assert [s for _, s in got] == pytest.approx(sorted(want.values(), reverse=True), rel=1e-12)  # best first
            scored = reader.scores_for(sorted(want), None, "apples red", cols, (["bananas", "cherries"], 0.5))
            assert {i: s["bm25"] for i, s in scored.items()} == pytest.approx(want, rel=1e-12), memory
            assert reader.bm25("apples red", 100, cols, None, (["bananas"], 0.0)) == reader.bm25(
                "apples red", 100, cols
            )
    finally:
        reader.close()


def test_an_interrupt_while_the_writer_opens_leaves_nothing_behind(
    hash_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that lands while a --rebuild's writer is being made (its new data folder created on the pool):
    the writer finishes opening, then is undone at once; no data folder but the live one is left."""
    import asyncio
    import threading

    from rag_cli.store import base as store_base

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nApples are red and sweet.\n")
    build(hash_settings, docs)
    live = {p.name for p in hash_settings.index_dir.glob("data-*")}
    opening = threading.Event()
    real = store_base.open_writer

    def slow_writer(*args: object, **kw: object) -> object:
        writer = real(*args, **kw)  # type: ignore[arg-type]
        open_ = writer.open

        def opening_slowly() -> object:
            opening.set()
            time.sleep(0.5)
            return open_()

        writer.open = opening_slowly  # type: ignore[method-assign]
        return writer

    monkeypatch.setattr(store_base, "open_writer", slow_writer)

    async def go() -> None:
        task = asyncio.ensure_future(index_paths([docs], hash_settings, create(hash_settings), rebuild=True))
        for _ in range(1000):  # bounded: 10 s at most
            if opening.is_set():
                break
            await asyncio.sleep(0.01)
        assert opening.is_set(), "the index run never opened its writer"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    runtime.run(go())
    deadline = time.monotonic() + 10
    while runtime.busy() and time.monotonic() < deadline:  # whatever still runs on the pool has finished
        time.sleep(0.05)
    assert {p.name for p in hash_settings.index_dir.glob("data-*")} == live


def test_the_embedder_cache_tells_apart_every_setting_it_is_built_from() -> None:
    """One process asking for documents through torch after ONNX Runtime gets what it asked for (found when the
    CLI tests began to run in one process: the second index was embedded by the first one's backend)."""
    from dataclasses import replace

    from rag_cli.config import Settings
    from rag_cli.embed import base as embed_base

    s = Settings(embed_backend="hash")
    first = embed_base.create(s)
    assert embed_base.create(replace(s)) is first  # the same settings: loaded once
    for change in ({"embed_doc_backend": "torch"}, {"embed_query_backend": "onnx"}, {"embed_query_cache": 0}):
        assert embed_base.create(replace(s, **change)) is not first, change


def test_the_writer_opens_commits_and_aborts_explicitly(hash_settings: Settings, tmp_path: Path) -> None:
    """The writer's run is open(), the writes, then commit() or abort(), each ending it (lock released)."""
    import numpy as np

    from rag_cli.store import base as store_base
    from rag_cli.types import Chunk

    def build(commit: bool) -> None:
        w = store_base.open_writer(hash_settings, {"model": "hash"}, dim=4)
        assert w.open() is w
        vec = np.ones((1, 4), dtype="float32") / 2
        w.add_file("a.md", 5, 1, "d1", "markdown", [Chunk(path="a.md", text="hello")], vec)
        w.commit() if commit else w.abort()

    build(commit=False)  # a first build aborted leaves no index behind
    assert not store_base.exists(hash_settings) and layout.current_data_dir(hash_settings.index_dir) is None
    build(commit=True)  # the lock the aborted run held is free again; a commit publishes the index
    assert store_base.exists(hash_settings)
    reader = IndexReader(hash_settings.index_dir)
    try:
        assert reader.stats()["chunks"] == 1
    finally:
        reader.close()
