"""Follow-up questions over the Git manual (issue 32 item 4): refused or answered, judged on what was searched.

`bench/data/gitdocs_followups.jsonl` holds 12 conversations of two turns written for this bench (a question,
then a short follow-up that leans on it: "and how do I rename it?"), each with strings the follow-up's answer
should hold. For every follow-up `rag chat` searches with the condensed question (`chat.follow_on`); the refusal
checks (dense similarity, names, best evidence sentence) then judge either the follow-up as typed (before) or
the condensed question (now). With `--llm none` (the evidence quotes), the whole answer pipeline runs for the
first turn and the follow-up: refused, and whether the answer holds an expected string.

Usage: python bench/followups.py  (indexes the Git manual into bench/.cache/home as bench/answer.py does)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, ROOT, SHARED, rag_env, run_rag, write_section

PAIRS = ROOT / "bench" / "data" / "gitdocs_followups.jsonl"
FOLDER = SHARED / "eval" / "gitdocs" / "html"


async def gates(r: Any, settings: Any, judged: str, query: str) -> str:
    """'' when the refusal checks let ``judged`` through after searching ``query``, else which check declined."""
    from rag_cli.errors import NoRelevantPassages
    from rag_cli.pipeline.answer import answer_k
    from rag_cli.pipeline.refusal import evidence_gate, names_gate, relevant

    res = await r.search(query, k=answer_k(settings))
    hits = relevant(res.hits, settings.answer_min_score, res.best.get("dense"))
    if not hits:
        return "nothing relevant"
    try:
        await names_gate(r, judged, hits, settings)
    except NoRelevantPassages:
        return "names"
    try:
        await evidence_gate(judged, hits, r.sentence_embedder(), settings)
    except NoRelevantPassages:
        return "evidence"
    return ""


def main() -> None:
    home = CACHE / "home"
    env = rag_env(home)
    os.environ["RAG_HOME"] = str(home)
    _, rc, _, err, _ = run_rag(["index", str(FOLDER), "--index", "answer-gitdocs"], env)
    assert rc == 0, err
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.errors import NoRelevantPassages
    from rag_cli.pipeline.answer import answer
    from rag_cli.pipeline.chat import follow_on, is_follow_up
    from rag_cli.retrieve.service import Retrieval

    pairs = [json.loads(x) for x in PAIRS.read_text().splitlines() if x.strip()]
    settings = load_settings(index="answer-gitdocs", retrieve_timeout=60.0)

    async def one(r: Any, question: str, query: str) -> str | None:
        try:
            async for ev in answer(question, r, settings, backends=["none"], query=query):
                if ev.kind == "done":
                    return str(ev.data.answer)
        except NoRelevantPassages:
            return None
        return None

    async def go() -> list[dict[str, Any]]:
        rows = []
        async with Retrieval(settings) as r:
            await r.prepare()
            for p in pairs:
                q, f = p["question"], p["follow_up"]
                query = follow_on(q, f)
                first = await one(r, q, q)
                later = await one(r, f, query)
                rows.append(
                    {
                        "question": q,
                        "follow_up": f,
                        "condensed": query != f and is_follow_up(f),
                        "before": await gates(r, settings, f, query),
                        "now": await gates(r, settings, query, query),
                        "first_refused": first is None,
                        "refused": later is None,
                        "holds": later is not None and any(a.lower() in later.lower() for a in p["answers"]),
                    }
                )
        return rows

    rows = runtime.run(go())
    n = len(rows)
    lines = [
        f"{n} two-turn conversations over the Git manual (`bench/data/gitdocs_followups.jsonl`), k = 10, hybrid; "
        "the follow-up is searched with the condensed question in both columns:",
        "",
        "| follow-ups | refused (judged as typed, before) | refused (judged condensed, now) | "
        "answer (`--llm none`) holds an expected string |",
        "| --- | ---: | ---: | ---: |",
        f"| {n} ({sum(r['condensed'] for r in rows)} recognised as follow-ups) | "
        f"{sum(bool(r['before']) for r in rows) / n:.2f} | {sum(r['refused'] for r in rows) / n:.2f} | "
        f"{sum(r['holds'] for r in rows) / n:.2f} |",
        "",
        f"First turns refused: {sum(r['first_refused'] for r in rows)} of {n}. Declined as typed, by check: "
        + (", ".join(f"{r['follow_up']!r} ({r['before']})" for r in rows if r["before"]) or "none")
        + ".",
    ]
    print("\n".join(lines))
    (CACHE / "followup-rows.json").write_text(json.dumps(rows, indent=1))
    write_section("Follow-ups (bench/followups.py)", lines)


if __name__ == "__main__":
    main()
