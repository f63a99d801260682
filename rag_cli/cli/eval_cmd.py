"""`rag eval DATASET`: measure retrieval (BEIR folder) or answer quality (qa.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app
from .ask import BaseUrlOpt, ModelOpt
from .common import ConfigOpt, JsonOpt, StoreOpt, WorkersOpt, settings_from
from .output import get_env


@app.command("eval")
def eval_cmd(
    dataset: Annotated[
        Path,
        typer.Argument(
            metavar="DATASET", help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a qa.jsonl file."
        ),
    ],
    mode: Annotated[str, typer.Option("--mode", "-m", help="dense | bm25 | hybrid | all (BEIR).")] = "all",
    index: Annotated[str | None, typer.Option("--index", "-i", help="Index to answer from (QA files).")] = None,
    llm: Annotated[str, typer.Option("--llm", help="Comma-separated backends to score (QA files).")] = "none",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    k: Annotated[int | None, typer.Option("-k", min=1, help="Passages per answer (QA files).")] = None,
    json_out: JsonOpt = False,
    per_query: Annotated[bool, typer.Option("--per-query", help="Include per-query scores.")] = False,
    save: Annotated[Path | None, typer.Option("--save", help="Write the JSON report to FILE.")] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="Compare with a saved JSON report.")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Allowed drop per metric against --baseline.")] = 0.01,
    workers: WorkersOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Evaluate retrieval on BEIR data or answers on a QA file; gate CI with --baseline."""
    from ..errors import EXIT_REGRESSION, PathNotFound, UsageError
    from ..eval import report

    env = get_env()
    if not dataset.exists():
        raise PathNotFound(f"no such dataset: {dataset}")
    if save is not None and save.is_dir():
        raise UsageError(f"--save {save} is a folder", hint="give a file path, e.g. --save report.json")
    settings = settings_from(
        config, store_url=store, index=index, workers=workers, answer_k=k, llm_model=model, llm_base_url=base_url
    )
    out: dict[str, Any]
    if dataset.is_dir():
        from ..eval.beir import is_beir, run_beir

        if not is_beir(dataset):
            raise UsageError(f"{dataset} is not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
        modes = ["bm25", "dense", "hybrid"] if mode == "all" else [mode]
        if any(m not in ("bm25", "dense", "hybrid") for m in modes):
            raise UsageError(f"unknown mode {mode!r}")
        env.err(f"evaluating {dataset} ({', '.join(modes)}); the corpus is indexed once and cached")
        data, results, index_name = run_beir(dataset, settings, modes)
        out = {
            "dataset": str(dataset),
            "queries": len(data.queries),
            "queries_without_judgements": data.skipped_queries,
            "index": index_name,
            "results": {m: r.metrics for m, r in results.items()},
            "latency": {m: r.latency for m, r in results.items()},
        }
        if per_query:
            out["per_query"] = {m: r.per_query for m, r in results.items()}
        title = f"{dataset.name}: {len(data.queries)} queries"
    else:
        from ..eval.qa import run_qa

        backends = [b.strip() for b in llm.split(",") if b.strip()]
        summaries, rows, latency = run_qa(dataset, settings, backends)
        out = {
            "dataset": str(dataset),
            "questions": sum(1 for _ in rows[backends[0]]),
            "results": summaries,
            "latency": latency,
        }
        if per_query:
            out["per_query"] = rows
        title = f"{dataset.name}: {out['questions']} questions"
    if save:
        try:
            save.write_text(json.dumps(out, indent=2))
        except OSError as exc:
            raise UsageError(f"cannot write --save {save}: {exc.strerror or exc}", hint="give a file path") from None
    if json_out:
        env.json(out)
    else:
        report.render(env, title, out["results"])
    if baseline:
        base = report.load_baseline(baseline)
        bad = report.regressions(out["results"], base["results"], tolerance)
        for line in bad:
            env.err(f"regression: {line}")
        if bad:
            raise typer.Exit(EXIT_REGRESSION)
        env.err(f"no metric dropped more than {tolerance:g} against {baseline}")
