"""`rag get PATH[:LINE[-LINE]]`: an indexed document, or a cited range of it, as the index holds it.

Takes what a citation shows (``docs/guide.md:12``, ``guide.md:12-30``, ``report.pdf#page=3``,
``deck.pptx#slide=4``), so ``rag ask`` → ``rag get`` is one copy and paste.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from .app import app
from .common import ConfigOpt, IndexOpt, JsonOpt, StoreOpt, settings_from
from .output import clean, get_env, rel

_RANGE = re.compile(r"^(?P<path>.+?):(?P<start>\d+)(?:-(?P<end>\d+))?$")
_PART = re.compile(r"^(?P<path>.+?)#(?:page|slide|sheet|chapter|cell|message)=(?P<page>\d+)$")


def _number(digits: str) -> int:
    """A line or part number; a usage error past 18 digits (no file has that many lines, and int() of
    thousands of digits is refused by Python itself)."""
    if len(digits) > 18:
        from ..errors import UsageError

        raise UsageError(f"{digits[:12]}... is not a line or part number (at most 18 digits)")
    return int(digits)


def parse_target(target: str) -> tuple[str, int | None, int | None, int | None]:
    """``PATH``, ``PATH:LINE``, ``PATH:START-END`` or ``PATH#part=N`` → (path, start, end, page)."""
    m = _PART.match(target)
    if m:
        return m["path"], None, None, _number(m["page"])
    m = _RANGE.match(target)
    if m:
        start = _number(m["start"])
        end = _number(m["end"]) if m["end"] else start
        if end < start:
            from ..errors import UsageError

            raise UsageError(f"line range {start}-{end} ends before it starts")
        return m["path"], start, end, None
    return target, None, None, None


def joined(chunks: list[dict[str, Any]]) -> str:
    """The chunks' text in order, each chunk's overlap with the one before it printed once."""
    out: list[str] = []
    prev = ""
    for c in chunks:
        text = c["text"]
        cut = 0
        for size in range(min(len(prev), len(text)), 19, -1):  # the longest repeated seam of 20+ characters
            if prev.endswith(text[:size]):
                cut = size
                break
        out.append(text[cut:].lstrip() if cut else text)
        prev = text
    return "\n\n".join(t for t in out if t.strip())


@app.command("get")
def get_cmd(
    target: Annotated[
        str,
        typer.Argument(
            metavar="PATH[:LINE[-LINE]]", help="A document as cited: path, path:12, path:12-30, path#page=3."
        ),
    ],
    index: IndexOpt = None,
    json_out: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print an indexed document, or a cited line range or page, as the index holds it."""
    from ..errors import UsageError
    from ..store import base as store_base

    env = get_env()
    path, start, end, page = parse_target(target.strip())
    settings = settings_from(config, store_url=store, index=index)
    remote = [s for s in settings.sources if s.get("type") == "rag"]
    chunks: list[dict[str, Any]] = []
    if not remote or store_base.exists(settings):
        reader = store_base.open_reader(settings)
        try:
            chunks = reader.document(path, start, end)
            if not chunks and (start is not None or page is not None):
                whole = reader.document(path)
                if whole:
                    raise UsageError(f"{rel(whole[0]['path'])} has no indexed text at {target[len(path) :]}")
        finally:
            reader.close()
    if not chunks and remote:  # a hit of a remote `rag` source carries the other index's path
        chunks = _from_sources(settings, path, start, end, env.warn)
    if page is not None:
        chunks = [c for c in chunks if c.get("page") == page]
    if not chunks:
        where = f"index {settings.index!r}" + (" or its rag sources" if remote else "")
        raise UsageError(f"{path!r} is not in {where} (`rag search` finds what is)")
    if json_out:
        env.json(
            {
                "path": chunks[0]["path"],
                "title": chunks[0].get("title", ""),
                "start_line": start,
                "end_line": end,
                "page": page,
                "chunks": chunks,
            }
        )
        return
    env.write(clean(joined(chunks)) + "\n")


def _from_sources(settings: Any, path: str, start: int | None, end: int | None, warn: Any) -> list[dict[str, Any]]:
    """Ask each configured `rag` source (another `rag serve`) for ``path``; the first that holds it answers."""
    import asyncio
    from dataclasses import replace

    from .. import runtime
    from ..errors import SourceError
    from ..retrieve.remote import RagSource
    from ..retrieve.service import Retrieval

    async def go() -> list[dict[str, Any]]:
        async with Retrieval(replace(settings, server="off"), use_index=False) as r:
            loop = asyncio.get_running_loop()
            for src in [s for s in r.fanout.sources if isinstance(s, RagSource)] if r.fanout else []:
                limit = src.timeout or settings.retrieve_timeout
                try:
                    got = await src.document(path, start, end, loop.time() + limit)
                except (SourceError, TimeoutError) as exc:
                    reason = getattr(exc, "reason", "timed out")
                    if "HTTP 404" not in reason:
                        warn(f"source {src.name}: {reason}")
                    continue
                return [{**c, "source": src.name} for c in got["chunks"] if isinstance(c, dict) and "text" in c]
        return []

    return runtime.run(go(), workers=settings.effective_workers())
