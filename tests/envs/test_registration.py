"""Registered ids: gym.make / make_vec, check_env on every single env with data, light `import recgym`."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import recgym  # noqa: F401  (registers the ids)
from recgym.envs.checker import check_vector_env
from recgym.envs.registration import DATASET_IDS
from tests.conftest import NOT_IN_CI_DATA, optional_data, require_data

# dataset tag -> files its loader needs (relative to RECGYM_DATA_DIR)
REAL = {
    "Coat": ["coat/train.ascii", "coat/rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii"],
    "Yahoo": ["yahoo_r3"],
    "ML1M": ["ml-1m/diffrec/ml-1m_clean/train_list.npy"],
    "KuaiRand": ["kuairand_pure/log_standard_4_08_to_4_21_pure.csv"],
    "KuaiRec": ["kuairec/small_matrix.csv"],
}


def test_every_ground_truth_id_is_registered_with_string_entry_points():
    for tag in DATASET_IDS:
        spec = gym.spec(f"GroundTruthRec-{tag}-v0")
        assert spec.entry_point == "recgym.envs.rec:make_ground_truth_single"
        assert spec.vector_entry_point == "recgym.envs.rec:make_ground_truth_vec"
        assert spec.kwargs["dataset"] == DATASET_IDS[tag]


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
    files = REAL[tag]
    root = optional_data(*files) if set(files) <= set(NOT_IN_CI_DATA) else require_data(*files)
    from recgym.data import load_dataset

    ds = load_dataset(DATASET_IDS[tag], data_dir=root)
    env_id = f"GroundTruthRec-{tag}-v0"
    _check_single(env_id, dataset=ds)
    venv = gym.make_vec(env_id, num_envs=3, dataset=ds, protocol="dorl")
    check_vector_env(venv, n_steps=8)
    if tag == "Coat":
        # plain gym.make by id (the loader reads the files itself)
        env = gym.make(env_id, data_dir=str(root))
        assert env.unwrapped.batched.protocol["num_leave_compute"] == 3  # dorl default for Coat
