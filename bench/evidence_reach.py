"""Where a reader could find the expected fact, without running the reader: for each answerable question of the
QA sets, whether it is in the passages an answer searches and in the evidence `evidence.select` keeps from them,
for several passage counts (k) and evidence budgets, in one process on the same indexes as bench/answer.py.

A reader cannot write a fact its prompt does not hold: this is the ceiling an evidence change moves, measured in
a minute or two instead of a reader run's quarter hour (bench/answer.py then says whether a reader uses it).
Budgets are counted with the reader's own tokenizer (``--reader``, its local backend's ``count_tokens``),
as the answer pipeline counts them. k = 10 at the reader's own budget (`rag models --json`: evidence_tokens), with
the further passages of the first `[answer] further_documents` documents (retrieve/within.py), is what ships.

Usage: python bench/evidence_reach.py [--sets gitdocs sample] [--reader NAME] [--k 10 15] [--budgets 300 600]
       [--further N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.answer import SETS
from bench.common import CACHE, rag_env, run_rag, write_section


def counter(reader: str) -> Any:
    """The token counter of ``reader``'s local backend, the one the answer pipeline budgets evidence with."""
    from rag_cli.config import load_settings
    from rag_cli.llm import base as llm_base

    return llm_base.create("local", load_settings(llm_backend="local", llm_model=reader)).count_tokens


def reach(
    index: str, qa: Path, ks: list[int], budgets: list[int], count: Any, further: int
) -> dict[tuple[int, int], list[int]]:
    """(k, budget) -> [questions, fact in the passages, fact in the evidence] over the answerable questions; the
    passages are the first k found and the further passages of the first ``further`` documents, as an answer's."""
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.eval.qa import contains, load
    from rag_cli.pipeline import evidence
    from rag_cli.pipeline.refusal import relevant
    from rag_cli.retrieve.service import Retrieval
    from rag_cli.retrieve.within import further_passages

    settings = load_settings(index=index, retrieve_timeout=60.0)
    items = [q for q in load(qa) if not q.get("unanswerable") and q.get("answers")]
    out = {(k, b): [0, 0, 0] for k in ks for b in budgets}

    async def go() -> None:
        async with Retrieval(settings) as r:
            await r.prepare()
            embed = evidence.remembering(r.sentence_embedder())
            for item in items:
                vec = embed([item["question"]])[0] if embed is not None else None
                for k in ks:  # a search of k, as the answer's (it fetches max(3k, 30) candidates a method)
                    res = await r.search(item["question"], k=k, documents=False)
                    found = relevant(res.hits, settings.answer_min_score, res.best.get("dense"))
                    more = further_passages(r.reader, item["question"], vec, found[:k], further) if found else []
                    texts = [h.text for h in found[:k] + more]
                    scored = evidence.score(item["question"], texts, embed)
                    in_passages = contains(" ".join(texts), item["answers"])
                    for b in budgets:
                        picked = evidence.select(item["question"], texts, embed, count=count, budget=b, scored=scored)
                        kept = " ".join(s.text for p in picked for s in p)
                        row = out[(k, b)]
                        row[0] += 1
                        row[1] += in_passages
                        row[2] += contains(kept, item["answers"])

    runtime.run(go())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--reader", default="qwen2.5-coder-1.5b", help="whose tokenizer counts the budget (rag models)")
    ap.add_argument("--k", nargs="+", type=int, default=[10, 15])
    ap.add_argument("--budgets", nargs="+", type=int, default=[300, 600])
    ap.add_argument(
        "--further", type=int, default=None, help="documents whose further passages join (default: as rag answers)"
    )
    ap.add_argument("--section", default="Evidence reach (bench/evidence_reach.py)")
    args = ap.parse_args()
    home = CACHE / "home"
    env = rag_env(home)
    os.environ["RAG_HOME"] = str(home)
    count = counter(args.reader)
    if args.further is None:
        from rag_cli.config import load_settings

        args.further = load_settings().answer_further_documents
    lines = [
        f"The expected fact in the passages searched and in the evidence kept, answerable questions; budgets in "
        f"{args.reader}'s tokens; indexes of bench/answer.py; further passages of the first {args.further} documents. "
        "A reader cannot write what its evidence does not hold.",
        "",
        "| set | k | budget | questions | fact in passages | fact in evidence |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in args.sets:
        folder, qa = SETS[name]
        _, rc, _, err, _ = run_rag(["index", str(folder), "--index", f"answer-{name}"], env)
        assert rc == 0, err
        found = reach(f"answer-{name}", qa, args.k, args.budgets, count, args.further)
        for (k, b), (n, passages, kept) in found.items():
            lines.append(f"| {name} | {k} | {b} | {n} | {passages} | {kept} |")
            row = {"set": name, "k": k, "budget": b, "further": args.further, "questions": n}
            print(json.dumps({**row, "passages": passages, "evidence": kept}))
    write_section(args.section, lines)


if __name__ == "__main__":
    main()
