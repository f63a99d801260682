"""The layering rule, checked (`make lint`): a module of rag_cli imports only from its own layer's package or
from layers below it, and only public names (no ``_private`` name of another module).

Layers, top to bottom (docs/architecture.md):

1. cli, server, __main__                       the command line and the HTTP server
2. pipeline, eval                              the answer pipeline (and its evaluation)
3. retrieve, ingest, llm                       retrieval, indexing, generation
4. embed, store                                embeddings and storage
5. runtime, resilience, plugins                the pool, the loop, retry/backoff/redaction, plugin loading
6. config, errors, types, text, logs           plain base modules (logs: the `rag` logger)

The package's `__init__` is its face (layer 0). Peers within a layer may use each other: cli and server, the
answer pipeline's modules, the base modules. Across other units of one layer (retrieve and llm) an import is
sideways and refused. Imports inside functions count too (lazy imports are still
dependencies). Exit 1 with one line per violation.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rag_cli"
LAYERS: dict[str, int] = {
    **dict.fromkeys(("cli", "server", "__main__"), 1),
    **dict.fromkeys(("pipeline", "eval"), 2),
    **dict.fromkeys(("retrieve", "ingest", "llm"), 3),
    **dict.fromkeys(("embed", "store"), 4),
    **dict.fromkeys(("runtime", "resilience", "plugins"), 5),
    **dict.fromkeys(("config", "errors", "types", "text", "logs"), 6),
    "__init__": 0,  # the package's face: `import rag_cli` offers the main entry points of every layer
}
# units of one layer that form one whole and may use each other: the command line and the server it starts;
# the answer pipeline and its evaluation; the plain base modules (errors below them all)
PEERS = [
    {"cli", "server", "__main__"},
    {"pipeline", "eval"},
    {"config", "errors", "types", "text", "logs"},
]


def unit(module: str) -> str:
    """The layer unit of a dotted module under rag_cli: its top-level package or module."""
    return module.split(".")[0]


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module under rag_cli, names imported) for every import of ``path`` within rag_cli."""
    rel = path.relative_to(root).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from (an __init__ is its own)
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("rag_cli"):
                target = node.module[len("rag_cli") :].lstrip(".")
            else:
                continue
            names = [a.name for a in node.names]
            if not node.module:  # from . import x: x is a module (a dunder of the package is its metadata)
                out += [(node.lineno, ".".join([*base, a]), []) for a in names if not a.startswith("__")]
            else:
                out.append((node.lineno, target, names))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("rag_cli."):
                    out.append((node.lineno, a.name[len("rag_cli.") :], []))
    return out


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        me = unit(".".join(rel.parts))
        mine = LAYERS.get(me)
        if mine is None:
            found.append(f"{path}: module {me} has no layer in scripts/check_layers.py")
            continue
        for line, target, names in imports(path, root):
            if not target:
                continue
            other = unit(target)
            theirs = LAYERS.get(other)
            where = f"{path.relative_to(root.parent)}:{line}"
            if theirs is None:
                found.append(f"{where}: imports {target}, which has no layer")
            elif theirs < mine:
                found.append(
                    f"{where}: imports {target} from a layer above ({other}, layer {theirs} > {me}, layer {mine})"
                )
            elif theirs == mine and other != me and not any(me in g and other in g for g in PEERS):
                found.append(f"{where}: imports {target} sideways ({me} and {other} share layer {mine})")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                found.append(f"{where}: imports private {', '.join(private)} from {target}")
    return found


def main() -> int:
    found = violations()
    for v in found:
        print(v)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
