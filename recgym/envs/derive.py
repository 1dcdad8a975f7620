"""Deriving one rec env from another: the env-family knowledge agents and the runner share.

A rec env id reads ``<Family>-<Data>-v<k>`` (``GroundTruthRec``, ``InteractiveRec``). Both families take the same
protocol kwargs (``protocol=``, ``mode``, ``num_leave_compute``, ``leave_threshold``, ``max_turn``, ...);
``InteractiveRec`` adds its world model and reward shaping (``reward_preset=``, ``world_model``, ``lambda_*``, ...).
`matching_env` builds an env of another family on the same dataset object, protocol and device, which is how
a world-model method gets its training env from the evaluation env (and back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAMILIES", "TrainEnvSpec", "base_env", "env_family", "matching_env", "training_env"]

FAMILIES = ("GroundTruthRec", "InteractiveRec")

# make_vec arguments that are not env constructor kwargs.
_VEC_ONLY_KWARGS = ("num_envs", "vectorization_mode", "vector_kwargs", "wrappers", "max_episode_steps")
# Kwargs only InteractiveRec takes (its reward preset, world model and shaping weights).
INTERACTIVE_ONLY_KWARGS = ("reward_preset", "world_model", "world_model_config", "world_model_seed", "lambda_u",
                           "lambda_ent", "lambda_int", "alpha", "beta", "entropy_window", "shift", "progress")


@dataclass(frozen=True)
class TrainEnvSpec:
    """Where a method trains, relative to its evaluation env.

    ``family`` is the env family of the training env (``"GroundTruthRec"``: the evaluation env's dynamics,
    the upper reference; ``"InteractiveRec"``: a world model plus reward shaping) and ``kwargs`` the extra
    constructor kwargs of that family (e.g. ``{"reward_preset": "r3s"}``).
    """

    family: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"TrainEnvSpec.family={self.family!r}; valid families: {list(FAMILIES)}")


def base_env(env: Any) -> Any:
    """The innermost env (through gymnasium wrappers)."""
    return getattr(env, "unwrapped", env)


def env_family(env: Any) -> str | None:
    """``GroundTruthRec`` / ``InteractiveRec`` / ... from ``env.spec.id`` (None when the env has no spec id)."""
    spec = getattr(env, "spec", None)
    sid = getattr(spec, "id", None)
    return sid.split("-")[0] if sid else None


def matching_env(env: Any, family: str, num_envs: int, **overrides: Any) -> Any:
    """A new batched env of ``family`` matching ``env``: same dataset object, protocol kwargs and device.

    The protocol is read from ``env.spec.kwargs`` (set by ``gymnasium.make_vec``); ``overrides`` win.
    InteractiveRec-only kwargs are dropped when going to another family. Same family and no overrides:
    ``env.make_sibling`` when the env has it (shares the loaded model and tables).
    """
    import gymnasium as gym

    spec = getattr(env, "spec", None)
    if spec is None or not getattr(spec, "id", None):
        raise ValueError(
            f"cannot build a matching {family} env: the env has no spec id (make it with gymnasium.make_vec, "
            "or pass the training / evaluation env explicitly)"
        )
    parts = spec.id.split("-")
    if len(parts) < 3:
        raise ValueError(f"env id {spec.id!r} is not of the form <Family>-<Data>-v<k>")
    inner = base_env(env)
    if parts[0] == family and hasattr(inner, "make_sibling") and not overrides:
        sib = inner.make_sibling(int(num_envs))
        sib.spec = spec
        return sib
    kwargs = {k: v for k, v in dict(spec.kwargs or {}).items() if k not in _VEC_ONLY_KWARGS}
    if family != "InteractiveRec":
        for k in INTERACTIVE_ONLY_KWARGS:
            kwargs.pop(k, None)
    if getattr(inner, "dataset", None) is not None:
        kwargs["dataset"] = inner.dataset  # the loaded object: no second parse of the files
        kwargs.pop("dataset_kwargs", None)
    kwargs["device"] = inner.device
    kwargs.update(overrides)
    new_id = "-".join([family, *parts[1:]])
    return gym.make_vec(new_id, num_envs=int(num_envs), vectorization_mode="vector_entry_point", **kwargs)


def training_env(eval_env: Any, spec: TrainEnvSpec | None, num_envs: int, **overrides: Any) -> Any:
    """The training env of a method whose training env is ``spec``, derived from its evaluation env.

    ``spec=None`` means the method trains in the env it is given: ``eval_env`` itself is returned.
    """
    if spec is None:
        return eval_env
    return matching_env(eval_env, spec.family, num_envs, **{**spec.kwargs, **overrides})
