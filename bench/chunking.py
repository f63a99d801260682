"""Chunking without orphans: chunk counts and retrieval quality, this tree against a baseline tree
(default: the last commit with the old chunker, version 2), measured in the same run.

For each tree:
- chunk counts over Cranfield laid out as 1,398 `.txt` files (title line, blank line, abstract) and
  over the gitdocs HTML manual: all chunks, chunks that are only the title or a heading, chunks
  under 100 characters (the real MiniLM tokenizer, 200-token chunks);
- `rag eval cranfield --mode all`: nDCG@10 per mode (the BEIR .jsonl corpus);
- gitdocs qa.jsonl as a retrieval set: hit@5 and MRR@5 per mode (gold page among the top 5).

Usage: python bench/chunking.py [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, CRANFIELD, ROOT, SHARED, write_section

GITDOCS = SHARED / "eval" / "gitdocs"

COUNT = r"""
import json, sys, os
from pathlib import Path
from rag_cli.config import load_settings
from rag_cli.embed.base import create
from rag_cli.ingest.loaders import load_bytes
from rag_cli.ingest.chunking import chunk_document
from rag_cli.ingest.pipeline import chunker_config
emb = create(load_settings())
cfg = chunker_config(load_settings(), emb)
out = {}
for name, root in json.loads(sys.argv[1]).items():
    n = title_only = tiny = 0
    for p in sorted(Path(root).rglob("*")):
        if not p.is_file() or p.suffix not in (".txt", ".html"):
            continue
        for doc in load_bytes(str(p), p.read_bytes()):
            heads = {doc.title.strip()} | {h for b in doc.blocks for h in b.heading}
            for c in chunk_document(doc, emb.count_tokens, cfg):
                n += 1
                title_only += c.text.strip() in heads
                tiny += len(c.text) < 100
    out[name] = {"chunks": n, "title_only": title_only, "under_100_chars": tiny}
print(json.dumps(out))
"""

RETRIEVAL = r"""
import json, sys
from rag_cli import runtime
from rag_cli.config import load_settings
from rag_cli.retrieve.service import Retrieval
items = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
items = [i for i in items if i.get("gold_paths")]
settings = load_settings(index=sys.argv[2], retrieve_timeout=60.0)
async def go():
    out = {}
    async with Retrieval(settings) as r:
        await r.prepare()
        for mode in ("bm25", "dense", "hybrid"):
            hit = mrr = 0.0
            for it in items:
                res = await r.search(it["question"], k=5, mode=mode)
                ranks = [n for n, h in enumerate(res.hits, 1) if any((h.path or "").endswith(g) for g in it["gold_paths"])]
                hit += bool(ranks)
                mrr += 1 / ranks[0] if ranks else 0.0
            out[mode] = {"hit@5": hit / len(items), "mrr@5": mrr / len(items)}
    return out
print(json.dumps(runtime.run(go())))
"""


def tree_env(tree: Path, home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "RAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def py(tree: Path, home: Path, code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=tree_env(tree, home),
        cwd=tree,
        text=True,
        capture_output=True,
        timeout=7200,
    )
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rag(tree: Path, home: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rag_cli", *args],
        env=tree_env(tree, home),
        cwd=tree,
        text=True,
        capture_output=True,
        timeout=7200,
    )
    if out.returncode != 0:
        raise SystemExit(f"{tree} rag {args}: {out.stderr[-2000:]}")
    return out.stdout


def cranfield_txt(dest: Path) -> Path:
    if not dest.exists():
        dest.mkdir(parents=True)
        for line in (CRANFIELD / "corpus.jsonl").read_text().splitlines():
            d = json.loads(line)
            (dest / f"{d['_id']}.txt").write_text(f"{d['title']}\n\n{d['text']}\n")
    return dest


def measure(tree: Path, home: Path, txt: Path) -> dict:
    counts = py(tree, home, COUNT, json.dumps({"cranfield_txt": str(txt), "gitdocs": str(GITDOCS / "html")}))
    beir = json.loads(rag(tree, home, "eval", str(CRANFIELD), "--mode", "all", "--json"))
    rag(tree, home, "index", str(GITDOCS / "html"), "--index", "gitdocs")
    git = py(tree, home, RETRIEVAL, str(GITDOCS / "qa.jsonl"), "gitdocs")
    return {"counts": counts, "cranfield": {m: r["ndcg@10"] for m, r in beir["results"].items()}, "gitdocs": git}


def main() -> None:
    ap = argparse.ArgumentParser()
    # the default is the last commit with chunker version 2 (before "Federation and chunking (issue 15)")
    ap.add_argument("--baseline", default="5d5912f^", help="git revision of the baseline tree")
    args = ap.parse_args()
    txt = cranfield_txt(CACHE / "cranfield_txt")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=ROOT, check=True, capture_output=True
        )
        try:
            for name, tree in (("baseline", base), ("this tree", ROOT)):
                results[name] = measure(tree, Path(tmp) / f"home-{name.replace(' ', '-')}", txt)
                print(name, json.dumps(results[name]), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    lines = [
        f"Baseline: `{args.baseline}` (the chunker before this change), in the same run.",
        "",
        "| tree | set | chunks | title/heading only | under 100 chars |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        for s, c in r["counts"].items():
            lines.append(f"| {name} | {s} | {c['chunks']} | {c['title_only']} | {c['under_100_chars']} |")
    lines += [
        "",
        "| tree | Cranfield nDCG@10 bm25 / dense / hybrid | gitdocs hit@5 bm25 / dense / hybrid |",
        "| --- | --- | --- |",
    ]
    for name, r in results.items():
        cr = " / ".join(f"{r['cranfield'][m]:.4f}" for m in ("bm25", "dense", "hybrid"))
        gd = " / ".join(f"{r['gitdocs'][m]['hit@5']:.3f}" for m in ("bm25", "dense", "hybrid"))
        lines.append(f"| {name} | {cr} | {gd} |")
    write_section("Chunking (bench/chunking.py)", lines)


if __name__ == "__main__":
    main()
