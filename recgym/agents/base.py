"""The agent API: a small protocol, a registry, and `make_agent`.

An agent is anything with ``act``, ``learn``, ``save`` and ``load`` (no base class to inherit). Built-in agents
register a factory with `register_agent`; third-party packages do the same, or expose a factory under the
``recgym.agents`` entry-point group (``name = "pkg.module:factory"``), discovered on first lookup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Logger(Protocol):
    """What agents log through (TensorBoard writer wrapper, JSON-lines writer, or both)."""

    def log_scalar(self, tag: str, value: float, step: int) -> None: ...


@runtime_checkable
class Agent(Protocol):
    """A policy that can act in a recgym env, learn from it, and be saved."""

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        """Batched actions for a batched observation, on the env's device."""
        ...

    def learn(self, env: Any, budget: int, logger: Logger | None = None) -> None:
        """Train for ``budget`` env steps (or iterations, as the agent documents)."""
        ...

    def save(self, path: str) -> None: ...

    def load(self, path: str) -> None: ...


AgentFactory = Callable[..., Agent]

_REGISTRY: dict[str, AgentFactory] = {}
_ENTRY_POINTS_LOADED = False


def register_agent(name: str, factory: AgentFactory, *, overwrite: bool = False) -> None:
    """Register ``factory(env, **config) -> Agent`` under ``name``."""
    if not overwrite and name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"agent {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = factory


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group="recgym.agents"):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ep.load()


def _load_builtin() -> None:
    # Importing the package registers the built-in agents (each module calls register_agent).
    import recgym.agents  # noqa: F401


def registered_agents() -> list[str]:
    """Names of every agent that `make_agent` can build."""
    _load_builtin()
    _load_entry_points()
    return sorted(_REGISTRY)


def make_agent(name: str, env: Any, **config: Any) -> Agent:
    """Build the agent registered as ``name`` for ``env``; ``config`` overrides its dataclass fields."""
    _load_builtin()
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown agent {name!r}; registered agents: {sorted(_REGISTRY)}")
    return _REGISTRY[name](env, **config)


def build_config(config_cls: type, overrides: dict[str, Any], agent: str) -> Any:
    """Instantiate a config dataclass, rejecting unknown fields with the list of valid ones."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{agent}: unknown config field(s) {unknown}; valid fields: {sorted(names)}")
    return config_cls(**overrides)
