"""Quality figures measured by `rag eval` itself: Cranfield retrieval (bm25, dense, hybrid) and the
sample_corpus/qa.jsonl answer metrics for the `local` and `none` backends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, ROOT, rag_env, run_rag, write_section


def main() -> None:
    env = rag_env(CACHE / "home")
    secs, rc, out, err, _ = run_rag(["eval", str(CRANFIELD), "--mode", "all", "--json"], env)
    assert rc == 0, err
    beir = json.loads(out)
    _, rc, _, err, _ = run_rag(["index", str(ROOT / "sample_corpus"), "--index", "sample"], env)
    assert rc == 0, err
    _, rc, out, err, _ = run_rag(
        ["eval", str(ROOT / "sample_corpus" / "qa.jsonl"), "--index", "sample", "--llm", "local,none", "--json"],
        {**env, "RAG_LLM_TEMPERATURE": "0"},
    )
    assert rc == 0, err
    qa = json.loads(out)
    metrics = ["ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100"]
    lines = [
        f"`rag eval ../shared/eval/cranfield --mode all` ({beir['queries']} judged queries; {secs:.0f} s with the cached index):",
        "",
        "| method | " + " | ".join(metrics) + " | search p50 ms | p95 ms |",
        "| --- |" + " ---: |" * (len(metrics) + 2),
    ]
    for m, r in beir["results"].items():
        lat = beir["latency"][m]["total"]
        lines.append(
            f"| {m} | " + " | ".join(f"{r[x]:.4f}" for x in metrics) + f" | {lat['p50']:.1f} | {lat['p95']:.1f} |"
        )
    keys = [
        "contains",
        "token_f1",
        "citation_precision",
        "citation_validity",
        "groundedness",
        "refusal",
        "false_refusal",
    ]
    lines += [
        "",
        f"`rag eval sample_corpus/qa.jsonl --llm local,none` ({qa['questions']} questions, temperature 0):",
        "",
        "| backend | " + " | ".join(keys) + " | first token p50 ms |",
        "| --- |" + " ---: |" * (len(keys) + 1),
    ]
    for b, r in qa["results"].items():
        cells = ["—" if r.get(x) is None else f"{r[x]:.2f}" for x in keys]
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {qa['latency'][b]['first_token']['p50']:.0f} |")
    lines += [
        "",
        "sample_corpus retrieval per mode: the share of answerable qa.jsonl questions whose gold file is in the "
        "top 5 passages (hit@5), and the reciprocal rank of the first gold passage (MRR@5):",
        "",
        "| mode | hit@5 | MRR@5 |",
        "| --- | ---: | ---: |",
    ]
    for mode, (hit, mrr) in sample_modes(env).items():
        lines.append(f"| {mode} | {hit:.3f} | {mrr:.3f} |")
    write_section("Quality (bench/eval.py)", lines)


def sample_modes(env: dict[str, str]) -> dict[str, tuple[float, float]]:
    import os

    os.environ["RAG_HOME"] = env["RAG_HOME"]
    from rag_cli import runtime
    from rag_cli.config import load_settings
    from rag_cli.retrieve.service import Retrieval

    items = [json.loads(x) for x in (ROOT / "sample_corpus" / "qa.jsonl").read_text().splitlines() if x.strip()]
    items = [i for i in items if i.get("gold_paths")]
    settings = load_settings(index="sample", retrieve_timeout=60.0)

    async def go() -> dict[str, tuple[float, float]]:
        out = {}
        async with Retrieval(settings) as r:
            await r.prepare()
            for mode in ("bm25", "dense", "hybrid"):
                hits = mrr = 0.0
                for item in items:
                    res = await r.search(item["question"], k=5, mode=mode)
                    ranks = [
                        n
                        for n, h in enumerate(res.hits, 1)
                        if any((h.path or "").endswith(g) for g in item["gold_paths"])
                    ]
                    hits += bool(ranks)
                    mrr += 1 / ranks[0] if ranks else 0.0
                out[mode] = (hits / len(items), mrr / len(items))
        return out

    return runtime.run(go())


if __name__ == "__main__":
    main()
