"""Env-id registration by entry-point strings. Must import neither torch nor any dataset."""

from __future__ import annotations


def register_envs() -> None:
    """Register every recgym env id with gymnasium (idempotent)."""
