"""Packaged readers read from their packaged file against the Q8_0 copy rag derives from it (`[llm] weights`,
llm/packaged.py), in one run.

Per installed Q4_K_M reader: the file's size; in this process, llama.cpp reading a 400-token prompt (the best of
3, n_ctx 4096, the backend's threads) and generating 32 tokens, tokens/s, each file loaded in turn; how often the
copy's next-token choice is the packaged file's (and the mean KL divergence) over a Git manual page; and where rag
reads the copy, whole-process `rag ask --server off --model NAME` (median of 3, one gitdocs question, the two
alternating) to its first words and its end. For the default reader, also the first 10 answerable sample_corpus
questions through a warm `rag serve` against cold, for each file (bench/answer.warm_vs_cold). Answer quality with
each file: `bench/answer.py --configs local local@llm_weights=packaged`.

Usage: python bench/weights.py [--readers NAME...] [--no-warm]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.answer import SETS, timed_ask, warm_vs_cold
from bench.common import CACHE, ROOT, median, rag_env, run_rag, write_section

WEIGHTS = ("packaged", "fast")


def llama_speed(path: Path, threads: int, prompt_tokens: int = 400, generated: int = 32) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) of the GGUF at ``path``: the best of 3 reads of a prompt cut from the
    README, then ``generated`` tokens after its first 50 (temperature 0)."""
    from llama_cpp import Llama

    from rag_cli.llm.local import quiet_stderr

    with quiet_stderr():
        llm = Llama(model_path=str(path), n_ctx=4096, n_threads=threads, verbose=False)
    try:
        tokens = llm.tokenize((ROOT / "README.md").read_text().encode())[:prompt_tokens]
        best = float("inf")
        for _ in range(3):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(tokens)
            best = min(best, time.perf_counter() - t0)
        llm.reset()
        llm.eval(tokens[:50])
        t0 = time.perf_counter()
        n = 0
        for _ in llm.generate(tokens[:50], temp=0.0, reset=False):
            n += 1
            if n >= generated:
                break
        return len(tokens) / best, n / (time.perf_counter() - t0)
    finally:
        llm.close()


def agreement(packaged_path: Path, copy_path: Path, threads: int, tokens: int = 1500) -> tuple[float, float]:
    """How closely the copy predicts as the packaged file does, over ``tokens`` tokens of a Git manual page
    (git-stash, tags stripped): the share of positions where both rank the same next token first, and the mean
    KL divergence of the packaged file's next-token distribution from the copy's."""
    import html
    import re

    import numpy as np
    from llama_cpp import Llama

    from rag_cli.llm.local import quiet_stderr

    page = (SETS["gitdocs"][0] / "git-stash.html").read_text()
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))

    def log_probs(path: Path) -> Any:
        with quiet_stderr():
            llm = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, logits_all=True, verbose=False)
        try:
            ids = llm.tokenize(text.encode())[:tokens]
            llm.eval(ids)
            x = np.array(llm.scores[: len(ids)], dtype=np.float64)
        finally:
            llm.close()
        x -= x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    a, b = log_probs(packaged_path), log_probs(copy_path)
    kl = (np.exp(a) * (a - b)).sum(axis=1)
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))), float(kl.mean())


def copy_of(name: str) -> tuple[Path, Path]:
    """A reader's packaged file and its Q8_0 copy: the one rag reads with `[llm] weights = "fast"`, or, for a
    reader rag gives none, one written for this measurement."""
    from dataclasses import replace

    from rag_cli.llm import packaged

    model = packaged.get(name)
    source = packaged.resolve(name, "packaged")
    assert source is not None
    measured = model if model.fast else replace(model, fast="q8_0")
    done = packaged.derived_record(measured)
    if done:
        return source, Path(done["path"])
    from rag_cli.llm.local import quiet_stderr

    with quiet_stderr():
        return source, packaged.derive(measured, source)


