"""Env-id registration by entry-point strings. Must import neither torch nor any dataset.

Each family registers its ids in its own block below with a single-env ``entry_point`` (numpy, for
``gymnasium.make`` / ``check_env`` / SB3) and a batched ``vector_entry_point`` (torch, for
``gymnasium.make_vec(id, num_envs=N, device=...)``). Both are ``"module:callable"`` strings, so nothing is
imported until an env is actually made.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

# dataset name in the env id -> `recgym.data.load_dataset` name
DATASET_IDS: dict[str, str] = {
    "Coat": "coat",
    "Yahoo": "yahoo",
    "KuaiRand": "kuairand",
    "KuaiRec": "kuairec",
    "ML1M": "ml1m",
    "Synthetic": "synthetic",
}


def _register(env_id: str, entry_point: str, vector_entry_point: str, kwargs: dict) -> None:
    if env_id in registry:
        return
    register(
        id=env_id,
        entry_point=entry_point,
        vector_entry_point=vector_entry_point,
        kwargs=kwargs,
        disable_env_checker=False,
    )


def _register_ground_truth() -> None:
    # ---- GroundTruthRec-<D>-v0 (owner: env core; recgym/envs/rec.py) ----
    for tag, name in DATASET_IDS.items():
        _register(
            f"GroundTruthRec-{tag}-v0",
            "recgym.envs.rec:make_ground_truth_single",
            "recgym.envs.rec:make_ground_truth_vec",
            {"dataset": name},
        )


def _register_interactive() -> None:
    # ---- InteractiveRec-<D>-v0 (owner: world-model helper; recgym/envs/interactive.py) ----
    for tag, name in DATASET_IDS.items():
        _register(
            f"InteractiveRec-{tag}-v0",
            "recgym.envs.interactive:make_interactive_single",
            "recgym.envs.interactive:make_interactive_vec",
            {"dataset": name},
        )


def _register_denoise() -> None:
    # ---- DiffusionDenoise-<D>-v0 (owner: denoise helper; recgym/envs/denoise.py) ----
    denoise_ids = {"ML1M": "ml1m", "ML1MNoisy": "ml1m_noisy", "Coat": "coat", "Yahoo": "yahoo",
                   "Synthetic": "synthetic"}
    for tag, name in denoise_ids.items():
        _register(
            f"DiffusionDenoise-{tag}-v0",
            "recgym.envs.denoise:make_denoise_single",
            "recgym.envs.denoise:make_denoise_vec",
            {"dataset": name},
        )


def register_envs() -> None:
    """Register every recgym env id with gymnasium (idempotent)."""
    _register_ground_truth()
    _register_interactive()
    _register_denoise()
