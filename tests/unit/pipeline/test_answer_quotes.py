"""The answer's end: the best evidence quoted after a generated answer (and as --llm none's), unsupported
sentences left out, a model that loops cut and stopped. A fake retrieval and fake backends, no model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from rag_cli import runtime
from rag_cli.config import Settings
from rag_cli.errors import ConfigError
from rag_cli.eval.qa import sentences
from rag_cli.llm import base as llm_base
from rag_cli.llm.base import Prompt
from rag_cli.pipeline.answer import answer
from rag_cli.pipeline.verify import SentenceStream, Verifier
from rag_cli.retrieve.fanout import SearchResult
from rag_cli.text import loop_cut
from rag_cli.types import Hit

CACHE = "The credential cache daemon keeps passwords for 900 seconds by default. It listens on a socket."
BRANCH = "A branch is a movable pointer to a commit. Branches are cheap to create."
Q = "How many seconds does the credential cache keep passwords?"


class FakeRetrieval:
    http = None
    fanout = reader = embedder = None

    def sentence_embedder(self) -> None:
        return None

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.asked: list[dict[str, Any]] = []

    async def search(self, query: str, **kw: Any) -> SearchResult:
        self.asked.append(kw)
        return SearchResult(query, "hybrid", list(self.hits))

    async def further(self, query: str, hits: list[Hit], documents: int, **kw: Any) -> list[Hit]:
        from rag_cli.retrieve.within import further_passages

        return further_passages(self.reader, query, None, hits, documents) if self.reader is not None else []


class Scripted(llm_base.BaseBackend):
    """A backend that streams the given pieces (a generator: it may never end)."""

    name = "scripted"

    def __init__(self, pieces: Any) -> None:
        self.pieces = pieces
        self.sent = 0

    def context_tokens(self) -> int:
        return 4096

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        for p in self.pieces:
            self.sent += 1
            yield p


def run(backend: Any, settings: Settings | None = None, hits: list[Hit] | None = None) -> tuple[Any, list[Any]]:
    llm_base.register("scripted", lambda s, services: backend)
    hits = hits or [
        Hit(text=BRANCH, score=0.9, source="bm25", path="b.md"),
        Hit(text=CACHE, score=0.8, source="bm25", path="c.md"),
    ]
    s = settings or Settings(answer_min_evidence=0.0)

    async def go() -> list[Any]:
        return [ev async for ev in answer(Q, FakeRetrieval(hits), s, backends=["scripted"])]

    events = runtime.run(go())
    return events[-1].data, events


def test_a_verified_answer_ends_with_the_best_evidence_quoted() -> None:
    result, events = run(Scripted(["According to [1], the cache keeps passwords ", "for 900 seconds [1]."]))
    assert result.answer.startswith("According to [1], the cache keeps passwords for 900 seconds [1].\n\nEvidence:\n- ")
    assert '- "The credential cache daemon keeps passwords for 900 seconds by default." [1]' in result.answer
    assert "".join(e.data for e in events if e.kind == "token") == result.answer  # streamed = final
    assert [v.quoted for v in result.sentences] == [False, True]
    assert not any(e.kind == "warning" for e in events)
    # [answer] quote = false: a verified answer stands alone
    alone, _ = run(
        Scripted(["According to [1], the cache keeps passwords for 900 seconds [1]."]),
        Settings(answer_min_evidence=0.0, answer_quote=False),
    )
    assert "Evidence:" not in alone.answer


def test_an_answer_takes_its_evidence_in_passage_order_not_document_order() -> None:
    """Issue 30: search results come in document order, but an answer's evidence is the fused passage order
    (a page's further passages often hold the fact: bench/answer.py measured document order worse)."""
    retrieval = FakeRetrieval([Hit(text=CACHE, score=0.8, source="bm25", path="c.md")])
    llm_base.register("scripted", lambda s, services: Scripted(["The cache keeps them 900 seconds [1]."]))

    async def go() -> None:
        async for _ in answer(Q, retrieval, Settings(answer_min_evidence=0.0), backends=["scripted"]):
            pass

    runtime.run(go())
    assert retrieval.asked and all(kw.get("documents") is False for kw in retrieval.asked)


def test_a_quote_the_model_already_copied_is_not_repeated() -> None:
    said = "The credential cache daemon keeps passwords for 900 seconds by default. [1]"
    result, _ = run(Scripted([said]))
    assert result.answer.count("900 seconds by default") == 1


def test_an_unsupported_sentence_is_left_out_and_the_evidence_quoted() -> None:
    result, events = run(Scripted(["The cache keeps passwords for 30 days [1]."]))
    assert "30 days" not in result.answer and result.answer.startswith("Evidence:\n- ")
    assert result.dropped == [
        {"text": "The cache keeps passwords for 30 days [1].", "support": 0.0, "reason": "no source supports it"}
    ]
    assert any("no sentence of the answer is supported" in e.data for e in events if e.kind == "warning")
    marked, _ = run(
        Scripted(["The cache keeps passwords for 30 days [1]."]),
        Settings(answer_min_evidence=0.0, answer_unverified="mark"),
    )
    # shown marked, an unverified sentence does not lead: the evidence comes first (issue 32 item 6)
    assert marked.answer.startswith('Evidence:\n- "The credential cache daemon keeps passwords for 900 seconds')
    assert marked.answer.endswith("\n\nThe cache keeps passwords for 30 days [1]. (unverified)")
    assert marked.provenance["lead"] == "evidence"
    first, _ = run(
        Scripted(["The cache keeps passwords for 30 days [1]."]),
        Settings(answer_min_evidence=0.0, answer_unverified="mark", answer_lead="answer"),
    )
    assert first.answer.startswith("The cache keeps passwords for 30 days [1]. (unverified)\n\nEvidence:")


def test_the_evidence_leads_when_the_first_sentence_holds_but_does_not_answer() -> None:
    """Issue 32 item 6: a true sentence beside the point (the passage supports it; the question's words are not
    in it) is no lead; the best evidence is quoted ahead of it, in the stream as in the result."""
    said = "According to [1], a branch is a movable pointer to a commit [1]. The cache keeps passwords for 900 seconds [1]."
    hits = [Hit(text=BRANCH + " " + CACHE, score=0.9, source="bm25", path="b.md")]
    result, events = run(Scripted([said[:40], said[40:]]), hits=hits)
    quote = '- "The credential cache daemon keeps passwords for 900 seconds by default." [1]'
    assert result.answer.startswith("Evidence:\n" + quote + "\n\nAccording to [1], a branch is a movable pointer")
    assert result.answer.count("900 seconds by default") == 1  # not quoted again at the end
    assert "".join(e.data for e in events if e.kind == "token") == result.answer
    assert [v.quoted for v in result.sentences] == [True, False, False]  # in the answer's order
    assert result.provenance["lead"] == "evidence"
    assert not any(e.kind == "warning" for e in events)
    # the token with the quotes comes right after the verdict of the sentence they lead, before its text
    kinds = [(e.kind, e.data if e.kind == "token" else "") for e in events if e.kind in ("verdict", "token")]
    assert kinds[0][0] == "verdict" and kinds[1][1].startswith("Evidence:") and kinds[2][1].startswith("According")
    before, _ = run(Scripted([said]), Settings(answer_min_evidence=0.0, answer_lead="answer"), hits)
    assert before.answer.startswith("According to [1], a branch") and before.provenance["lead"] == "answer"


def test_an_answering_first_sentence_leads_and_the_evidence_follows() -> None:
    result, _ = run(Scripted(["The credential cache keeps passwords for 900 seconds [1]."]))
    assert result.answer.startswith("The credential cache keeps passwords for 900 seconds [1].\n\nEvidence:")
    assert result.provenance["lead"] == "answer"
    none, _ = run(Scripted([]))  # nothing written: the quotes are the answer
    assert none.answer.startswith("Evidence:") and none.provenance["lead"] == "evidence"


def test_given_context_alone_cited_by_line_and_an_unsupported_summary_said_plainly() -> None:
    from rag_cli.pipeline.prompting import context_hits

    text = "commit 1a2b\nAuthor: me\n\n" + CACHE + "\n\n" + ("filler words here " * 80) + "\n\n" + BRANCH
    given = context_hits(text, "notes.txt")
    assert given[0].location == "notes.txt:1"
    assert given[-1].text.endswith(BRANCH) and given[-1].start_line == 8
    llm_base.register("scripted", lambda s, services: Scripted(["Tomorrow the weather turns sunny and warm [1]."]))

    async def go() -> list[Any]:
        return [
            ev
            async for ev in answer(
                "summarise",
                FakeRetrieval([]),
                Settings(answer_min_evidence=0.0),
                backends=["scripted"],
                extra_context=text,
                context_name="notes.txt",
            )
        ]

    events = runtime.run(go())
    result = events[-1].data
    assert result.source_dicts()[0]["location"] == "notes.txt:1"
    warned = [e.data for e in events if e.kind == "warning"]
    assert any("nothing the given context supports" in w and "not a summary" in w for w in warned), warned
    assert result.answer.startswith("Evidence:\n- ")
    # with an index's passages among the sources, the usual warning
    _, events = run(Scripted(["Tomorrow the weather turns sunny and warm [1]."]))
    assert any("no sentence of the answer is supported" in e.data for e in events if e.kind == "warning")


def test_none_answers_with_the_same_evidence_quotes() -> None:
    from rag_cli.llm.extractive import ExtractiveBackend

    result, _ = run(ExtractiveBackend())
    # passages keep their retrieved numbers (no evidence reordering for none): the cache page is [2]
    assert result.answer.startswith('- "The credential cache daemon keeps passwords for 900 seconds by default." [2]')
    assert "Evidence:" not in result.answer and all(v.quoted for v in result.sentences)


def test_a_model_that_loops_is_cut_and_stopped() -> None:
    def forever() -> Any:
        yield "According to [1], the cache keeps passwords for 900 seconds [1]. "
        yield "Then run git worktree"
        for _ in range(10_000):
            yield " remove"

    backend = Scripted(forever())
    result, events = run(backend)
    assert backend.sent < 20  # generation stopped once the loop showed, not at the token limit
    assert result.answer.startswith("According to [1], the cache keeps passwords for 900 seconds [1].")
    assert "remove" not in result.answer  # the sentence it broke off is left out whole
    assert result.dropped[0]["reason"] == "the model fell into a loop writing it"
    assert result.dropped[0]["text"].startswith("Then run git worktree remove")
    assert any("repeating itself" in e.data for e in events if e.kind == "warning")
    assert "".join(e.data for e in events if e.kind == "token") == result.answer


@pytest.mark.parametrize(
    "text,kept",
    [
        ("git worktree remove remove remove remove remove", "git worktree remove"),
        ("see a.html:16, a.html:16, a.html:16, a.html:16, a.html:16,", "see a.html:16,"),
        ("ha ha ha ha", None),  # too short to be a loop
        ("----------------------------------", None),  # no letter or digit: a rule, not a loop
        ("A normal sentence. Another normal sentence.", None),
    ],
)
def test_loop_cut(text: str, kept: str | None) -> None:
    cut = loop_cut(text)
    assert (text[:cut] if cut is not None else None) == kept


def test_a_bang_inside_a_sentence_does_not_end_it() -> None:
    stream = SentenceStream(Verifier(["A ! line re-includes a file. Use fixup! commits."]))
    assert stream.push("According to [1], a ! line re-includes a file. Next") == [
        ("According to [1], a ! line re-includes a file.", " ")
    ]


def test_rare_question_words_weigh_more_in_evidence() -> None:
    from rag_cli.pipeline.evidence import score

    texts = ["Git stores git objects in git folders for git users.", "The reflog expires entries after 90 days."]
    best = max(score("When does git expire reflog entries?", texts), key=lambda s: s.score)
    assert best.text.startswith("The reflog expires")


def test_the_judge_reads_a_quoted_line_as_one_sentence() -> None:
    text = 'It is 900 seconds [1].\n\nEvidence:\n- "See also [FILES]. The timeout is 900 seconds." [1]'
    assert sentences(text) == ["It is 900 seconds .", "See also [FILES]. The timeout is 900 seconds."]


def test_unverified_setting_is_checked() -> None:
    from rag_cli.config import validate

    with pytest.raises(ConfigError, match="answer_unverified"):
        validate(replace(Settings(), answer_unverified="hide"))


def test_the_refusal_gates_judge_a_follow_up_by_its_condensed_question(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 32 item 4: "and what about b?" after "What does k1 control?" is judged as the standalone question
    rag chat condensed (what was searched), not as its four words, which no evidence sentence is close to."""
    from rag_cli.pipeline import answer as answer_mod

    judged: list[str] = []

    async def names_gate(retrieval: Any, question: str, hits: list[Hit], settings: Settings) -> None:
        judged.append(question)

    async def evidence_gate(question: str, hits: list[Hit], embed: Any, settings: Settings) -> None:
        judged.append(question)

    monkeypatch.setattr(answer_mod, "names_gate", names_gate)
    monkeypatch.setattr(answer_mod, "evidence_gate", evidence_gate)
    llm_base.register("scripted", lambda s, services: Scripted(["b controls length normalisation [1]."]))
    hits = [
        Hit(
            text="k1 controls term frequency saturation. b controls length normalisation.",
            score=0.9,
            source="bm25",
            path="bm25.md",
        )
    ]
    condensed = "What does k1 control? and what about b?"

    async def go() -> list[Any]:
        return [
            ev
            async for ev in answer(
                "and what about b?", FakeRetrieval(hits), Settings(), backends=["scripted"], query=condensed
            )
        ]

    events = runtime.run(go())
    assert judged == [condensed, condensed]
    assert events[-1].data.question == "and what about b?" and events[-1].data.query == condensed


def test_the_result_keeps_every_passage_retrieved_beside_those_the_prompt_held() -> None:
    """`rag eval` tells "not retrieved" from "not in the evidence" by every passage retrieved, which a prompt
    cut to evidence may not hold; the list stays in the process (the JSON contract is unchanged)."""
    filler = [
        Hit(text=f"Unrelated passage number {i} about gardening tools.", score=0.5, source="bm25", path=f"g{i}.md")
        for i in range(3)
    ]
    hits = [Hit(text=CACHE, score=0.8, source="bm25", path="c.md"), *filler]
    result, _ = run(
        Scripted(["The cache keeps passwords for 900 seconds [1]."]),
        Settings(answer_min_evidence=0.0, answer_evidence_tokens=16),
        hits,
    )
    assert [h.path for h in result.retrieved] == ["c.md", "g0.md", "g1.md", "g2.md"]
    assert len(result.sources) < len(result.retrieved)  # the prompt held the evidence's passages only
    assert "retrieved" not in result.to_dict()


def test_the_evidence_budget_is_the_readers_own_unless_a_setting_gives_one() -> None:
    """A reader that reads better with more evidence (a packaged reader's ``evidence_tokens``) gets it when
    ``[answer] evidence_tokens`` is left at 0; a budget the user sets wins over it."""
    hits = [Hit(text=CACHE, score=0.8, source="bm25", path="c.md")] + [
        Hit(
            text=f"The credential cache test number {i} keeps its seconds apart.",
            score=0.5,
            source="bm25",
            path=f"{i}.md",
        )
        for i in range(12)
    ]

    def held(reads: int, setting: int) -> int:
        backend = Scripted(["The cache keeps passwords for 900 seconds [1]."])
        backend.evidence_tokens = reads
        result, _ = run(backend, Settings(answer_min_evidence=0.0, answer_evidence_tokens=setting), hits)
        return len(result.sources)

    assert held(reads=16, setting=0) < held(reads=400, setting=0)  # the reader's own budget
    assert held(reads=400, setting=16) == held(reads=16, setting=0)  # the setting wins


def test_a_packaged_reader_states_its_evidence_budget() -> None:
    from rag_cli.llm.local import LlamaCppBackend

    assert LlamaCppBackend("qwen2.5-coder-1.5b").evidence_tokens == 600  # measured: more facts written
    assert LlamaCppBackend("").evidence_tokens == llm_base.BaseBackend.evidence_tokens == 300  # the default reader
    assert LlamaCppBackend("/models/any.gguf").evidence_tokens == 300  # a file rag knows nothing of


class OnePage:
    """A reader of c.md's two chunks: the search found the first, the fact stands in the second."""

    generation = 1

    def __init__(self) -> None:
        self.rows = {
            1: "The credential cache daemon listens on a socket.",
            2: "The credential cache keeps passwords for 900 seconds by default.",
        }

    def document(self, path: str) -> list[dict[str, Any]]:
        return [{"chunk_id": i, "doc_id": None} for i in self.rows] if path == "c.md" else []

    def scores_for(self, ids: list[int], query_vec: Any, query: str) -> dict[int, dict[str, float]]:
        return {i: {"bm25": 1.0} for i in ids}

    def hits(self, scored: list[tuple[int, float]], source: str) -> list[Hit]:
        return [Hit(self.rows[i], s, source, path="c.md", chunk_id=i) for i, s in scored]


@pytest.mark.parametrize("further", [2, 0])
def test_an_answer_reads_further_passages_of_its_first_documents(further: int) -> None:
    hits = [
        Hit(text=BRANCH, score=0.9, source="bm25", path="b.md", chunk_id=7),
        Hit(text=OnePage().rows[1], score=0.8, source="dense+bm25", path="c.md", chunk_id=1),
    ]
    retrieval = FakeRetrieval(hits)
    retrieval.reader = OnePage()
    s = Settings(answer_min_evidence=0.0, answer_further_documents=further)

    async def go() -> list[Any]:
        return [ev async for ev in answer(Q, retrieval, s, backends=["none"])]

    result = runtime.run(go())[-1].data
    assert ("900 seconds" in result.answer) is bool(further)
    assert [h.chunk_id for h in result.retrieved] == [7, 1, 2][: 3 if further else 2]
    assert ("further_ms" in result.timings) is bool(further)
