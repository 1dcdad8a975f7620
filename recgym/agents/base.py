"""The agent API: a small protocol, a registry, and `make_agent`.

An agent is anything with ``act``, ``learn``, ``save`` and ``load`` (no base class to inherit). Built-in agents
register a factory with `register_agent`; third-party packages do the same, or expose a factory under the
``recgym.agents`` entry-point group (``name = "pkg.module:factory"``), discovered on first lookup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable


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

    def learn(self, env: Any, budget: int, logger: Logger | None = None, eval_env: Any | None = None) -> None:
        """Train in ``env`` for ``budget`` units of its config's ``budget_unit``; evaluate in ``eval_env``."""
        ...

    def save(self, path: str) -> None: ...

    def load(self, path: str) -> None: ...


BudgetUnit = Literal["env_steps", "gradient_steps", "iterations"]


@dataclass
class AgentConfig:
    """Fields every agent config has; the runner sets them for each run.

    ``budget_unit`` (a class variable) says what the ``budget`` of ``learn`` counts: env steps, gradient
    steps or iterations. The CLI help and the reports print it.
    """

    budget_unit: ClassVar[BudgetUnit] = "env_steps"

    seed: int = 0
    eval_every: int = 0  # budget units between evaluations (0 = only at the end)
    eval_episodes: int = 100
    progress: bool = True


AgentFactory = Callable[[Any, Any], Agent]


@dataclass(frozen=True)
class AgentSpec:
    """One registered agent: its config class, its factory ``factory(env, config)`` and where it trains.

    ``train_env`` (a `recgym.envs.derive.TrainEnvSpec`) is set for methods that train in another env family
    than the one they are evaluated in (the world-model methods: an A2C plus an ``InteractiveRec`` reward
    preset); None means the agent trains in the env it is given.
    """

    name: str
    config_cls: type
    factory: Callable[..., Agent]
    train_env: Any = None
    legacy: bool = False  # factory(env, **config) registered with the old two-argument form

    @property
    def budget_unit(self) -> str:
        return str(getattr(self.config_cls, "budget_unit", "env_steps"))


_REGISTRY: dict[str, AgentSpec] = {}
_ENTRY_POINTS_LOADED = False


def register_agent(name: str, config_cls: Any, factory: Callable[..., Agent] | None = None, *,
                   train_env: Any = None, overwrite: bool = False) -> None:
    """Register agent ``name``: ``factory(env, config)`` builds it from an instance of ``config_cls``.

    ``train_env`` is a `recgym.envs.derive.TrainEnvSpec` for methods that train in another env family than
    their evaluation env. (Transitional: ``register_agent(name, factory)`` registers an old-style
    ``factory(env, **config)``.)
    """
    if factory is None:
        spec = AgentSpec(name=name, config_cls=object, factory=config_cls, train_env=train_env, legacy=True)
    else:
        if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
            raise TypeError(f"register_agent({name!r}): config_cls must be a dataclass type, got {config_cls!r}")
        spec = AgentSpec(name=name, config_cls=config_cls, factory=factory, train_env=train_env)
    old = _REGISTRY.get(name)
    if not overwrite and old is not None and old.factory is not spec.factory:
        raise ValueError(f"agent {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = spec


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group="recgym.agents"):
        if ep.name not in _REGISTRY:
            obj = ep.load()
            if isinstance(obj, AgentSpec):
                _REGISTRY[ep.name] = obj
            else:  # a module that registers its agents on import, or an old-style factory
                if ep.name not in _REGISTRY and callable(obj):
                    register_agent(ep.name, obj)


def _load_builtin() -> None:
    # Importing the package registers the built-in agents (each module calls register_agent).
    import recgym.agents  # noqa: F401


def registered_agents() -> list[str]:
    """Names of every agent that `make_agent` can build."""
    _load_builtin()
    _load_entry_points()
    return sorted(_REGISTRY)


def agent_spec(name: str) -> AgentSpec:
    """The registry entry of ``name`` (ValueError listing the registered names when unknown)."""
    _load_builtin()
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown agent {name!r}; registered agents: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def make_agent(name: str, env: Any, **config: Any) -> Agent:
    """Build the agent registered as ``name`` for ``env``; ``config`` overrides its config dataclass fields."""
    spec = agent_spec(name)
    if spec.legacy:
        return spec.factory(env, **config)
    return spec.factory(env, build_config(spec.config_cls, config, name))


def build_config(config_cls: type, overrides: dict[str, Any], agent: str) -> Any:
    """Instantiate a config dataclass, rejecting unknown fields with the list of valid ones."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{agent}: unknown config field(s) {unknown}; valid fields: {sorted(names)}")
    return config_cls(**overrides)
