"""`rag ask QUESTION`: a streamed, cited answer from the index (and remote sources)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import Settings
from .app import app
from .common import (
    ConfigOpt,
    IndexOpt,
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

LlmOpt = Annotated[str | None, typer.Option("--llm", help="LLM backend: local | openai | none (default local).")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="GGUF path (local) or model name (openai).")]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1.")
]
FallbackOpt = Annotated[
    str | None, typer.Option("--fallback", help="Comma-separated backends to try next (default: none).")
]


def llm_settings(config: Path | None, **kw: Any) -> Settings:
    fallback = kw.pop("fallback", None)
    s = settings_from(config, **kw)
    if fallback is not None:
        s.llm_fallback = [f.strip() for f in fallback.split(",") if f.strip()]
    from ..llm.base import require

    require(s.llm_backend, *s.llm_fallback)  # a typo fails here (plugins are loaded), not after retrieval
    if "local" in (s.llm_backend, *s.llm_fallback) and s.llm_model:
        from ..llm.local import model_ref

        model_ref(s)  # a --model that is no file fails here, before any retrieval
    return s


def read_question(env: Env, question: str | None) -> str:
    from ..errors import UsageError

    if question == "-" or (question is None and not env.stdin_tty):
        question = env.read_stdin()
    if question is None or not question.strip():
        raise UsageError("no question given (pass it as an argument or on stdin)")
    return text_arg(question).strip()


def read_context(env: Env, context: str | None, used_stdin: bool) -> str:
    from ..errors import PathNotFound, UsageError

    if not context:
        return ""
    if context == "-":
        if used_stdin:
            raise UsageError("stdin cannot carry both the question and --context -")
        data = env.read_stdin_bytes(CONTEXT_MAX_BYTES + 1)
    else:
        path = Path(context)
        if path.is_dir():
            raise UsageError(f"--context {context} is a folder", hint="give a file, or '-' for stdin")
        if not path.exists():
            raise PathNotFound(f"--context file not found: {context}")
        if not path.is_file():
            raise UsageError(f"--context {context} is not a regular file", hint="pipe it in with --context -")
        try:
            with open(path, "rb") as fh:
                data = fh.read(CONTEXT_MAX_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read --context {context}: {exc.strerror or exc}") from None
    if len(data) > CONTEXT_MAX_BYTES:
        env.warn(
            f"--context is over {CONTEXT_MAX_BYTES // 2**20} MiB: only its first {CONTEXT_MAX_BYTES // 2**20} MiB "
            "are read (the prompt holds far less; index large material with `rag index` instead)"
        )
        data = data[:CONTEXT_MAX_BYTES]
    return data.decode("utf-8", "replace")


CONTEXT_MAX_BYTES = 4 * 2**20  # --context read at most (a prompt holds a few thousand tokens of it)


@contextlib.asynccontextmanager
async def context_only(settings: Settings) -> Any:
    """Retrieval with no index and no remote sources, but the embedding model (evidence and verification use it)."""
    from dataclasses import replace

    from ..embed import base as embed_base
    from ..retrieve.service import Retrieval

    async with Retrieval(replace(settings, sources=[]), use_index=False) as r:
        r.embedder = embed_base.create(settings)
        await r.load_model()
        yield r


def _hide_echo(env: Env) -> Any:
    """Stop the terminal echoing control keys as ``^C`` (returns what to restore, or None off a terminal)."""
    if not env.stdin_tty:
        return None
    try:
        import termios

        fd = env.stdin.fileno()
        old = termios.tcgetattr(fd)
        new = list(old)
        new[3] &= ~getattr(termios, "ECHOCTL", 0)
        termios.tcsetattr(fd, termios.TCSANOW, new)
        return fd, old
    except (ImportError, OSError, ValueError, AttributeError):
        return None


def _restore_echo(saved: Any) -> None:
    if saved is None:
        return
    import termios

    try:
        termios.tcsetattr(saved[0], termios.TCSANOW, saved[1])
    except (OSError, ValueError):
        pass


class Renderer:
    """Renders answer events for a terminal (live Markdown) or a pipe (plain text, flushed)."""

    def __init__(self, env: Env, show_timings: bool) -> None:
        self.env = env
        self.tty = env.stdout_tty
        self.show_timings = show_timings
        self.text = ""
        self.live: Any = None
        self.status: Any = None
        self.spinner: Any = None
        self._echo: Any = None
        self.sources: list[dict[str, Any]] = []
        self.view = ""  # what the terminal shows: the answer, and the sentences left out struck through
        self.draft = ""  # the model's words not yet checked (dimmed)

    def __enter__(self) -> Renderer:
        # on a terminal, a transient status on stderr fills the wait before the first token (retrieval,
        # loading the model, reading the passages); it is gone once tokens flow
        if self.tty and self.env.stderr_tty:
            from rich.live import Live
            from rich.spinner import Spinner

            # drawn at once (Rich's console.status() draws its first frame a refresh later, so a short
            # wait showed nothing of it), and again at each change
            self.spinner = Spinner("dots", "searching the index and loading the model…", style="status.spinner")
            self.status = Live(
                self.spinner, console=self.env.console("stderr"), refresh_per_second=12.5, transient=True
            )
            self.status.start(refresh=True)
        return self

    def _quiet(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def __exit__(self, *exc: object) -> None:
        self._quiet()
        if self.live is not None:
            self._stop_live()
        elif self.text and not self.text.endswith("\n"):
            self.env.out("")

    def _start_live(self) -> None:
        from rich.live import Live

        # no "^C" echo while the answer redraws in place: it would move the cursor under Rich, whose
        # last redraw then repeats the first lines of the partial answer
        self._echo = _hide_echo(self.env)
        self.live = Live(console=self.env.console("stdout"), refresh_per_second=12, transient=False)
        self.live.start()

    def _stop_live(self) -> None:
        try:
            self.live.stop()
        finally:
            self.live = None
            _restore_echo(self._echo)
            self._echo = None

    def event(self, ev: Any) -> None:
        if ev.kind == "sources":
            self.sources = ev.data
            if self.status is not None:
                self.spinner.update(text=f"reading {len(ev.data)} passages…")
                self.status.refresh()
            return
        if ev.kind in ("draft", "verdict"):
            # the model's words as it writes them, dimmed until their sentence is checked: on a terminal only
            # (plain output cannot take text back, so it prints each sentence once it is checked)
            if self.tty:
                self._quiet()
                self._draft(ev)
            return
        self._quiet()
        if ev.kind == "token":
            self.text += ev.data
            self.view += ev.data
            if self.tty:
                self._show()
            else:
                self.env.write(ev.data)
        elif ev.kind == "warning":
            self.env.warn(ev.data)
        elif ev.kind == "done":
            self.done(ev.data)

    def _draft(self, ev: Any) -> None:
        if ev.kind == "draft":
            self.draft += ev.data
        else:  # a sentence was checked: it leaves the draft; one left out stays visible, struck through
            raw = ev.data["raw"]
            self.draft = self.draft[len(raw) :] if self.draft.startswith(raw) else self.draft[len(raw) :].lstrip()
            if not ev.data["shown"] and raw.strip():
                self.view += f"~~{_no_marks(raw.strip())}~~ "
        self._show()

    def _show(self) -> None:
        from rich.console import Group
        from rich.markdown import Markdown
        from rich.text import Text

        if self.live is None:
            self._start_live()
        parts: list[Any] = [Markdown(clean(self.view))] if self.view.strip() else []
        if self.draft.strip():
            parts.append(Text(clean(self.draft.strip()), style="dim"))
        self.live.update(Group(*parts))

    def done(self, result: Any) -> None:
        if self.live is not None:
            self._stop_live()
        elif self.text and not self.text.endswith("\n"):
            self.env.out("")
        self.text = self.view = self.draft = ""
        cited = [s for s in result.source_dicts() if s["n"] in result.citations]
        heading = "Sources:" if cited else "Passages used (none cited):"
        shown = cited or result.source_dicts()
        lines = [heading] + [
            f"  [{s['n']}] {label}" + (f" — {s['title']}" if s["title"] else "")
            for s, label in zip(shown, source_labels(shown), strict=True)
        ]
        if self.tty:
            con = self.env.console("stdout")
            con.print()
            con.print(lines[0], style="bold")
            for ln in lines[1:]:
                con.print(clean(ln), markup=False, highlight=False)
        else:
            self.env.out("")
            for ln in lines:
                self.env.out(ln)
        if self.show_timings:
            t = result.timings
            self.env.err("timings: " + " ".join(f"{k}={v}" for k, v in t.items()) + f" backend={result.backend}")


def source_labels(sources: list[dict[str, Any]]) -> list[str]:
    """Each source's location as the Sources list shows it: a passage with no line or page to point at (a Word
    document's) names its section, ``report.docx § Hotels``; two passages of one place (two chunks of a PDF
    page) are told apart as "(passage 1)", "(passage 2)" in their order, instead of one label twice."""
    labels = [s["url"] or rel(s["location"]) + _section(s) for s in sources]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(f"{label} (passage {seen[label]})" if labels.count(label) > 1 else label)
    return out


def _section(source: dict[str, Any]) -> str:
    """`` § HEADING`` (the passage's innermost heading) for a source located by its path alone, else ""."""
    heading = source.get("heading") or []
    if source.get("start_line") is None and source.get("page") is None and heading:
        return f" § {heading[-1]}"
    return ""


def _no_marks(text: str) -> str:
    """A left-out sentence as struck-through Markdown: its own ``~`` and emphasis marks cannot end the strike."""
    return text.replace("~", "\\~").replace("*", "\\*").replace("_", "\\_")


def served_event(kind: str, data: dict[str, Any]) -> Any | None:
    """A warm server's ``/ask`` event (its `--jsonl` object) back as the pipeline's Event."""
    from ..pipeline.answer import AnswerResult, Event

    if kind == "sources":
        return Event("sources", data.get("sources") or [])
    if kind in ("token", "draft"):
        return Event(kind, str(data.get("text") or ""))
    if kind == "verdict":
        return Event("verdict", data)
    if kind == "warning":
        return Event("warning", str(data.get("message") or ""))
    return Event("done", AnswerResult.from_dict(data)) if kind == "done" else None  # a kind of a newer server


async def _after(first: Any, rest: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """``first``, then what ``rest`` yields."""
    yield first
    async for item in rest:
        yield item


async def answer_stream(env: Env, question: str, r: Any, settings: Settings, **kw: Any) -> AsyncGenerator[Any, None]:
    """The answer's events: from a warm ``rag serve`` when it answers for this process (same reader
    settings, no ``--context``), else in-process, as when the server cannot be reached at all."""
    from ..pipeline.answer import answer, answer_k
    from ..retrieve.client import ServerRetrieval, ServerUnavailable

    if isinstance(r, ServerRetrieval) and r.answers and not kw.get("extra_context", "").strip():
        backends = kw.get("backends")
        events = r.ask(
            question,
            query=kw.get("query"),
            k=kw.get("k") or answer_k(settings),
            mode=kw.get("mode") or settings.retrieve_mode,
            llm=backends[0] if backends else None,
            filter=kw.get("filter"),
        )
        try:
            first = await anext(events)
        except ServerUnavailable as exc:
            if settings.server not in ("auto", ""):
                env.warn(f"server {r.url} did not answer ({exc}); answering in-process")
        except StopAsyncIteration:
            return
        else:
            async with contextlib.aclosing(events):
                async for kind, data in _after(first, events):
                    if (ev := served_event(kind, data)) is not None:
                        yield ev
            return
    async for ev in answer(question, r, settings, **kw):
        yield ev


async def render(env: Env, events: AsyncGenerator[Any, None], form: str, timings: bool = False) -> Any:
    """Show an answer's events as ``form`` asks (JSON Lines, warnings only for one JSON object at the end,
    or text: live on a terminal, plain into a pipe); returns the result (None if it never came)."""
    from ..pipeline.answer import jsonl_event

    result = None
    if form == "text":
        with Renderer(env, timings) as view:
            async for ev in events:
                view.event(ev)
                result = ev.data if ev.kind == "done" else result
        return result
    async for ev in events:
        if form == "jsonl":
            env.json(jsonl_event(ev))
        elif ev.kind == "warning":
            env.warn(ev.data)
        result = ev.data if ev.kind == "done" else result
    return result


@app.command("ask")
def ask_cmd(
    question: Annotated[
        str | None,
        typer.Argument(metavar="[QUESTION]", help="The question ('-' or none: read from stdin).", show_default=False),
    ] = None,
    index: IndexOpt = None,
    k: KOpt = None,
    mode: ModeOpt = None,
    llm: LlmOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    fallback: FallbackOpt = None,
    context: Annotated[
        str | None, typer.Option("--context", help="Context to answer from first: a file, or '-' for stdin.")
    ] = None,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Answer from --context alone, without searching an index.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object when done.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Stream events as JSON Lines.")] = False,
    timings: Annotated[bool, typer.Option("--timings", help="Print the stage breakdown on stderr.")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Print the evidence and each sentence's verification on stderr.")
    ] = False,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Cap on answer tokens (default 256).")
    ] = None,
    path: PathOpt = None,
    type_: TypeOpt = None,
    since: SinceOpt = None,
    timeout: TimeoutOpt = None,
    server: ServerOpt = None,
    workers: WorkersOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Answer a question from the index, citing numbered sources."""
    from .. import runtime
    from ..errors import AllSourcesFailed, LLMError, NoRelevantPassages
    from ..retrieve.client import open_retrieval

    env = get_env()
    used_stdin = question == "-" or (question is None and not env.stdin_tty)
    if context == "-" and question is None:
        from ..errors import UsageError

        raise UsageError("with --context -, give the question as an argument")
    flt = filter_from(path, type_, since)
    q = read_question(env, question)
    extra = read_context(env, context, used_stdin)
    settings = llm_settings(
        config,
        store_url=store,
        index=index,
        answer_k=k,
        retrieve_mode=mode,
        llm_backend=llm,
        llm_model=model,
        llm_base_url=base_url,
        fallback=fallback,
        llm_max_tokens=max_tokens,
        retrieve_timeout=timeout,
        workers=workers,
        server=server,
    )

    if no_index and not extra.strip():
        from ..errors import UsageError

        raise UsageError("--no-index answers from --context alone: give --context FILE or --context -")
    from ..store import base as store_base

    alone = bool(extra.strip()) and (no_index or not store_base.exists(settings))
    if alone and not no_index:
        env.warn(f"no index {settings.index!r}: answering from the context alone")
    name = "stdin" if context == "-" else str(context)

    async def go() -> Any:
        async with context_only(settings) if alone else open_retrieval(settings, env.warn) as r:
            await r.prepare()
            events = answer_stream(env, q, r, settings, extra_context=extra, context_name=name, filter=flt)
            return await render(env, events, "jsonl" if jsonl else "json" if json_out else "text", timings)

    try:
        result = runtime.run(go(), workers=settings.effective_workers())
    except (NoRelevantPassages, LLMError, AllSourcesFailed) as exc:
        # scripts get an object on stdout for every answer that could not be given (exit 7, 8, 6)
        if json_out or jsonl:
            payload: dict[str, Any] = {
                "question": q,
                "answer": None,
                "error": exc.message,
                "exit_code": exc.exit_code,
                "citations": [],
                "sources": [],
            }
            env.json({"event": "done", **payload} if jsonl else payload)
        raise
    if json_out and result is not None:
        env.json(result.to_dict())
    if explain and result is not None:
        explain_result(env, result)
    for d in result.degraded if result is not None else []:
        env.warn(f"source {d.source} degraded: {d.reason}")
    if result is not None and not result.complete:
        raise typer.Exit(1)  # a partial answer: exit 1 through the CLI's one boundary


def explain_result(env: Env, result: Any) -> None:
    """What the answer was made from and how each sentence checked out, on stderr."""
    sys.stdout.flush()  # the answer first
    prov = result.provenance
    model = prov.get("model") or {}
    env.err(
        f"explain: index {prov.get('index')} (generation {prov.get('generation')}), prompt {prov.get('prompt')}, "
        f"backend {prov.get('backend')} {model.get('name', '')}".rstrip()
    )
    if prov.get("best_evidence") is not None:
        env.err(
            f"  best evidence sentence scores {prov['best_evidence']:.2f} ([answer] min_evidence "
            f"{prov.get('min_evidence', 0):g}: declined under it)"
        )
    for ev in result.evidence:
        env.err(clean(f"  evidence [{ev['n']}] {ev['url'] or rel(ev['location'] or '')}: {ev['text']}"))
    for v in result.sentences:
        mark = "quoted" if v.quoted else "verified" if v.verified else "unverified"
        how = f", re-cited to {v.citations}" if v.recited else ""
        env.err(clean(f"  {mark} (support {v.support:.2f}{how}): {v.text}"))
    for d in result.dropped:
        env.err(clean(f"  left out ({d['reason']}, support {d['support']:.2f}): {d['text']}"))
