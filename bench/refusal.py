"""Calibrates `[answer] min_evidence` (issue 20: refusal that is right both ways) on the QA sets at hand.

For every question of `../shared/eval/gitdocs/qa.jsonl` and `sample_corpus/qa.jsonl` it runs what `rag ask`
runs before calling a model (retrieval, k = 10; the dense-similarity check; the unknown-names check) and
records the best evidence sentence's score (rag_cli/evidence.py). The rule: among thresholds halfway between
neighbouring scores, keep those whose pooled false refusal (answerable questions refused, by any check) stays
<= 5%, and take the one that declines the most unanswerable questions; ties go to the lowest threshold.
The same rule fitted on one set and applied to the other says how well it carries to a collection it did not
see (leave one set out).

Usage: python bench/refusal.py  (indexes into bench/.cache/home as bench/answer.py does)
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, ROOT, SHARED, machine, rag_env, run_rag, write_section

SETS = {
    "gitdocs": (SHARED / "eval" / "gitdocs" / "html", SHARED / "eval" / "gitdocs" / "qa.jsonl"),
    "sample": (ROOT / "sample_corpus", ROOT / "sample_corpus" / "qa.jsonl"),
}
MAX_FALSE_REFUSAL = 0.05


def signals(index: str, qa: Path) -> list[dict[str, Any]]:
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.pipeline.answer import answer_k
    from rag_cli.pipeline.evidence import score
    from rag_cli.pipeline.refusal import relevant, unknown_names
    from rag_cli.retrieve.service import Retrieval

    items = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    settings = load_settings(index=index, retrieve_timeout=60.0)

    async def go() -> list[dict[str, Any]]:
        rows = []
        async with Retrieval(settings) as r:
            await r.prepare()
            embed = r.sentence_embedder()
            for it in items:
                q = it["question"]
                res = await r.search(q, k=answer_k(settings))
                hits = relevant(res.hits, settings.answer_min_score, res.best.get("dense"))
                names, uncovered = await unknown_names(r, q, hits) if hits else ([], [])
                best = max((s.score for s in score(q, [h.text for h in hits], embed)), default=0.0)
                rows.append(
                    {
                        "question": q,
                        "unanswerable": bool(it.get("unanswerable")),
                        "dense": res.best.get("dense"),
                        "other_check": not hits or bool(names) or bool(uncovered),
                        "names": names,
                        "uncovered": uncovered,
                        "evidence": best,
                    }
                )
        return rows

    return runtime.run(go())


def rates(rows: list[dict[str, Any]], t: float) -> tuple[float, float]:
    """(refusal, false refusal) with threshold ``t`` on top of the other checks."""
    refused = [r["other_check"] or r["evidence"] < t for r in rows]
    un = [x for x, r in zip(refused, rows, strict=True) if r["unanswerable"]]
    ans = [x for x, r in zip(refused, rows, strict=True) if not r["unanswerable"]]
    return (sum(un) / len(un) if un else 0.0), (sum(ans) / len(ans) if ans else 0.0)


def fit(rows: list[dict[str, Any]]) -> float:
    vals = sorted({round(r["evidence"], 4) for r in rows})
    cands = [0.0] + [round((a + b) / 2, 4) for a, b in itertools.pairwise(vals)]
    ok = [t for t in cands if rates(rows, t)[1] <= MAX_FALSE_REFUSAL]
    return max(ok, key=lambda t: (rates(rows, t)[0], -t))


def main() -> None:
    home = CACHE / "home"
    env = rag_env(home)
    os.environ["RAG_HOME"] = str(home)
    per: dict[str, list[dict[str, Any]]] = {}
    for name, (folder, qa) in SETS.items():
        _, rc, _, err, _ = run_rag(["index", str(folder), "--index", f"answer-{name}"], env)
        assert rc == 0, err
        per[name] = signals(f"answer-{name}", qa)
    pooled = [r for rows in per.values() for r in rows]
    t = fit(pooled)
    lines = [
        f"_{machine()}_",
        "",
        "Best evidence-sentence score per question (0.5 cosine + 0.5 question words held, weighted by rarity, + 0.05 / passage rank), "
        "after retrieval and the other checks (dense similarity under `min_score`, a name no document holds):",
        "",
        "| set | answerable: min / p10 / median | unanswerable not caught by the other checks |",
        "| --- | --- | --- |",
    ]
    for name, rows in per.items():
        a = sorted(r["evidence"] for r in rows if not r["unanswerable"])
        u = sorted(f"{r['evidence']:.3f}" for r in rows if r["unanswerable"] and not r["other_check"])
        lines.append(f"| {name} | {a[0]:.3f} / {a[len(a) // 10]:.3f} / {a[len(a) // 2]:.3f} | {', '.join(u) or '-'} |")
    lines += [
        "",
        "The names check per set: questions it declines, by rule (a name no document holds / a name few documents "
        "hold and no retrieved passage does):",
        "",
        "| set | unanswerable declined: unknown / uncovered | answerable declined: unknown / uncovered |",
        "| --- | ---: | ---: |",
    ]
    for name, rows in per.items():

        def n(flag: bool, key: str, rows: list[dict[str, Any]] = rows) -> int:
            return sum(1 for r in rows if r["unanswerable"] == flag and r[key])

        total_u = sum(r["unanswerable"] for r in rows)
        lines.append(
            f"| {name} | {n(True, 'names')} / {n(True, 'uncovered')} of {total_u} | "
            f"{n(False, 'names')} / {n(False, 'uncovered')} of {len(rows) - total_u} |"
        )
    for name, rows in per.items():
        for r in rows:
            if r["uncovered"]:
                lines.append(
                    f"- {name}: {'unanswerable' if r['unanswerable'] else 'ANSWERABLE'} "
                    f"{r['question']!r}: uncovered {r['uncovered']}"
                )
    lines += ["", "| threshold | fitted on | set | refusal | false refusal |", "| ---: | --- | --- | ---: | ---: |"]
    for name, rows in per.items():
        for label, thr in (("off (0)", 0.0), ("both sets", t)):
            ref, fr = rates(rows, thr)
            lines.append(f"| {thr:.3f} | {label} | {name} | {ref:.2f} | {fr:.2f} |")
    for name, rows in per.items():
        other = next(n for n in per if n != name)
        thr = fit(per[other])
        ref, fr = rates(rows, thr)
        lines.append(f"| {thr:.3f} | {other} alone (held out: {name}) | {name} | {ref:.2f} | {fr:.2f} |")
    lines += ["", f"Fitted on both sets: `[answer] min_evidence = {t:.2f}`."]
    (CACHE / "refusal-rows.json").write_text(json.dumps(per, indent=1))
    write_section("Refusal calibration (bench/refusal.py)", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
