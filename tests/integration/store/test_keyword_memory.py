"""BM25 from memory (store/local/bm25_memory.py) against the FTS5 path (FTS5's bm25() rescaled to Lucene's idf) on real
indexes: the same chunks in the same order with the same scores to rounding, and both against a plain reference."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest

from rag_cli import runtime
from rag_cli.config import Settings
from rag_cli.embed.base import create
from rag_cli.ingest.pipeline import index_paths
from rag_cli.store.local import bm25_memory as keyword
from rag_cli.store.local.reader import IndexReader
from tests.conftest import SAMPLE, write

WEIGHTS = (2.0, 2.0, 1.0)


def build(settings: Settings, root: Path, *, rebuild: bool = False) -> None:
    runtime.run(index_paths([root], settings, create(settings), rebuild=rebuild))


def corpus(root: Path) -> Path:
    shutil.copytree(SAMPLE, root / "sample")
    write(
        root / "edge.md",
        "# Café crème\n\nRunning runners run. The naïve café serves crème brûlée.\n\n"
        "## foo_bar\n\nfoo_bar and foo bar are not the same; snake_case splits in FTS5.\n",
    )
    write(root / "repeat.txt", "retrieval " * 300 + "\n\nrare-word zyzzyva\n")
    return root


def queries(reader: IndexReader, n: int = 150) -> list[str]:
    """Queries made of words from the index itself (seeded), plus edge cases."""
    texts = [r[0] for r in reader._conn().execute("SELECT text FROM chunks ORDER BY id")]
    rng = random.Random(7)
    out = []
    for _ in range(n):
        words = rng.choice(texts).split()
        start = rng.randrange(max(1, len(words) - 6))
        out.append(" ".join(words[start : start + rng.randint(1, 8)]))
    return [*out, "café creme", "naive cafe", "running run runs", "retrieval", "zyzzyva", "what is the", "x"]


def open_reader(settings: Settings, limit: int) -> IndexReader:
    reader = IndexReader(settings.index_dir, bm25_memory_max=limit)
    reader.refresh()
    return reader


def fts5_bm25(settings: Settings, query: str, k: int) -> list[tuple[int, float]]:
    """The reference: FTS5's own bm25() through a reader that never keeps postings in memory."""
    reader = open_reader(settings, 0)
    try:
        return reader.bm25(query, k)
    finally:
        reader.close()


def same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """The same chunks, best first, with the same scores to rounding (the paths sum in different orders)."""
    if [c for c, _ in got] != [c for c, _ in want]:  # ties broken by id on both paths, near-ties by rounding
        got, want = (
            sorted(got, key=lambda p: (-round(p[1], 9), p[0])),
            sorted(want, key=lambda p: (-round(p[1], 9), p[0])),
        )
    return [c for c, _ in got] == [c for c, _ in want] and all(
        g == pytest.approx(w, rel=1e-9, abs=1e-12) for (_, g), (_, w) in zip(got, want, strict=True)
    )


