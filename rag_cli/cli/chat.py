"""`rag chat`: an interactive REPL over the answer pipeline (scriptable through stdin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app
from .ask import BaseUrlOpt, FallbackOpt, LlmOpt, ModelOpt, Renderer, llm_settings
from .common import ConfigOpt, IndexOpt, KOpt, ModeOpt, ServerOpt, WorkersOpt
from .output import Env, get_env


def _lines(env: Env, history: Path) -> Iterator[str]:
    """Questions: prompt_toolkit with history and line editing on a terminal, else stdin lines."""
    if env.stdin_tty and env.stdout_tty:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        history.parent.mkdir(parents=True, exist_ok=True)
        session: Any = PromptSession(history=FileHistory(str(history)))
        while True:
            try:
                yield session.prompt("rag> ")
            except EOFError:
                return
            except KeyboardInterrupt:
                continue  # Ctrl-C clears the line; Ctrl-D leaves
    else:
        yield from env.stdin_lines()


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
    server: ServerOpt = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Chat with your documents: follow-up questions, cited answers, /help for commands."""
    from .. import runtime
    from ..answer import answer
    from ..chat import ChatState
    from ..errors import LLMError, NoRelevantPassages
    from ..retrieve.client import open_retrieval

    env = get_env()
    settings = llm_settings(
        config, index=index, answer_k=k, retrieve_mode=mode, llm_backend=llm, llm_model=model, llm_base_url=base_url,
        fallback=fallback, workers=workers, server=server,
    )  # fmt: skip
    state = ChatState(k=settings.answer_k, mode=settings.retrieve_mode, llm=settings.llm_backend)
    interactive = env.stdin_tty and env.stdout_tty

    async def go() -> None:
        async with open_retrieval(settings, env.warn, long_lived=True) as r:
            await r.prepare()
            if interactive:
                env.err("rag chat: ask about your documents; /help for commands, Ctrl-D to leave")
            for line in _lines(env, settings.home / "chat_history"):
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
                try:
                    with Renderer(env, timings) as view:
                        async for ev in answer(question, r, settings, k=state.k, mode=state.mode,
                                               backends=[state.llm, *settings.llm_fallback], query=query):  # fmt: skip
                            view.event(ev)
                            if ev.kind == "done":
                                state.last = ev.data
                                state.turns.append((question, query, ev.data.answer))
                except (NoRelevantPassages, LLMError) as exc:
                    env.err(f"rag: {exc}")
                env.out("")

    runtime.run(go(), workers=settings.effective_workers())
