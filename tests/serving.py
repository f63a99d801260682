"""A `rag serve` subprocess on 127.0.0.1 for the tests that need a real server (its port read from its log)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

TOKEN = "t0ken-for-tests"


class Served:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(
        self,
        path: str,
        body: Any = None,
        token: str | None = TOKEN,
        raw: bytes | None = None,
        method: str | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(
            self.url(path), data=data, method=method or ("POST" if data is not None else "GET")
        )
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read().decode()
                status = resp.status
        except urllib.error.HTTPError as exc:
            text = exc.read().decode()
            status = exc.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text


def start_serve(home: Path, tmp: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    full = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_HOME": str(home), **(env or {})}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag_cli", "serve", "--port", "0", *args],
            env=full,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=fh,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())
        if m:
            return Served(proc, int(m.group(1)), log)
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not start")