def wait_for_memory(reader: IndexReader, generation: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        held = reader._memory
        if held is not None and held[1].generation == generation:
            return
        time.sleep(0.02)
    raise AssertionError(f"BM25 postings of generation {generation} were not loaded ({reader.bm25_memory_error})")


@pytest.mark.parametrize(
    "weights,slice_size",
    [(WEIGHTS, keyword._SLICE), ((0.3, 1.7, 0.1), keyword._SLICE), ((0.0, 0.0, 1.0), keyword._SLICE), (WEIGHTS, 97)],
)
def test_memory_scores_equal_fts5(
    hash_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    weights: tuple[float, float, float],
    slice_size: int,
) -> None:
    """Every matching chunk gets the FTS5 path's score: with non-integer weights, with zero weights (matches
    that score 0 still count), and with the postings read in small slices."""
    monkeypatch.setattr(keyword, "_SLICE", slice_size)
    build(hash_settings, corpus(tmp_path / "docs"))
    fts = open_reader(hash_settings, 0)
    mem = open_reader(hash_settings, 10**6)
    try:
        assert mem.load_bm25_memory(weights) is not None
        assert mem.bm25_memory(weights) is not None
        compared = 0
        for q in queries(fts):
            with mem.snapshot():
                every = mem.bm25(q, 100_000, weights)
                top = mem.bm25(q, 5, weights)
            want = fts.bm25(q, 100_000, weights)
            assert dict(every).keys() == dict(want).keys(), q  # every matching chunk
            assert same(every, want), q
            assert [s for _, s in top] == pytest.approx([s for _, s in want[:5]], rel=1e-9), q
            compared += bool(want)
        assert compared > 100
    finally:
        fts.close()
        mem.close()


def test_phrase_words_fall_back_to_fts5(
    hash_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(hash_settings, corpus(tmp_path / "docs"))
    mem = open_reader(hash_settings, 10**6)
    try:
        mem.load_bm25_memory(WEIGHTS)
        assert keyword.QueryTokenizer().terms("foo_bar") == ("foo", "bar")
        assert keyword.QueryTokenizer().terms("Crème") == ("creme",)
        calls: list[int] = []
        search = keyword.MemoryBM25.search
        monkeypatch.setattr(
            keyword.MemoryBM25,
            "search",
            lambda self, p, k, mask=None, factors=None, idfs=None: (
                calls.append(1) or search(self, p, k, mask, factors, idfs)
            ),
        )
        with mem.snapshot():
            phrase = mem.bm25("foo_bar", 10)
            plain = mem.bm25("café", 10)
        assert calls == [1]  # "foo_bar" is the phrase "foo bar" to FTS5: FTS5 answered it
        assert phrase and plain
        assert same(mem.bm25("the of", 10), fts5_bm25(hash_settings, "the of", 10))
    finally:
        mem.close()


def test_new_generation_is_loaded_in_background_and_fts5_answers_meanwhile(
    hash_settings: Settings, tmp_path: Path
) -> None:
    root = corpus(tmp_path / "docs")
    build(hash_settings, root)
    mem = open_reader(hash_settings, 10**6)
    try:
        assert mem.bm25("zyzzyva", 5)  # first query: FTS5 answers and a background load starts
        wait_for_memory(mem, mem.generation)
        first = mem.generation
        write(root / "new.md", "# Quokka\n\nThe quokka is a small wallaby.\n")
        build(hash_settings, root)
        mem.refresh()
        assert mem.generation > first
        with mem.snapshot():  # the postings in memory are of the old generation: FTS5 answers, nothing is missed
            hits = mem.hits(mem.bm25("quokka wallaby", 5), "bm25")
        assert hits and Path(hits[0].path or "").name == "new.md"
        wait_for_memory(mem, mem.generation)
        with mem.snapshot():
            again = mem.bm25("quokka wallaby", 5)
        assert same(again, fts5_bm25(hash_settings, "quokka wallaby", 5))
        assert mem.bm25_memory_bytes() > 0
    finally:
        mem.close()


def test_a_rebuilt_index_is_loaded_afresh(hash_settings: Settings, tmp_path: Path) -> None:
    root = corpus(tmp_path / "docs")
    build(hash_settings, root)
    mem = open_reader(hash_settings, 10**6)
    try:
        for _ in range(3):  # the old data folder reaches a higher generation than the rebuilt one will have
            write(root / "grow.md", f"# Grow\n\n{time.monotonic_ns()} growing text\n")
            build(hash_settings, root)
        mem.refresh()
        mem.load_bm25_memory(WEIGHTS)
        old_dir, old_gen = mem.data_dir, mem.generation
        (root / "repeat.txt").unlink()
        build(hash_settings, root, rebuild=True)  # a new data folder, generations counted from the start
        mem.refresh()
        assert mem.data_dir != old_dir and mem.generation < old_gen
        assert mem.bm25_memory(WEIGHTS) is None  # the old folder's postings are not used
        wait_for_memory(mem, mem.generation)
        assert mem._memory is not None and mem._memory[0] == mem.data_dir
        with mem.snapshot():
            got = mem.bm25("retrieval zyzzyva", 100)
        assert same(got, fts5_bm25(hash_settings, "retrieval zyzzyva", 100))
    finally:
        mem.close()


def test_index_over_the_limit_stays_on_fts5(hash_settings: Settings, tmp_path: Path) -> None:
    build(hash_settings, corpus(tmp_path / "docs"))
    reader = open_reader(hash_settings, 3)
    try:
        assert reader.count > 3
        assert reader.bm25("retrieval", 5)
        assert reader.load_bm25_memory(WEIGHTS) is None
        time.sleep(0.2)
        assert reader.bm25_memory_bytes() == 0 and reader._memory is None
    finally:
        reader.close()


def test_a_failed_load_leaves_fts5_answering(
    hash_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(hash_settings, corpus(tmp_path / "docs"))
    attempts: list[int] = []

    def broken(*args: object) -> None:
        attempts.append(1)
        raise MemoryError("no room for postings")

    monkeypatch.setattr("rag_cli.store.local.reader_memory.MemoryBM25", broken)
    reader = open_reader(hash_settings, 10**6)
    try:
        want = fts5_bm25(hash_settings, "retrieval", 5)
        assert reader.bm25("retrieval", 5) == want
        deadline = time.monotonic() + 10
        while not reader.bm25_memory_error:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert "no room for postings" in reader.bm25_memory_error
        for _ in range(5):
            assert reader.bm25("retrieval", 5) == want
        time.sleep(0.1)
        assert attempts == [1]  # not retried for the same generation on every query
    finally:
        reader.close()


def test_long_lived_retrieval_answers_from_memory(hash_settings: Settings, tmp_path: Path) -> None:
    """What `rag chat` opens (open_retrieval(long_lived=True)) keeps BM25 in memory; one-shot commands do not."""
    from rag_cli.config import replace
    from rag_cli.retrieve.client import open_retrieval

    build(hash_settings, corpus(tmp_path / "docs"))
    settings = replace(hash_settings, server="off")

    async def run(long_lived: bool) -> tuple[int, list[list[tuple[str | None, float]]]]:
        async with open_retrieval(settings, long_lived=long_lived) as r:
            answers = []
            for q in ("zyzzyva retrieval", "café crème", "foo_bar snake"):
                await r.search(q, k=5, mode="bm25")
            if long_lived:
                wait_for_memory(r.reader, r.reader.generation)
            for q in ("zyzzyva retrieval", "café crème", "foo_bar snake"):
                res = await r.search(q, k=5, mode="bm25")
                answers.append([(h.path, h.score) for h in res.hits])
            return r.reader.bm25_memory_bytes(), answers

    memory_bytes, from_memory = runtime.run(run(True))
    none, from_fts5 = runtime.run(run(False))
    assert memory_bytes > 0 and none == 0
    assert all(from_memory) and [[p for p, _ in a] for a in from_memory] == [[p for p, _ in a] for a in from_fts5]
    flat = [s for a in from_memory for _, s in a]
    assert flat == pytest.approx([s for a in from_fts5 for _, s in a], rel=1e-9)


def test_a_collection_s_idf_scores_alike_on_both_paths(hash_settings: Settings, tmp_path: Path) -> None:
    """A federated search's collection statistics (store/base.Collection): the FTS5 path and the in-memory
    postings score with the collection's idf alike; the index's own counts as a collection change nothing; a
    one-word query's scores are the plain ones times the ratio of the two idfs; scores_for agrees with bm25."""
    from rag_cli.store.base import bm25_idf, word_counts

    build(hash_settings, corpus(tmp_path / "docs"))
    fts = open_reader(hash_settings, 0)
    mem = open_reader(hash_settings, 10**6)
    try:
        assert mem.load_bm25_memory(WEIGHTS) is not None
        compared = 0
        for q in queries(fts, 40):
            own = word_counts(fts, q)
            bigger = (own[0] * 3, {w: n + 5 for w, n in own[1].items()})
            plain = fts.bm25(q, 100_000, WEIGHTS)
            assert same(fts.bm25(q, 100_000, WEIGHTS, collection=own), plain), q
            with mem.snapshot():
                got = mem.bm25(q, 100_000, WEIGHTS, collection=bigger)
            want = fts.bm25(q, 100_000, WEIGHTS, collection=bigger)
            assert same(got, want), q
            if want:
                ids = [c for c, _ in want[:7]]
                scored = fts.scores_for(ids, None, q, WEIGHTS, collection=bigger)
                assert [scored[c]["bm25"] for c in ids] == pytest.approx([s for _, s in want[:7]], rel=1e-9), q
                compared += 1
        assert compared > 20
        ((word, held),) = word_counts(fts, "zyzzyva")[1].items()
        rows = fts.count
        ratio = bm25_idf(rows * 3, held + 5) / bm25_idf(rows, held)
        plain = fts.bm25("zyzzyva", 5, WEIGHTS)
        moved = fts.bm25("zyzzyva", 5, WEIGHTS, collection=(rows * 3, {word: held + 5}))
        assert plain and [s for _, s in moved] == pytest.approx([s * ratio for _, s in plain], rel=1e-9)
    finally:
        fts.close()
        mem.close()
