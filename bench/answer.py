"""Answer latency and quality on sample_corpus/qa.jsonl, per LLM backend, in one run.

- time to first token and tokens/s: `local` (llama.cpp in-process) and `openai` against
  `python -m llama_cpp.server` with the same GGUF on 127.0.0.1; `none` for reference;
- whole-process `rag ask` latency (median of several runs);
- the share of answerable questions whose answer contains an expected fact, and the share of
  unanswerable ones correctly refused, per backend.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, ROOT, median, rag_env, run_rag, write_section

QA = ROOT / "sample_corpus" / "qa.jsonl"


def start_llama_server(model: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "4096", "--n_threads", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


def main() -> None:
    home = CACHE / "home"
    _, rc, _, err, _ = run_rag(["index", str(ROOT / "sample_corpus"), "--index", "sample"], rag_env(home))
    assert rc == 0, err
    os.environ["RAG_HOME"] = str(home)
    from rag_cli import runtime
    from rag_cli.answer import answer
    from rag_cli.config import load_settings
    from rag_cli.errors import NoRelevantPassages
    from rag_cli.llm.local import packaged_model_path
    from rag_cli.retrieve.service import Retrieval

    qa = [json.loads(line) for line in QA.read_text().splitlines() if line.strip()]
    server, base = start_llama_server(packaged_model_path())
    try:
        stats: dict[str, dict[str, Any]] = {}
        for backend in ("none", "local", "openai"):
            settings = load_settings(index="sample", llm_backend=backend, llm_fallback=[], llm_base_url=base,
                                     llm_temperature=0.0, retrieve_timeout=10.0)  # fmt: skip

            async def run(settings: Any = settings) -> dict[str, Any]:
                out: dict[str, Any] = {
                    "ttft": [],
                    "tps": [],
                    "contains": 0,
                    "answerable": 0,
                    "refused": 0,
                    "unanswerable": 0,
                }
                async with Retrieval(settings) as r:
                    await r.prepare()
                    for item in qa:
                        text = None
                        try:
                            async for ev in answer(item["question"], r, settings):
                                if ev.kind == "done":
                                    text = ev.data.answer
                                    out["ttft"].append(ev.data.timings.get("first_token_ms", 0.0))
                                    if ev.data.timings.get("tokens_per_s"):
                                        out["tps"].append(ev.data.timings["tokens_per_s"])
                        except NoRelevantPassages:
                            text = None
                        if item.get("unanswerable"):
                            out["unanswerable"] += 1
                            out["refused"] += text is None
                        else:
                            out["answerable"] += 1
                            out["contains"] += text is not None and any(
                                a.lower() in text.lower() for a in item["answers"]
                            )
                return out

            stats[backend] = runtime.run(run())
        whole = []
        for _ in range(3):
            secs, rc, _, err, _ = run_rag(["ask", qa[0]["question"], "--index", "sample"], rag_env(home))
            assert rc == 0, err
            whole.append(secs)
    finally:
        server.terminate()
        server.wait(20)

    lines = [
        f"{len(qa)} questions in sample_corpus/qa.jsonl ({sum(1 for q in qa if q.get('unanswerable'))} unanswerable), "
        "k = 5, hybrid retrieval, temperature 0; the local model is Gemma 3 270M Q4_K_M on 2 threads.",
        "",
        "| backend | TTFT p50 ms | tokens/s p50 | answer contains expected fact | unanswerable refused |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    names = {
        "none": "none (extractive)",
        "local": "local (llama.cpp in-process)",
        "openai": "openai -> llama_cpp.server, same GGUF",
    }
    for b, s in stats.items():
        tps = f"{median(s['tps']):.1f}" if s["tps"] else "n/a"
        lines.append(f"| {names[b]} | {median(s['ttft']):.0f} | {tps} | {s['contains']}/{s['answerable']} "
                     f"({s['contains'] / s['answerable']:.0%}) | {s['refused']}/{s['unanswerable']} |")  # fmt: skip
    lines += ["", f"Whole-process `rag ask` with the local model (median of 3): {median(whole):.1f} s."]
    write_section("Answers (bench/answer.py)", lines)


if __name__ == "__main__":
    main()
