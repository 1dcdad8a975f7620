"""Construction checks of a suite's entries: what `recgym bench` can tell about a run's env and agent before
anything is built (no data loaded, no model fitted).

Every env kwarg is a parameter of the env's constructor chain and the choice-valued ones are valid; the
protocol is one the env family accepts; the agent's config builds with its types; the device is a device
string. `recgym.benchmarks.suite.validate_suite` turns a problem found here into an error naming the file
and the line.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recgym.benchmarks.suite import AgentEntry, Suite


def import_plugins(modules: Iterable[str]) -> None:
    """Import the suite's ``imports`` (modules that register extra agents or envs)."""
    for mod in modules:
        importlib.import_module(mod)


_PROTOCOL_MODULES = {
    "GroundTruthRec": "recgym.envs.rec",
    "InteractiveRec": "recgym.envs.interactive",
    "DiffusionDenoise": "recgym.envs.denoise",
}


def valid_protocols(env_id: str) -> tuple[str, ...] | None:
    """Protocols an env id accepts, from its family module's ``PROTOCOLS`` (None: not known, so not checked)."""
    mod_name = _PROTOCOL_MODULES.get(env_id.split("-", 1)[0])
    if mod_name is None:
        return None
    try:
        mod = importlib.import_module(mod_name)
    except ImportError:
        return None
    protocols = getattr(mod, "PROTOCOLS", None)
    return tuple(protocols) if protocols else None


_ENV_CLASSES = {  # family -> (module, class) of the batched env its ids make (`recgym.envs.registration`)
    "GroundTruthRec": ("recgym.envs.rec", "GroundTruthRecEnv"),
    "InteractiveRec": ("recgym.envs.interactive", "InteractiveRecEnv"),
    "DiffusionDenoise": ("recgym.envs.denoise", "DiffusionDenoiseEnv"),
}
_SUITE_OWNED_KWARGS = ("num_envs", "device")  # set by [suite] / the flags, never in an env entry's kwargs


def device_problem(device: Any) -> str | None:
    """Why ``device`` is not a device string recgym accepts (None when it is): cpu, cuda, cuda:N or mps."""
    if not isinstance(device, str) or not re.match(r"^(cpu|cuda(:\d+)?|mps)$", device):
        return f"device must be cpu, cuda, cuda:N or mps, got {device!r}"
    return None


def device_unavailable(device: str) -> str | None:
    """Why ``device`` cannot be used on this machine (None when it can): no CUDA, or too few GPUs."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return f"device={device!r} but this torch build sees no CUDA device (torch.cuda.is_available() is False)"
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            return f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible"
    if device == "mps" and not torch.backends.mps.is_available():
        return "device='mps' but torch.backends.mps.is_available() is False"
    return None


def _constructor_params(family: str) -> set[str] | None:
    """Keyword parameters of a family's env class, following ``**kwargs`` up the class chain (None: unknown)."""
    import inspect

    target = _ENV_CLASSES.get(family)
    if target is None:
        return None
    cls = getattr(importlib.import_module(target[0]), target[1])
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {q.name for q in params if q.kind in (q.KEYWORD_ONLY, q.POSITIONAL_OR_KEYWORD)}
        if not any(q.kind == q.VAR_KEYWORD for q in params):
            return names - {"self"}
    return None  # the chain ends in **kwargs we cannot see: do not check names


def env_kwargs_problem(env_id: str, kwargs: dict[str, Any]) -> str | None:
    """Why ``gymnasium.make_vec(env_id, num_envs=N, device=D, **kwargs)`` would fail at construction, as far as
    can be told without loading data (None when nothing is wrong): unknown kwargs, kwargs the suite owns,
    and invalid protocol, mode, quit-rule, reward-preset, world-model, action-mode and reward values."""
    import gymnasium as gym

    family = env_id.split("-", 1)[0]
    owned = sorted(k for k in kwargs if k in _SUITE_OWNED_KWARGS)
    if owned:
        return f"{env_id}: {owned} are set by [suite] (num_envs, device) / --num-envs, --device, not by env kwargs"
    params = _constructor_params(family)
    if params is not None:
        unknown = sorted(set(kwargs) - params)
        if unknown:
            return f"{env_id}: unknown env kwarg(s) {unknown}; valid: {sorted(params - set(_SUITE_OWNED_KWARGS))}"
    dataset = kwargs.get("dataset", (gym.spec(env_id).kwargs or {}).get("dataset", ""))
    dataset = dataset if isinstance(dataset, str) else getattr(dataset, "name", "")
    try:
        if family in ("GroundTruthRec", "InteractiveRec"):
            from recgym.envs.protocol import resolve_protocol

            resolve_protocol(kwargs.get("protocol", "dorl"), dataset, "distance", mode=kwargs.get("mode"),
                             max_turn=kwargs.get("max_turn"), num_leave_compute=kwargs.get("num_leave_compute"),
                             leave_threshold=kwargs.get("leave_threshold"), quit_rule=kwargs.get("quit_rule"),
                             quit_window=kwargs.get("quit_window"))
        if family == "InteractiveRec":
            from recgym.envs.interactive import resolve_shaping
            from recgym.worldmodels import WORLD_MODELS

            wm = kwargs.get("world_model")
            if isinstance(wm, str) and wm not in WORLD_MODELS:
                return f"{env_id}: unknown world_model {wm!r}; valid: {list(WORLD_MODELS)}"
            shaping = {k: kwargs[k] for k in ("lambda_u", "lambda_ent", "lambda_int", "alpha", "beta")
                       if kwargs.get(k) is not None}
            resolve_shaping(kwargs.get("reward_preset", "r3s"), dataset, **shaping)
        if family == "DiffusionDenoise":
            from recgym.envs import denoise

            for key, valid in (("action_mode", denoise.ACTION_MODES), ("reward", denoise.REWARDS),
                               ("reward_items", denoise.REWARD_ITEMS)):
                if key in kwargs and kwargs[key] not in valid:
                    return f"{env_id}: {key}={kwargs[key]!r}, expected one of {list(valid)}"
    except (ValueError, TypeError) as exc:
        return f"{env_id}: {exc}"
    return None


def agent_config_problem(agent: AgentEntry, suite: Suite) -> str | None:
    """Why ``agent``'s config would not build (unknown field, wrong type; None when it builds), with the run
    fields the runner adds (`recgym.benchmarks.run.agent_config`)."""
    import dataclasses as dc

    from recgym.agents.base import agent_spec

    spec = agent_spec(agent.name)
    run_fields = {"seed": suite.seeds[0] if suite.seeds else 0,
                  "eval_every": suite.eval_every if agent.eval_every is None else agent.eval_every,
                  "eval_episodes": suite.eval_episodes, "progress": False}
    declared = {f.name for f in dc.fields(spec.config_cls)}
    try:
        spec.default_config(**{**{k: v for k, v in run_fields.items() if k in declared}, **agent.config})
    except (ValueError, TypeError) as exc:
        return f"agent {agent.label!r} ({agent.name}) config: {exc}"
    return None
