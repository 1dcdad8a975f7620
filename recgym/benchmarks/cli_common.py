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
