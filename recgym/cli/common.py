"""Helpers shared by the CLI command groups."""

from __future__ import annotations

import json
from typing import Any

import typer


def parse_json_config(text: str | None, example: str) -> dict[str, Any]:
    """Parse a ``--config`` JSON object of config overrides ({} when absent); a clear error otherwise."""
    if not text:
        return {}
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as err:
        raise typer.BadParameter(f"--config must be a JSON object, e.g. '{example}' ({err})") from err
    if not isinstance(cfg, dict):
        raise typer.BadParameter("--config must be a JSON object")
    return cfg


def split_list(text: str, what: str, cast: type = str) -> list[Any]:
    """A comma-separated option as a list (``cast`` applied to each item); BadParameter naming ``what``."""
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise typer.BadParameter(f"{what} must be a comma-separated list of {cast.__name__}, got {text!r}") from err


def print_rows(title: str, rows: list[dict[str, Any]], json_out: str | None = None) -> None:
    """Rows of a measurement as a table (the same rendering as `recgym report` gives probes), optionally as JSON."""
    from recgym.benchmarks.report.probes import print_probes

    print_probes([{"name": title, "probe": None, "status": "done", "rows": rows, "text": ""}])
    if json_out:
        from recgym.data.cache import atomic_write_bytes

        atomic_write_bytes(json_out, json.dumps(rows, indent=1, default=str).encode())
