"""The agent API: a small protocol, a typed registry, and `make_agent`.

An agent is anything with ``act``, ``learn``, ``save`` and ``load`` (no base class to inherit). Every agent
is registered with `register_agent` as a config dataclass (a subclass of `AgentConfig`) plus a factory
``factory(env, config)``, as d3rlpy does: the registry, not the factory, checks the config, so the runner and
the CLI can list an agent's fields, defaults and budget unit without building it. Third-party packages
register the same way, or expose an `AgentSpec` under the ``recgym.agents`` entry-point group
(``name = "pkg.module:SPEC"``), discovered on first lookup.

`build_config` turns plain overrides (keyword arguments, a suite's TOML table, CLI ``key=value`` pairs parsed as
JSON) into the config: nested dataclass fields take a dict of their own fields (``tracker={"kind": "gru"}``),
unknown fields are rejected with the list of valid ones, and simple types are checked (and widened where
lossless: an int for a float field, a list for a tuple field), so a wrong value fails at construction with
the field's name and expected type instead of deep inside training.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Literal, Protocol, Union, runtime_checkable

from recgym.agents.eval_actions import parse_eval_actions


@runtime_checkable
class Logger(Protocol):
    """What agents log through (TensorBoard writer wrapper, JSON-lines writer, or both)."""

    def log_scalar(self, tag: str, value: float, step: int) -> None: ...


@runtime_checkable
class Agent(Protocol):
    """A policy that can act in a recgym env, learn from it, and be saved.

    ``learn(env, budget, logger, eval_env)``: ``env`` is the env to train in and ``eval_env`` the env to
    evaluate in (the agent picks a matching ground-truth env when it is None). ``budget`` counts units of
    its config's ``budget_unit``.
    """

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
    steps or iterations. The CLI help and the reports print it. ``eval_actions`` is how the agent acts when
    `recgym.agents.common.evaluate_agent` evaluates it (``greedy``, ``sample``, ``epsilon[:eps]``; see
    `recgym.agents.eval_actions`); the periodic evaluations of the rec-env agents (`EvalRecorder`) and the
    runner's final one use it.
    """

    budget_unit: ClassVar[BudgetUnit] = "env_steps"

    seed: int = 0
    eval_every: int = 0  # budget units between evaluations (0 = only at the end)
    eval_episodes: int = 100
    progress: bool = True
    eval_actions: str = "greedy"  # test-time actions: greedy, sample, epsilon or epsilon:<eps>

    def __post_init__(self) -> None:
        parse_eval_actions(self.eval_actions, f"{type(self).__name__}.eval_actions")


AgentFactory = Callable[[Any, Any], Agent]


@dataclass(frozen=True)
class AgentSpec:
    """One registered agent: its config class, its factory ``factory(env, config)`` and where it trains.

    ``train_env`` (a `recgym.envs.derive.TrainEnvSpec`) is set for methods that train in another env family
    than the one they are evaluated in (the world-model methods: an A2C plus an ``InteractiveRec`` reward
    preset); None means the agent trains in the env it is given. ``defaults`` are this agent's overrides of
    the config class defaults (e.g. the DAC4Rec variants, one config class with ten sets of defaults); a
    nested dataclass field takes a dict of its fields. A caller's overrides win over them.
    """

    name: str
    config_cls: type
    factory: Callable[..., Agent]
    train_env: Any = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def budget_unit(self) -> str:
        return str(getattr(self.config_cls, "budget_unit", "env_steps"))

    def default_config(self, **overrides: Any) -> Any:
        """The config this agent is built with for ``overrides`` (its defaults applied), without an env."""
        return build_config(self.config_cls, merge_overrides(self.defaults, overrides), self.name)


_REGISTRY: dict[str, AgentSpec] = {}
_ENTRY_POINTS_LOADED = False


