"""`rag search QUERY`: retrieval only (hybrid by default), for people and for scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .app import app
from .common import (
    ConfigOpt,
    IndexOpt,
    JsonOpt,
    KOpt,
    ModeOpt,
    PathOpt,
    ServerOpt,
    SinceOpt,
    StoreOpt,
    TimeoutOpt,
    TypeOpt,
    WorkersOpt,
    filter_from,
    settings_from,
)
from .output import Env, clean, get_env, rel, text_arg

if TYPE_CHECKING:
    from ..retrieve.fanout import SearchResult


def snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render_timings(env: Env, result: SearchResult) -> None:
    from .. import runtime

    parts = [f"{k}={v:.1f}ms" for k, v in result.timings.items()]
    for stage in ("open_index", "load_model"):  # start-up stages of this process, if it had them
        if runtime.timings.samples.get(stage):
            parts.append(f"{stage}={runtime.timings.samples[stage][-1]:.1f}ms")
    pool = runtime.pool()
    parts.append(f"loop_lag_max={runtime.loop_lag.max_ms:.1f}ms")
    parts.append(f"pool_max_queued={pool.max_queued}")
    env.err("timings: " + " ".join(parts))


def render_degraded(env: Env, result: SearchResult) -> None:
    for d in result.degraded:
        env.warn(f"source {d.source} degraded: {d.reason}")


def render_hits(env: Env, result: SearchResult) -> None:
    """Hits for a person: the location on a line of its own, never wrapped or cut by rag (so
    `path:line` can be copied whole), the heading trail, then the passage; no fusion score (it means
    nothing to a reader), but the source when the hit is not from the local index."""
    if env.stdout_tty:
        from rich.padding import Padding
        from rich.text import Text

        con = env.console("stdout")
        for i, h in enumerate(result.hits, start=1):
            where = Text(f"{i:>2}. ", style="bold")
            where.append(clean(h.url or rel(h.location)), style="bold cyan")
            if h.heading:
                where.append("  " + clean(" > ".join(h.heading)), style="dim")
            if h.source not in ("dense", "bm25", "dense+bm25", "bm25+dense"):
                where.append(f"  ({clean(h.source)})", style="magenta")
            con.print(where, soft_wrap=True)
            con.print(Padding(Text(clean(snippet(h.text, 240))), (0, 0, 0, 4)))
        return
    for i, h in enumerate(result.hits, start=1):
        place = h.url or rel(h.location)
        head = f" [{' > '.join(h.heading)}]" if h.heading else ""
        env.out(f"{i}. {place}{head} ({h.score:.3f}, {h.source})")
        env.out(f"   {snippet(h.text)}")


@app.command("search")
def search_cmd(
    query: Annotated[
        str, typer.Argument(metavar="QUERY", help="What to look for ('-' reads it from stdin).", show_default=False)
    ],
    index: IndexOpt = None,
    k: KOpt = None,
    mode: ModeOpt = None,
    json_out: JsonOpt = False,
    files: Annotated[bool, typer.Option("--files", help="Print unique file paths only, one a line.")] = False,
    timings: Annotated[bool, typer.Option("--timings", help="Print per-source timings on stderr.")] = False,
    path: PathOpt = None,
    type_: TypeOpt = None,
    since: SinceOpt = None,
    timeout: TimeoutOpt = None,
    server: ServerOpt = None,
    workers: WorkersOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Search the index (and configured remote sources) without generating an answer."""
    from .. import runtime
    from ..errors import UsageError
    from ..retrieve.client import open_retrieval

    env = get_env()
    query = text_arg(env.read_stdin().strip() if query == "-" else query)
    if not query.strip():
        raise UsageError("the query is empty")
    flt = filter_from(path, type_, since)
    settings = settings_from(
        config,
        store_url=store,
        index=index,
        retrieve_k=k,
        retrieve_mode=mode,
        retrieve_timeout=timeout,
        workers=workers,
        server=server,
    )

    async def go() -> SearchResult:
        async with open_retrieval(settings, env.warn) as r:
            await r.prepare()
            runtime.loop_lag.reset()  # report the lag of the query, not of start-up
            result: SearchResult = await r.search(query, filter=flt)
            return result

    from ..errors import RagError

    try:
        result = runtime.run(go(), workers=settings.effective_workers())
    except RagError as exc:  # a script reading --json gets an object for every failure, as from `ask --json`
        if json_out:
            env.json({"query": query, "hits": [], "error": exc.message, "exit_code": exc.exit_code})
        raise
    render_degraded(env, result)
    if json_out:
        out = result.to_dict()
        out["timings"] = result.timings
        env.json(out)
    elif files:
        seen: list[str] = []
        for h in result.hits:
            p = h.path or h.url
            if p and p not in seen:
                seen.append(p)
                env.out(p)
    else:
        if not result.hits:
            env.err("no results")
        render_hits(env, result)
    if timings:
        render_timings(env, result)
