"""Env-id registration by entry-point strings. Must import neither torch nor any dataset.

Every dataset in `recgym.data.registry` gets ``<family>-<env_tag>-v0`` for each family in its
``env_families``, with kwargs ``{"dataset": <canonical name>}``. Each family has a single-env ``entry_point``
(numpy, for ``gymnasium.make`` / ``check_env`` / SB3) and a batched ``vector_entry_point`` (torch, for
``gymnasium.make_vec(id, num_envs=N, device=...)``). Both are ``"module:callable"`` strings, so nothing is
imported until an env is actually made.

Importing this module (which ``import recgym`` does) subscribes it to the dataset registry, so a dataset
registered later with `recgym.data.registry.register_dataset` gets its ids at that moment, and
`recgym.data.registry.unregister_dataset` removes them. `register_envs` (re)registers every id; it is
idempotent.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from recgym.data.registry import ENV_FAMILIES, DatasetInfo, on_registry_change, registered_datasets

# family -> (entry_point, vector_entry_point)
ENTRY_POINTS: dict[str, tuple[str, str]] = {
    # owner: env core; recgym/envs/rec.py
    "GroundTruthRec": ("recgym.envs.rec:make_ground_truth_single", "recgym.envs.rec:make_ground_truth_vec"),
    # owner: world-model helper; recgym/envs/interactive.py
    "InteractiveRec": ("recgym.envs.interactive:make_interactive_single",
                       "recgym.envs.interactive:make_interactive_vec"),
    # owner: denoise helper; recgym/envs/denoise.py
    "DiffusionDenoise": ("recgym.envs.denoise:make_denoise_single", "recgym.envs.denoise:make_denoise_vec"),
}
if set(ENTRY_POINTS) != set(ENV_FAMILIES):
    raise RuntimeError(f"env families {sorted(ENV_FAMILIES)} and entry points {sorted(ENTRY_POINTS)} disagree")


def env_ids(info: DatasetInfo) -> tuple[str, ...]:
    """The env ids of a dataset entry, one per family in its ``env_families``."""
    return tuple(f"{family}-{info.env_tag}-v0" for family in info.env_families)


def _register(env_id: str, family: str, dataset: str) -> None:
    entry_point, vector_entry_point = ENTRY_POINTS[family]
    if env_id in registry:
        spec = registry[env_id]
        if spec.entry_point != entry_point or spec.kwargs.get("dataset") != dataset:
            raise ValueError(f"env id {env_id!r} is already registered for another env or dataset")
        return
    register(
        id=env_id,
        entry_point=entry_point,
        vector_entry_point=vector_entry_point,
        kwargs={"dataset": dataset},
        disable_env_checker=False,
    )


def register_dataset_envs(info: DatasetInfo) -> tuple[str, ...]:
    """Register the env ids of one dataset entry (idempotent); return them."""
    for family in info.env_families:
        _register(f"{family}-{info.env_tag}-v0", family, info.name)
    return env_ids(info)


def unregister_dataset_envs(info: DatasetInfo) -> None:
    """Remove the env ids of one dataset entry from gymnasium's registry (ids it does not own are left alone)."""
    for family in info.env_families:
        env_id = f"{family}-{info.env_tag}-v0"
        spec = registry.get(env_id)
        if spec is not None and spec.entry_point == ENTRY_POINTS[family][0] and spec.kwargs.get("dataset") == info.name:
            del registry[env_id]


def _on_change(info: DatasetInfo, registered: bool) -> None:
    if registered:
        register_dataset_envs(info)
    else:
        unregister_dataset_envs(info)


def register_envs() -> None:
    """Register every recgym env id with gymnasium (idempotent)."""
    for info in registered_datasets():
        register_dataset_envs(info)


on_registry_change(_on_change)
