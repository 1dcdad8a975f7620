"""Probe folders of a suite (`recgym.benchmarks.run.run_probes`) as tables: one per probe, its rows' keys as
columns (in order of first appearance), and the text it printed."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from recgym.benchmarks.probes import PROBE_FILE


def collect_probes(suite_dir: Path | str) -> list[dict[str, Any]]:
    """Every probe folder under ``suite_dir``: ``{"name", "status", "probe", "args", "rows", "text", "error"}``."""
    out = []
    for d in sorted(p for p in Path(suite_dir).iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        rec: dict[str, Any] | None = None
        if (d / PROBE_FILE).is_file():
            rec = json.loads((d / PROBE_FILE).read_text())
            rec["status"] = "done" if (d / "DONE").exists() else "incomplete"
        elif (d / "error.txt").is_file() and not any(c.is_dir() for c in d.iterdir()):
            lines = (d / "error.txt").read_text().strip().splitlines()
            rec = {"status": "failed", "rows": [], "text": "", "error": lines[-1] if lines else "unknown error"}
        if rec is not None:
            rec["name"] = d.name
            out.append(rec)
    return out


def fmt_value(v: Any) -> str:
    """Numbers at a precision that suits their size; anything else as text."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.2f}" if abs(v) >= 10 else f"{v:.4f}"
    return str(v)


def probe_columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def probes_markdown(probes: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    for p in probes:
        args = json.dumps(p.get("args", {}), default=str)
        out.write(f"\n## {p['name']} (`{p.get('probe', '?')}` {args}, {p['status']})\n\n")
        if p.get("error"):
            out.write(f"**failed**: {p['error']}\n")
        rows = p.get("rows") or []
        if rows:
            cols = probe_columns(rows)
            out.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
            for r in rows:
                out.write("| " + " | ".join(fmt_value(r.get(c)) for c in cols) + " |\n")
        if (p.get("text") or "").strip():
            out.write(f"\n```\n{p['text'].rstrip()}\n```\n")
    return out.getvalue()


def _title(p: dict[str, Any]) -> str:
    probe = p.get("probe")
    return p["name"] if not probe else f"{p['name']} ({probe}, {p['status']})"


def print_probes(probes: list[dict[str, Any]]) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 240)
    for p in probes:
        rows = p.get("rows") or []
        if rows:
            cols = probe_columns(rows)
            tab = Table(title=_title(p))
            for c in cols:
                tab.add_column(c, justify="right" if isinstance(rows[0].get(c), (int, float)) else "left")
            for r in rows:
                tab.add_row(*[fmt_value(r.get(c)) for c in cols])
            console.print(tab)
        else:
            console.print(f"[bold]{_title(p)}[/bold]")
        if p.get("error"):
            console.print(f"  [red]failed: {p['error']}[/red]")
        if (p.get("text") or "").strip():
            console.print(p["text"].rstrip(), markup=False, highlight=False)
