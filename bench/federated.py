"""Federated retrieval: a BEIR corpus split into N shards, shard 0 indexed locally and every other shard
served by its own `rag serve` on 127.0.0.1 as a `type = "rag"` source, against one index holding the
whole corpus, in the same run (same model, same chunker, hybrid, k = 10).

Reports nDCG@10 of both, and the share of top-10 hits that came from remote shards (they hold about
(N-1)/N of the documents). Unless --no-http, the remote shards are also searched through plain
`type = "http"` sources: a small aiohttp server in this script that answers raw BM25 scores (its own
scale) over the shard's documents.

Usage: python bench/federated.py [--shards 2 3] [--corpus ../shared/eval/cranfield] [--no-http]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CRANFIELD, ROOT, write_section


def shard_of(doc_id: str, n: int) -> int:
    import hashlib

    return int(hashlib.blake2b(doc_id.encode(), digest_size=4).hexdigest(), 16) % n


def split(corpus: Path, n: int, dest: Path) -> list[Path]:
    files = [dest / f"shard{i}" / "corpus.jsonl" for i in range(n)]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
    handles = [open(f, "w") for f in files]  # noqa: SIM115
    try:
        for line in corpus.read_text().splitlines():
            if line.strip():
                handles[shard_of(str(json.loads(line)["_id"]), n)].write(line + "\n")
    finally:
        for h in handles:
            h.close()
    return files


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def index(path: Path, home: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rag_cli", "index", str(path)],
        env=env(home),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])


def serve(home: Path, log: Path) -> tuple[subprocess.Popen[str], int]:
    fh = open(log, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_cli", "serve", "--port", "0"],
        env=env(home),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=fh,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("rag serve did not start")


class BM25Server:
    """Raw Okapi BM25 (k1 1.2, b 0.75) over one shard's documents: GET /search?q=..&k=.."""

    def __init__(self, corpus: Path) -> None:
        self.docs = [json.loads(x) for x in corpus.read_text().splitlines() if x.strip()]
        self.tf = [Counter(self.tok(d.get("title", "") + " " + d["text"])) for d in self.docs]
        self.len = [sum(c.values()) for c in self.tf]
        self.avg = sum(self.len) / max(1, len(self.len))
        df: Counter[str] = Counter()
        for c in self.tf:
            df.update(c.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    @staticmethod
    def tok(text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    def search(self, q: str, k: int) -> list[dict[str, Any]]:
        terms = self.tok(q)
        scored = []
        for i, tf in enumerate(self.tf):
            s = 0.0
            for t in terms:
                f = tf.get(t)
                if f:
                    s += self.idf[t] * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * self.len[i] / self.avg))
            if s > 0:
                scored.append((s, i))
        scored.sort(reverse=True)
        return [
            {
                "id": self.docs[i]["_id"],
                "text": self.docs[i]["text"],
                "title": self.docs[i].get("title", ""),
                "score": s,
                "url": f"bm25://{self.docs[i]['_id']}",
            }
            for s, i in scored[:k]
        ]

    def run(self) -> None:
        from aiohttp import web

        async def handler(request: web.Request) -> web.Response:
            k = int(request.query.get("k", "10"))
            return web.json_response({"results": self.search(request.query.get("q", ""), k)})

        async def main() -> None:
            app = web.Application()
            app.router.add_get("/search", handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.stop = asyncio.Event()
            self.ready.set()
            await self.stop.wait()
            await runner.cleanup()

        self.loop.run_until_complete(main())

    def __enter__(self) -> BM25Server:
        self.thread.start()
        self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


def evaluate(home: Path, sources: list[dict[str, Any]], corpus_dir: Path, remote_ids: set[str]) -> dict[str, float]:
    """nDCG@10 of hybrid search through the local index (and ``sources``), and the remote share of top 10."""
    code = r"""
import json, sys
from rag_cli import runtime
from rag_cli.config import load_settings
from rag_cli.eval.beir import load
from rag_cli.eval.metrics import ndcg_at, percentile
from rag_cli.retrieve.service import Retrieval
data = load(__import__("pathlib").Path(sys.argv[1]))
s = load_settings(retrieve_timeout=60.0)
s.sources = json.loads(sys.argv[2])
remote = set(json.loads(sys.argv[3]))
async def go():
    import time
    nd = share = n = 0.0
    degraded = 0
    took = []
    async with Retrieval(s) as r:
        await r.prepare()
        for qid, text in data.queries.items():
            t0 = time.perf_counter()
            res = await r.search(text, k=10, mode="hybrid")
            took.append((time.perf_counter() - t0) * 1000)
            degraded += bool(res.degraded)
            ranked = []
            for h in res.hits:
                d = h.doc_id or (h.url or "").removeprefix("bm25://")
                if d not in ranked:
                    ranked.append(d)
            nd += ndcg_at(ranked[:10], data.qrels[qid], 10)
            share += sum(1 for d in ranked[:10] if d in remote) / max(1, len(ranked[:10]))
            n += 1
    return {"ndcg@10": nd / n, "remote_share": share / n, "queries": n, "degraded_queries": degraded,
            "p50_ms": percentile(took, 50)}
print(json.dumps(runtime.run(go())))
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(corpus_dir), json.dumps(sources), json.dumps(sorted(remote_ids))],
        env=env(home),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=CRANFIELD)
    ap.add_argument("--shards", type=int, nargs="+", default=[2, 3])
    ap.add_argument(
        "--no-http", dest="http", action="store_false", help="skip the remote shards behind raw-BM25 http sources"
    )
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        whole_home = t / "whole"
        index(args.corpus / "corpus.jsonl", whole_home)
        whole = evaluate(whole_home, [], args.corpus, set())
        print("single index", whole, flush=True)
        rows.append(("single index (baseline)", 1, whole))
        for n in args.shards:
            files = split(args.corpus / "corpus.jsonl", n, t / f"n{n}")
            remote_ids = {json.loads(x)["_id"] for f in files[1:] for x in f.read_text().splitlines() if x.strip()}
            homes = [t / f"n{n}" / f"home{i}" for i in range(n)]
            for f, h in zip(files, homes, strict=True):
                index(f, h)
            procs = []
            try:
                sources = []
                for i in range(1, n):
                    proc, port = serve(homes[i], t / f"n{n}" / f"serve{i}.log")
                    procs.append(proc)
                    sources.append(
                        {"name": f"shard{i}", "type": "rag", "url": f"http://127.0.0.1:{port}", "timeout": 30}
                    )
                fed = evaluate(homes[0], sources, args.corpus, remote_ids)
                print(f"N={n} rag", fed, flush=True)
                rows.append((f"N={n}, remote shards as `rag` sources", n, fed))
            finally:
                for p in procs:
                    p.send_signal(signal.SIGTERM)
                    p.wait(timeout=60)
            if args.http:
                servers = [BM25Server(f) for f in files[1:]]
                for s in servers:
                    s.__enter__()
                try:
                    sources = [
                        {
                            "name": f"bm25shard{i}",
                            "type": "http",
                            "url": f"http://127.0.0.1:{s.port}/search?q={{query}}&k={{k}}",
                            "results": "results",
                            "timeout": 30,
                            "fields": {"text": "text", "title": "title", "url": "url", "score": "score"},
                        }
                        for i, s in enumerate(servers, start=1)
                    ]
                    fed = evaluate(homes[0], sources, args.corpus, remote_ids)
                    print(f"N={n} http", fed, flush=True)
                    rows.append((f"N={n}, remote shards as raw-BM25 `http` sources", n, fed))
                finally:
                    for s in servers:
                        s.__exit__()
    lines = [
        f"Corpus `{args.corpus.name}`, hybrid, k = 10, all judged queries; shards by a hash of the document id; "
        "the single index is measured in the same run.",
        "",
        "| setup | nDCG@10 | vs single | remote share of top 10 | expected share | queries degraded | search p50 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = whole["ndcg@10"]
    for name, n, r in rows:
        exp = "—" if n == 1 else f"{(n - 1) / n:.2f}"
        share = "—" if n == 1 else f"{r['remote_share']:.2f}"
        lines.append(
            f"| {name} | {r['ndcg@10']:.4f} | {r['ndcg@10'] - base:+.4f} | {share} | {exp} | {int(r['degraded_queries'])} "
            f"| {r['p50_ms']:.0f} |"
        )
    write_section("Federated retrieval (bench/federated.py)", lines)


if __name__ == "__main__":
    main()
