"""`rag chat`: an interactive REPL over the answer pipeline (scriptable through stdin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app
from .ask import BaseUrlOpt, FallbackOpt, LlmOpt, ModelOpt, Renderer, answer_stream, llm_settings
from .common import (
    ConfigOpt,
    IndexOpt,
    KOpt,
    ModeOpt,
    PathOpt,
    ServerOpt,
    SinceOpt,
    StoreOpt,
    TypeOpt,
    WorkersOpt,
    filter_from,
)
from .output import Env, get_env


async def _lines(env: Env, history: Path) -> AsyncIterator[str]:
    """Questions: prompt_toolkit's async prompt (history, line editing) on a terminal, else stdin lines.

    The prompt runs inside the event loop that also streams the answers, so it must be the async one
    (``prompt()`` would start a second loop and fail)."""
    if env.stdin_tty and env.stdout_tty:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        history.parent.mkdir(parents=True, exist_ok=True)
        session: Any = PromptSession(history=FileHistory(str(history)))
        while True:
            try:
                yield await session.prompt_async("rag> ")
            except EOFError:
                return
            except KeyboardInterrupt:
                continue  # Ctrl-C clears the line; Ctrl-D leaves
    else:
        for line in env.stdin_lines():
            yield line


async def _interruptible(coro: Any) -> bool:
    """Run ``coro``; Ctrl-C during it cancels it, not the chat. False when it was interrupted."""
    import asyncio
    import signal
    import threading

    task = asyncio.ensure_future(coro)
    if threading.current_thread() is not threading.main_thread():
        await task
        return True
    loop = asyncio.get_running_loop()
    hit = False

    def on_int(signum: int, frame: object) -> None:
        nonlocal hit
        hit = True
        loop.call_soon_threadsafe(task.cancel)

    old = signal.signal(signal.SIGINT, on_int)
    try:
        await task
    except asyncio.CancelledError:
        if not hit:
            raise
    finally:
        signal.signal(signal.SIGINT, old)
    if hit:
        await _settle()
    return not hit  # a stage that ends quietly when cancelled still counts as interrupted


async def _settle() -> None:
    """Wait for a local model load that an interrupted answer left running on the pool: llama.cpp
    points the terminal's file descriptors at /dev/null while it loads, so nothing may be printed
    (not the prompt either) until it is done."""
    import sys

    local = sys.modules.get("rag_cli.llm.local")
    if local is not None:
        from .. import runtime

        await runtime.run_blocking(local.wait_for_loads)


@app.command("chat")
def chat_cmd(
    index: IndexOpt = None,
    k: KOpt = None,
    mode: ModeOpt = None,
    llm: LlmOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    fallback: FallbackOpt = None,
    timings: Annotated[bool, typer.Option("--timings", help="Print the stage breakdown after each answer.")] = False,
    path: PathOpt = None,
    type_: TypeOpt = None,
    since: SinceOpt = None,
    server: ServerOpt = None,
    workers: WorkersOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Chat with your documents: follow-up questions, cited answers, /help for commands."""
    from .. import runtime
    from ..errors import LLMError, NoRelevantPassages
    from ..pipeline.chat import ChatState
    from ..retrieve.client import open_retrieval

    env = get_env()
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
        workers=workers,
        server=server,
    )
    from ..pipeline.answer import answer_k

    state = ChatState(
        k=answer_k(settings),
        mode=settings.retrieve_mode,
        llm=settings.llm_backend,
        filter=filter_from(path, type_, since),
    )
    interactive = env.stdin_tty and env.stdout_tty

    async def go() -> None:
        async with open_retrieval(settings, env.warn, long_lived=True) as r:
            await r.prepare()
            if interactive:
                env.err("rag chat: ask about your documents; /help for commands, Ctrl-D to leave")
            async for line in _lines(env, settings.home / "chat_history"):
                question = line.strip()
                if not question:
                    continue
                if question.startswith("/"):
                    msg, keep = state.command(question)
                    if msg:
                        env.err(msg)
                    if not keep:
                        return
                    continue
                if not interactive:
                    env.out(f"> {question}")
                query = state.standalone(question)

                async def one(question: str = question, query: str = query) -> None:
                    with Renderer(env, timings) as view:
                        async for ev in answer_stream(
                            env,
                            question,
                            r,
                            settings,
                            k=state.k,
                            mode=state.mode,
                            backends=[state.llm, *settings.llm_fallback],
                            query=query,
                            filter=state.filter,
                        ):
                            view.event(ev)
                            if ev.kind == "done":
                                state.last = ev.data
                                state.turns.append((question, query, ev.data.answer))

                try:
                    # on a terminal Ctrl-C stops the answer; a script's SIGINT ends the chat (exit 130)
                    if not interactive:
                        await one()
                    elif not await _interruptible(one()):
                        env.err("(answer interrupted)")
                except (NoRelevantPassages, LLMError) as exc:
                    env.err(f"rag: {exc}")
                env.out("")

    runtime.run(go(), workers=settings.effective_workers())
