"""The Typer app and the one error boundary.

Every command module registers itself on ``app``. :func:`main` runs the app and
maps errors to exit codes and one clean line on stderr (see ``rag_cli.errors``).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Annotated

import typer

from .. import __version__, logs
from ..errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, RagError, Terminated
from .output import get_env

app = typer.Typer(
    name="rag",
    help="Local-first retrieval-augmented question answering for the command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _usage_metavar(self: typer.core.TyperArgument, ctx: object, *, usage: bool = False) -> str:
    """Arguments in usage lines as people write them: ``PATH...``, ``[QUESTION]`` (typer 0.28 prints
    a required argument as ``{PATH}``, which reads like a choice)."""
    var = self.metavar or (self.name or "").upper()
    if usage and not self.required and not var.startswith("["):
        var = f"[{var}]"
    if self.nargs != 1 and not var.endswith("..."):
        var += "..."
    return var


typer.core.TyperArgument.make_metavar = _usage_metavar  # type: ignore[method-assign]


def _version(value: bool) -> None:
    if value:
        get_env().out(f"rag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Local-first RAG: `rag index DIR`, then `rag search QUERY` or `rag ask QUESTION`."""


def _register() -> None:
    from . import index, indexes, search  # noqa: F401

    for name in ("ask", "chat", "serve", "eval_cmd", "get", "models"):
        try:
            __import__(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (``rag`` calls ``sys.exit`` with it)."""
    _register()
    env = get_env()
    logs.setup(stream=env.stderr)
    _on_sigterm_raise()
    try:
        # non-standalone typer returns the exit code of typer.Exit (and 130 for Ctrl-C) instead of raising
        rc = app(args=argv, prog_name="rag", standalone_mode=False)
        if rc == EXIT_INTERRUPTED:
            env.err("rag: interrupted")
        return rc if isinstance(rc, int) else 0
    except RagError as exc:
        env.err(f"rag: error: {exc}")
        return exc.exit_code
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except typer.Abort:
        env.err("rag: interrupted")
        return EXIT_INTERRUPTED
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        show = getattr(exc, "show", None)
        if callable(show):
            show(file=env.stderr)
        else:
            env.err(f"rag: error: {exc}")
        return int(getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)
    except KeyboardInterrupt:
        env.err("rag: interrupted")
        return EXIT_INTERRUPTED
    except Terminated:
        env.err("rag: terminated")
        return EXIT_TERMINATED
    except BrokenPipeError:
        return _broken_pipe()
    except OSError as exc:  # the safety net: a file-system error rag did not foresee, as one line
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        env.err(f"rag: error: {exc.strerror or exc}{where}")
        return 1
    except BaseExceptionGroup as group:  # a task group's failure: the first error rag knows speaks for it
        leaves = _leaves(group)
        known = next((e for e in leaves if isinstance(e, RagError | KeyboardInterrupt | Terminated)), None)
        if isinstance(known, RagError):
            env.err(f"rag: error: {known}")
            return known.exit_code
        if known is not None:
            env.err("rag: interrupted" if isinstance(known, KeyboardInterrupt) else "rag: terminated")
            return EXIT_INTERRUPTED if isinstance(known, KeyboardInterrupt) else EXIT_TERMINATED
        return _internal(env, leaves[0] if leaves else group)
    except Exception as exc:  # a bug in rag: one line and where to report it; RAG_DEBUG=1 shows the traceback
        return _internal(env, exc)


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def _internal(env: object, exc: BaseException) -> int:
    """An exception rag did not foresee: one line naming it, the traceback with RAG_DEBUG=1."""
    if os.environ.get("RAG_DEBUG"):
        import traceback

        env.err("".join(traceback.format_exception(exc)).rstrip())  # type: ignore[attr-defined]
    else:
        env.err(f"rag: internal error: {type(exc).__name__}: {exc} (a bug in rag; RAG_DEBUG=1 shows the traceback)")  # type: ignore[attr-defined]
    return 1


def _broken_pipe() -> int:
    """The reader of our stdout went away (`rag search x | head -1`): not an error."""
    try:
        sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - silence the flush at exit
    except OSError:
        pass
    return 0


def _on_sigterm_raise() -> None:
    """Outside the event loop SIGTERM unwinds like Ctrl-C (inside, runtime.run cancels the main task)."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def run() -> None:
    rc = main()
    pg = sys.modules.get("rag_cli.store.pg.common")
    if pg is not None:  # the database connections close before exit (their pool threads would wait)
        pg.close_pools()
    runtime = sys.modules.get("rag_cli.runtime")
    if runtime is not None and (runtime.abandoned() or (rc in (EXIT_INTERRUPTED, EXIT_TERMINATED) and runtime.busy())):
        # a parser stuck past its time budget, or an embedding batch of an interrupted run, still holds a pool
        # thread: do not wait for it at exit (what had to be rolled back or committed already was)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)
