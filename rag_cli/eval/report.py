"""Reports: a table (methods as rows, metrics as columns) and comparison with a saved baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UsageError


def table_rows(results: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    metrics: list[str] = []
    for m in results.values():
        for k in m:
            if k not in metrics:
                metrics.append(k)
    rows = []
    for method, m in results.items():
        rows.append([method] + [("—" if m.get(k) is None else f"{m[k]:.4f}") for k in metrics])
    return ["method", *metrics], rows


def render(env: Any, title: str, results: dict[str, dict[str, Any]]) -> None:
    header, rows = table_rows(results)
    if env.stdout_tty:
        from rich.table import Table

        t = Table(title=title, header_style="bold")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i == 0 else "right")
        for r in rows:
            t.add_row(*r)
        env.console("stdout").print(t)
        return
    env.out(title)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    env.out("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        env.out("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"baseline not found: {path}") from None
    except ValueError:
        raise UsageError(f"baseline is not JSON: {path}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise UsageError(f"baseline has no 'results': {path}")
    return data


def regressions(current: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]], tolerance: float) -> list[str]:
    """Metrics (higher is better) that dropped by more than ``tolerance`` against the baseline."""
    out = []
    for method, metrics in baseline.items():
        now = current.get(method)
        if now is None:
            continue
        for name, old in metrics.items():
            new = now.get(name)
            if isinstance(old, int | float) and isinstance(new, int | float) and new < old - tolerance:
                out.append(f"{method} {name}: {new:.4f} < baseline {old:.4f} - {tolerance:g}")
    return out
