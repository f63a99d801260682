"""Further passages of an answer's first documents (retrieve/within.py)."""

from __future__ import annotations

from typing import Any

from rag_cli.retrieve.within import LARGEST, further_passages
from rag_cli.types import Hit


class Pages:
    """A reader of a few documents: chunk id -> (path, doc_id, dense score, BM25 score)."""

    def __init__(self, chunks: dict[int, tuple[str, str | None, float, float]]) -> None:
        self.rows = chunks
        self.opened: list[str] = []

    def document(self, path: str) -> list[dict[str, Any]]:
        self.opened.append(path)
        return [
            {"chunk_id": i, "path": p, "doc_id": d, "text": f"chunk {i}"}
            for i, (p, d, _, _) in self.rows.items()
            if p == path
        ]

    def scores_for(self, ids: list[int], query_vec: Any, query: str) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for i in ids:
            out[i] = {"bm25": self.rows[i][3]}
            if query_vec is not None:
                out[i]["dense"] = self.rows[i][2]
        return out

    def hits(self, scored: list[tuple[int, float]], source: str) -> list[Hit]:
        return [
            Hit(f"chunk {i}", s, source, path=self.rows[i][0], chunk_id=i, doc_id=self.rows[i][1]) for i, s in scored
        ]


def hit(i: int, path: str, score: float, source: str = "dense+bm25", doc_id: str | None = None) -> Hit:
    return Hit(f"chunk {i}", score, source, path=path, chunk_id=i, doc_id=doc_id)


def test_the_first_documents_give_their_best_passages_not_yet_held() -> None:
    reader = Pages(
        {
            1: ("a.md", None, 0.9, 5.0),  # held
            2: ("a.md", None, 0.2, 0.0),
            3: ("a.md", None, 0.7, 4.0),  # a's best further passage
            4: ("a.md", None, 0.6, 3.0),
            5: ("b.md", None, 0.8, 6.0),  # held
            6: ("b.md", None, 0.1, 0.0),
            7: ("b.md", None, 0.5, 2.0),
            8: ("c.md", None, 0.9, 9.0),  # a third document: not opened
        }
    )
    hits = [hit(1, "a.md", 2.0), hit(5, "b.md", 1.5), hit(8, "c.md", 1.0)]
    more = further_passages(reader, "q", [1.0], hits, documents=2, each=2)
    assert [h.chunk_id for h in more] == [3, 4, 7, 6]
    assert reader.opened == ["a.md", "b.md"]
    assert all(h.source == "document" and h.score == 1.0 for h in more)  # below every retrieved passage
    assert more[0].extra["further_of"] == "a.md"


def test_bm25_alone_ranks_them_without_a_query_vector() -> None:
    reader = Pages({1: ("a.md", None, 0.9, 1.0), 2: ("a.md", None, 0.9, 0.0), 3: ("a.md", None, 0.1, 3.0)})
    more = further_passages(reader, "q", None, [hit(1, "a.md", 1.0)], documents=1, each=1)
    assert [h.chunk_id for h in more] == [3]


def test_remote_passages_records_of_one_file_and_collections() -> None:
    reader = Pages(
        {
            1: ("corpus.jsonl", "d1", 0.9, 1.0),
            2: ("corpus.jsonl", "d1", 0.5, 1.0),
            3: ("corpus.jsonl", "d2", 0.9, 9.0),  # another record of the same file: another document
        }
    )
    remote = Hit("elsewhere", 3.0, "wiki", url="https://wiki.example/p")
    peer = hit(9, "other-index.md", 2.5, source="team")  # another rag index's passage: not this reader's
    more = further_passages(reader, "q", [1.0], [remote, peer, hit(1, "corpus.jsonl", 1.0, doc_id="d1")], 2, 2)
    assert [h.chunk_id for h in more] == [2]
    assert reader.opened == ["corpus.jsonl"]
    big = Pages({i: ("all.jsonl", None, 0.5, 1.0) for i in range(LARGEST + 2)})
    assert further_passages(big, "q", [1.0], [hit(0, "all.jsonl", 1.0)], 1, 2) == []
    assert further_passages(reader, "q", [1.0], [hit(1, "corpus.jsonl", 1.0, doc_id="d1")], 0, 2) == []