def reader_rows(name: str, question: str, env: dict[str, str], threads: int) -> tuple[list[str], tuple[float, float]]:
    """The table rows of one reader (each file's speed; whole-process `rag ask` where rag reads the copy) and
    the copy's agreement with the packaged file."""
    from rag_cli.llm import packaged

    source, copy = copy_of(name)
    paths = {"packaged": source, "fast": copy}
    speed = {w: llama_speed(paths[w], threads) for w in WEIGHTS}
    in_use = bool(packaged.get(name).fast)  # whole-process runs only where `weights` changes what rag reads
    asks: dict[str, list[dict[str, float]]] = {w: [] for w in WEIGHTS}
    for _ in range(3 if in_use else 0):
        for w in WEIGHTS:
            flags = [question, "--index", "answer-gitdocs", "--server", "off", "--model", name]
            asks[w].append(timed_ask(flags, {**env, "RAG_LLM_WEIGHTS": w}))
    rows = []
    for w in WEIGHTS:
        first = f"{median([a['first'] for a in asks[w]]):.2f}" if in_use else "—"
        end = f"{median([a['total'] for a in asks[w]]):.2f}" if in_use else "—"
        label = "as packaged" if w == "packaged" else "Q8_0 copy" + ("" if in_use else ", not used by rag")
        rows.append(
            f"| {name} | {label} | {paths[w].stat().st_size / 1e6:.0f} | {speed[w][0]:.0f} | {speed[w][1]:.1f} "
            f"| {first} | {end} |"
        )
    ratio = (
        f"{median([a['first'] for a in asks['packaged']]) / median([a['first'] for a in asks['fast']]):.2f}x"
        if in_use
        else "—"
    )
    rows.append(
        f"| {name} | the copy's speed-up | | {speed['fast'][0] / speed['packaged'][0]:.2f}x | "
        f"{speed['fast'][1] / speed['packaged'][1]:.2f}x | {ratio} | |"
    )
    return rows, agreement(source, copy, threads)


def main() -> None:
    from rag_cli.llm import packaged
    from rag_cli.llm.local import DEFAULT_READER, default_threads

    ap = argparse.ArgumentParser()
    k_quant = [
        n
        for n in packaged.readers()
        if "Q4_K_M" in packaged.CATALOGUE[n].what and packaged.installed(packaged.CATALOGUE[n])
    ]
    ap.add_argument(
        "--readers", nargs="*", default=k_quant, help="packaged readers (default: the installed Q4_K_M ones)"
    )
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-server against cold runs")
    args = ap.parse_args()
    home = CACHE / "home"
    env = rag_env(home)
    os.environ["RAG_HOME"] = str(home)
    for name in ("gitdocs", "sample"):
        _, rc, _, err, _ = run_rag(["index", str(SETS[name][0]), "--index", f"answer-{name}"], env)
        assert rc == 0, err
    question = json.loads(SETS["gitdocs"][1].read_text().splitlines()[0])["question"]
    threads = default_threads()
    lines = [
        f"Prompt of 400 tokens (best of 3) and 32 generated tokens in one process, {threads} threads; whole-process "
        "`rag ask --server off --model NAME` on one gitdocs question, median of 3, the two files alternating:",
        "",
        "| reader | weights | file MB | prompt tokens/s | generated tokens/s | rag ask first words s | rag ask end s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    agree: dict[str, tuple[float, float]] = {}
    for name in args.readers:
        row, agree[name] = reader_rows(name, question, env, threads)
        lines += row
    lines += ["", "Next tokens over 1,500 tokens of git-stash's page, the copy against the packaged file:", ""]
    lines += [
        f"- {name}: the same first choice at {top:.1%} of positions, mean KL divergence {kl:.4f}"
        for name, (top, kl) in agree.items()
    ]
    if not args.no_warm:
        for w in WEIGHTS:
            lines += ["", f'The default reader ({DEFAULT_READER}), `[llm] weights = "{w}"`:', ""]
            lines += warm_vs_cold("answer-sample", SETS["sample"][1], {**env, "RAG_LLM_WEIGHTS": w})
    write_section("Reader weights: the packaged file against its Q8_0 copy (bench/weights.py)", lines)


if __name__ == "__main__":
    main()