def register_agent(name: str, config_cls: Any, factory: Callable[..., Agent], *,
                   train_env: Any = None, defaults: Mapping[str, Any] | None = None,
                   overwrite: bool = False) -> AgentSpec:
    """Register agent ``name``: ``factory(env, config)`` builds it from an instance of ``config_cls``.

    ``config_cls`` is a dataclass (normally an `AgentConfig` subclass); ``train_env`` a
    `recgym.envs.derive.TrainEnvSpec` for methods that train in another env family than their evaluation env;
    ``defaults`` this agent's own defaults (see `AgentSpec`), checked here. Returns the registered spec.
    """
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise TypeError(f"register_agent({name!r}): config_cls must be a dataclass type, got {config_cls!r}")
    spec = AgentSpec(name=name, config_cls=config_cls, factory=factory, train_env=train_env,
                     defaults=dict(defaults or {}))
    spec.default_config()  # bad defaults fail at registration, naming the field
    old = _REGISTRY.get(name)
    if not overwrite and old is not None and old.factory is not spec.factory:
        raise ValueError(f"agent {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = spec
    return spec


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group="recgym.agents"):
        if ep.name not in _REGISTRY:
            obj = ep.load()
            if isinstance(obj, AgentSpec):  # else: a module that registers its agents when imported
                _REGISTRY[ep.name] = obj


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
    return spec.factory(env, spec.default_config(**config))


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``overrides``; where both hold a dict (a nested config), the dicts are merged."""
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_overrides(out[k], v)
        else:
            out[k] = v
    return out


def build_config(config_cls: type, overrides: Mapping[str, Any], agent: str) -> Any:
    """Instantiate a config dataclass from plain overrides (see the module docstring).

    Unknown fields raise ValueError with the valid ones; a value of the wrong type raises TypeError naming
    the field (``a2c: lr='abc' is not a float``). A nested dataclass field takes an instance or a dict of its
    fields, applied on top of the field's default value.
    """
    return _build(config_cls, dict(overrides), agent, prefix="")


def _build(config_cls: type, overrides: dict[str, Any], agent: str, prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        what = f"{prefix.rstrip('.')} " if prefix else ""
        raise ValueError(f"{agent}: unknown {what}config field(s) {[prefix + u for u in unknown]}; valid fields: "
                         f"{sorted(prefix + n for n in fields)}")
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for name, value in overrides.items():
        f = fields[name]
        kwargs[name] = _coerce(value, hints.get(name, Any), f, agent, prefix + name)
    return config_cls(**kwargs)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp)


def _coerce(value: Any, tp: Any, f: dataclasses.Field | None, agent: str, path: str) -> Any:
    """``value`` checked against the annotation ``tp`` (and widened where lossless), or TypeError naming ``path``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, f, agent, path)
            except (TypeError, ValueError):
                pass
        raise TypeError(f"{agent}: {path}={value!r} is not {' or '.join(_type_name(a) for a in args)}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"{agent}: {path} takes a dict of {tp.__name__} fields, got {value!r}")
        base = _field_default(f) if f is not None else dataclasses.MISSING
        if isinstance(base, tp):
            merged = {k.name: getattr(base, k.name) for k in dataclasses.fields(tp) if k.init}
            value = {**merged, **value}
        return _build(tp, dict(value), agent, prefix=path + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"{agent}: {path}={value!r} is not a bool")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"{agent}: {path}={value!r} is not an int")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"{agent}: {path}={value!r} is not a float")
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"{agent}: {path}={value!r} is not a str")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{agent}: {path}={value!r} is not a list / tuple of {_type_name(args[0]) if args else 'values'}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], None, agent, f"{path}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise TypeError(f"{agent}: {path}={value!r} needs {len(args)} values")
        return tuple(_coerce(v, a, None, agent, f"{path}[{i}]") for i, (v, a) in enumerate(zip(args, value, strict=True)))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{agent}: {path}={value!r} is not a dict")
        return dict(value)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{agent}: {path}={value!r}; valid values: {list(args)}")
        return value
    return value  # an annotation this checker does not know: passed through unchanged
