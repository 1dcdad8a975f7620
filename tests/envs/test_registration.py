"""Registered ids: gym.make / make_vec, check_env on every single env with data, light `import recgym`."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import recgym  # noqa: F401  (registers the ids)
from recgym.data.registry import dataset_info, registered_datasets
from recgym.envs.checker import check_vector_env
from tests.conftest import NOT_IN_CI_DATA, optional_data, require_data


def test_every_registered_dataset_has_its_ids_with_string_entry_points():
    families = {
        "GroundTruthRec": "recgym.envs.rec:make_ground_truth_",
        "InteractiveRec": "recgym.envs.interactive:make_interactive_",
        "DiffusionDenoise": "recgym.envs.denoise:make_denoise_",
    }
    ids = set()
    for info in registered_datasets():
        for family in info.env_families:
            spec = gym.spec(f"{family}-{info.env_tag}-v0")
            assert spec.entry_point == families[family] + "single"
            assert spec.vector_entry_point == families[family] + "vec"
            assert spec.kwargs["dataset"] == info.name
            ids.add(spec.id)
    # the ids recgym has always had
    assert {f"GroundTruthRec-{t}-v0" for t in ("Coat", "Yahoo", "KuaiRand", "KuaiRec", "ML1M", "Synthetic")} <= ids
    assert {f"DiffusionDenoise-{t}-v0" for t in ("ML1M", "ML1MNoisy", "Coat", "Yahoo", "Synthetic")} <= ids
    assert "GroundTruthRec-ML1MNoisy-v0" not in gym.registry and "DiffusionDenoise-KuaiRec-v0" not in gym.registry


def test_import_recgym_is_light_and_module_prefixed_make_works():
    code = (
        "import sys, recgym; heavy = [m for m in ('torch', 'pandas', 'recgym.envs.rec', 'recgym.data.synthetic') "
        "if m in sys.modules]; assert not heavy, heavy; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    code = (
        "import gymnasium as gym; env = gym.make('recgym:GroundTruthRec-Synthetic-v0', protocol='roler'); "
        "obs, info = env.reset(seed=0); print(env.spec.kwargs['num_leave_compute'], info['protocol']['name'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "roler"]


def _check_single(env_id: str, **kw) -> None:
    env = gym.make(env_id, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert "protocol" in info and env.spec.kwargs["max_turn"] == info["protocol"]["max_turn"]
    env.close()


def test_check_env_synthetic_all_presets():
    for preset in ("dorl", "roler", "easyrl4rec"):
        _check_single("GroundTruthRec-Synthetic-v0", protocol=preset)


def test_make_vec_synthetic_is_the_batched_env_and_checks():
    venv = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=4, device="cpu", protocol="easyrl4rec")
    assert type(venv).__name__ == "GroundTruthRecEnv" and venv.num_envs == 4
    kw = venv.spec.kwargs
    assert (kw["protocol"], kw["mode"], kw["num_leave_compute"], kw["leave_threshold"]) == ("easyrl4rec", "FB", 1, 0.0)
    check_vector_env(venv, n_steps=20)
    with pytest.raises(ValueError, match="unknown protocol 'bogus'"):
        gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=2, protocol="bogus")


@pytest.mark.parametrize("tag", ["Coat", "Yahoo", "ML1M", "KuaiRand", "KuaiRec"])
def test_real_data_envs(tag):
    info = dataset_info(tag)
    # files the CI data folder lacks skip; the others must be there (in CI)
    big = [f for f in info.files if f in NOT_IN_CI_DATA]
    if big:
        optional_data(*big)
    root = require_data(*[f for f in info.files if f not in NOT_IN_CI_DATA])
    ds = info.load(data_dir=root)
    env_id = f"GroundTruthRec-{tag}-v0"
    _check_single(env_id, dataset=ds)
    venv = gym.make_vec(env_id, num_envs=3, dataset=ds, protocol="dorl")
    check_vector_env(venv, n_steps=8)
    if tag == "Coat":
        # plain gym.make by id (the loader reads the files itself)
        env = gym.make(env_id, data_dir=str(root))
        assert env.unwrapped.batched.protocol["num_leave_compute"] == 3  # dorl default for Coat


# ------------------------------------------------------------------------- a dataset added by a third party

_TOY_GT = [[1.0, 4.0, 2.0], [5.0, 3.0, 0.0]]


def _load_toy(data_dir=None, **kwargs):
    """A 2-user x 3-item dataset with a complete ground truth, built in memory (no files)."""
    import numpy as np
    import pandas as pd

    from recgym.data.base import LoggedDataset

    logs = pd.DataFrame({"user": [0, 1], "item": [1, 0], "reward": [4.0, 5.0]})
    return LoggedDataset(
        name="toy", n_users=2, n_items=3, train=logs, test=logs.iloc[:0],
        ground_truth=np.array(_TOY_GT, dtype=np.float32), item_categories=np.eye(3, dtype=bool),
        category_names=["a", "b", "c"], reward_kind="rating", positive_threshold=3.0, quit_rule="distance",
    )


@pytest.fixture()
def toy_dataset():
    from recgym.data.registry import DatasetInfo, find_dataset, register_dataset, unregister_dataset

    info = register_dataset(DatasetInfo(name="toy", env_tag="Toy", loader=_load_toy, ground_truth="exact",
                                        quit_rule="distance", env_families=("GroundTruthRec",)))
    try:
        yield info
    finally:
        if find_dataset("toy") is not None:
            unregister_dataset("toy")
        assert "GroundTruthRec-Toy-v0" not in gym.registry


def test_third_party_dataset_needs_one_registry_entry(toy_dataset):
    import torch

    from recgym.data import load_dataset
    from recgym.data.registry import unregister_dataset

    spec = gym.spec("GroundTruthRec-Toy-v0")  # registered by register_dataset alone
    assert spec.kwargs == {"dataset": "toy"} and "InteractiveRec-Toy-v0" not in gym.registry
    assert load_dataset("Toy").n_items == 3

    venv = gym.make_vec("GroundTruthRec-Toy-v0", num_envs=2, protocol="roler", max_turn=3)
    obs, info = venv.reset(seed=0)
    assert info["protocol"]["dataset"] == "toy" and info["protocol"]["source"] == "fallback"
    users = obs["user"]
    items = torch.tensor([1, 2])
    _, reward, terminated, truncated, _ = venv.step(items)
    expected = torch.tensor([_TOY_GT[int(u)][int(i)] for u, i in zip(users, items, strict=True)])
    torch.testing.assert_close(reward, expected)
    assert not terminated.any() and not truncated.any()
    check_vector_env(venv, n_steps=6)

    env = gym.make("GroundTruthRec-Toy-v0", protocol="roler", max_turn=3)
    obs, _ = env.reset(seed=1)
    total = 0.0
    for item in (0, 1, 2):  # no repeats, M=0: nobody quits, the episode is truncated after max_turn
        obs, reward, terminated, truncated, _ = env.step(item)
        total += reward
    assert total == pytest.approx(sum(_TOY_GT[int(obs["user"])])) and truncated and not terminated
    env.close()

    unregister_dataset("toy")
    assert "GroundTruthRec-Toy-v0" not in gym.registry
    with pytest.raises(ValueError, match="unknown dataset 'toy'"):
        load_dataset("toy")


def test_register_envs_is_idempotent_and_env_ids_of_others_are_kept():
    from recgym.data.registry import DatasetInfo, find_dataset, register_dataset
    from recgym.envs.registration import register_envs

    before = dict(gym.registry)
    register_envs()
    assert dict(gym.registry) == before
    # an id already taken by another env: registration fails, the registry and that env are left as they were
    gym.register("GroundTruthRec-Clash-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    try:
        with pytest.raises(ValueError, match="'GroundTruthRec-Clash-v0' is already registered"):
            register_dataset(DatasetInfo(name="clash", env_tag="Clash", loader=_load_toy, ground_truth="exact"))
        assert find_dataset("clash") is None and "InteractiveRec-Clash-v0" not in gym.registry
        assert gym.spec("GroundTruthRec-Clash-v0").entry_point == "gymnasium.envs.classic_control:CartPoleEnv"
    finally:
        del gym.registry["GroundTruthRec-Clash-v0"]
