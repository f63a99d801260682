"""Packaged readers read from their packaged file against the Q8_0 copy rag derives from it (`[llm] weights`,
llm/packaged.py), in one run.

Per installed reader that has a faster type: the file's size; in this process, llama.cpp reading a 400-token
prompt (the best of 3, n_ctx 4096, the backend's threads) and generating 32 tokens, tokens/s, each file loaded in
turn; then whole-process `rag ask --server off --model NAME` (median of 3, one gitdocs question, the two
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


def main() -> None:
    from rag_cli.llm import packaged
    from rag_cli.llm.local import DEFAULT_READER, default_threads, packaged_model_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--readers", nargs="*", default=[n for n in packaged.readers() if packaged.CATALOGUE[n].fast])
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
    for name in args.readers:
        paths = {w: packaged_model_path(name, w) for w in WEIGHTS}
        speed = {w: llama_speed(paths[w], threads) for w in WEIGHTS}
        asks: dict[str, list[dict[str, float]]] = {w: [] for w in WEIGHTS}
        for _ in range(3):
            for w in WEIGHTS:
                flags = [question, "--index", "answer-gitdocs", "--server", "off", "--model", name]
                asks[w].append(timed_ask(flags, {**env, "RAG_LLM_WEIGHTS": w}))
        for w in WEIGHTS:
            first = median([a["first"] for a in asks[w]])
            end = median([a["total"] for a in asks[w]])
            lines.append(
                f"| {name} | {w} ({packaged.CATALOGUE[name].fast if w == 'fast' else 'as packaged'}) "
                f"| {paths[w].stat().st_size / 1e6:.0f} | {speed[w][0]:.0f} | {speed[w][1]:.1f} | {first:.2f} | {end:.2f} |"
            )
        ratio = median([a["first"] for a in asks["packaged"]]) / median([a["first"] for a in asks["fast"]])
        lines.append(
            f"| {name} | the fast copy's speed-up | | {speed['fast'][0] / speed['packaged'][0]:.2f}x | "
            f"{speed['fast'][1] / speed['packaged'][1]:.2f}x | {ratio:.2f}x | |"
        )
    if not args.no_warm:
        for w in WEIGHTS:
            lines += ["", f'The default reader ({DEFAULT_READER}), `[llm] weights = "{w}"`:', ""]
            lines += warm_vs_cold("answer-sample", SETS["sample"][1], {**env, "RAG_LLM_WEIGHTS": w})
    write_section("Reader weights: the packaged file against its Q8_0 copy (bench/weights.py)", lines)


if __name__ == "__main__":
    main()
