"""Batched torch envs (see DESIGN.md). Attributes are imported lazily so `import recgym` stays light."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "BatchedEnv": "recgym.envs.core",
    "SingleEnvAdapter": "recgym.envs.core",
    "RecEnv": "recgym.envs.rec",
    "RecState": "recgym.envs.rec",
    "GroundTruthRecEnv": "recgym.envs.rec",
    "PROTOCOLS": "recgym.envs.protocol",
    "MODES": "recgym.envs.protocol",
    "Protocol": "recgym.envs.protocol",
    "resolve_protocol": "recgym.envs.protocol",
    "evaluate": "recgym.envs.evaluation",
    "to_sb3": "recgym.envs.sb3",
    "ContinuousItemActionWrapper": "recgym.envs.sb3",
    "check_vector_env": "recgym.envs.checker",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'recgym.envs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
