"""BatchedEnv base: seeding streams, autoreset modes, action validation, the numpy single-env adapter."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from recgym.envs.core import InfoDict, Lazy, SingleEnvAdapter, as_action_tensor, hash32
from recgym.envs.rec import GroundTruthRecEnv
from tests.envs.helpers import toy_dataset


def _env(n=4, **kw):
    kw.setdefault("protocol", "custom")
    kw.setdefault("num_leave_compute", 1)
    kw.setdefault("leave_threshold", 0.0)
    kw.setdefault("max_turn", 3)
    kw.setdefault("mode", "FB")
    return GroundTruthRecEnv(toy_dataset(), num_envs=n, **kw)


def test_hash32_is_a_deterministic_32bit_mixer():
    x = torch.arange(100000, dtype=torch.int64)
    h = hash32(x)
    assert int(h.min()) >= 0 and int(h.max()) < 2**32
    assert torch.equal(h, hash32(x))
    assert h.unique().numel() > 99990  # (nearly) injective on a range
    assert abs(float((h & 1).float().mean()) - 0.5) < 0.01


def test_per_env_streams_do_not_depend_on_batch_size():
    big = _env(n=6)
    obs_b, _ = big.reset(seed=10)
    for i in range(6):
        one = _env(n=1)
        obs_1, _ = one.reset(seed=10 + i)
        assert int(obs_1["user"][0]) == int(obs_b["user"][i])
    # a later episode (reset without seed continues the stream) also matches
    obs_b2, _ = big.reset()
    one = _env(n=1)
    one.reset(seed=13)
    obs_12, _ = one.reset()
    assert int(obs_12["user"][0]) == int(obs_b2["user"][3])
    # seeds change the users; the same seed repeats them
    users = [tuple(_env(n=32).reset(seed=s)[0]["user"].tolist()) for s in (0, 0, 1)]
    assert users[0] == users[1] != users[2]
    # users are spread over the pool
    counts = np.bincount(_env(n=3000).reset(seed=0)[0]["user"].numpy(), minlength=3)
    assert counts.min() > 800


def test_next_step_autoreset():
    env = _env(n=2)  # max_turn 3, nobody quits
    env.reset(seed=0)
    for _t in range(3):
        obs, r, te, tr, _ = env.step(torch.tensor([0, 1]))
    assert bool(tr.all()) and obs["step"].tolist() == [3, 3]
    obs, r, te, tr, _ = env.step(torch.tensor([2, 2]))  # action ignored, envs reset
    assert r.tolist() == [0.0, 0.0] and not bool((te | tr).any())
    assert obs["step"].tolist() == [0, 0] and obs["items"][:, -1].tolist() == [-1, -1]
    obs, r, _, _, _ = env.step(torch.tensor([2, 2]))
    assert obs["step"].tolist() == [1, 1] and bool((r > 0).all())


def test_same_step_autoreset_reports_final_obs():
    env = _env(n=2, autoreset_mode="SAME_STEP")
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    env.reset(seed=0)
    env.step(torch.tensor([0, 1]))
    env.step(torch.tensor([1, 2]))
    obs, r, te, tr, info = env.step(torch.tensor([3, 3]))
    assert bool(tr.all()) and bool((r > 0).all())
    assert obs["step"].tolist() == [0, 0]
    assert info["_final_obs"].tolist() == [True, True]
    assert info["final_obs"]["step"].tolist() == [3, 3]
    assert info["final_obs"]["items"][:, -3:].tolist() == [[0, 1, 3], [1, 2, 3]]


def test_disabled_mode_and_reset_mask():
    env = _env(n=3, autoreset_mode="DISABLED", max_turn=2)
    env.reset(seed=0)
    env.step(torch.tensor([0, 0, 0]))
    obs, _, _, tr, _ = env.step(torch.tensor([1, 1, 1]))
    assert bool(tr.all())
    with pytest.raises(RuntimeError, match=r"reset_mask"):
        env.step(torch.tensor([0, 0, 0]))
    obs2, info = env.reset(options={"reset_mask": torch.tensor([True, False, True])})
    assert obs2["step"].tolist() == [0, 2, 0]
    assert env.done.tolist() == [False, True, False]
    with pytest.raises(ValueError, match=r"reset_mask must be a bool tensor of shape \(3,\)"):
        env.reset(options={"reset_mask": torch.tensor([1, 0, 1])})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"bogus": 1})


def test_step_before_reset_and_bad_actions():
    env = _env(n=2)
    with pytest.raises(RuntimeError, match=r"step\(\) called before reset\(\)"):
        env.step(torch.tensor([0, 0]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(2,\)"):
        env.step(torch.tensor([0, 0, 0]))
    with pytest.raises(TypeError, match=r"dtype torch.float32, expected an integer dtype"):
        env.step(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"actions\[1\] = 4 is out of range, expected values in \[0, 4\)"):
        env.step(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"actions\[0\] = -1 is out of range"):
        env.step(torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"on device meta, expected the env's device cpu"):
        env.step(torch.zeros(2, dtype=torch.int64, device="meta"))
    with pytest.raises(ValueError, match="autoreset_mode='SOMETIMES' is not valid"):
        _env(autoreset_mode="SOMETIMES")
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        _env(n=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        env.reset(seed=1.5)  # type: ignore[arg-type]
    # numpy actions are accepted and converted
    env.step(np.array([0, 1]))
    t = as_action_tensor([[0.5, 1.0]], num_envs=1, device=torch.device("cpu"), kind="float", tail_shape=(2,))
    assert t.dtype == torch.float32 and t.shape == (1, 2)


def test_returns_are_tensors_with_fixed_dtypes():
    env = _env(n=5)
    obs, info = env.reset(seed=0)
    obs, r, te, tr, info = env.step(torch.zeros(5, dtype=torch.int32))
    assert r.dtype == torch.float32 and te.dtype == torch.bool and tr.dtype == torch.bool
    assert obs["items"].dtype == torch.int64 and obs["rewards"].dtype == torch.float32
    assert info["action_mask"].shape == (5, 4) and info["action_mask"].dtype == torch.bool
    assert env.observation_space.contains({k: v.numpy() for k, v in obs.items()})


def test_observations_are_not_overwritten_by_later_steps():
    env = _env(n=2, mode="NX_0", max_turn=4)
    obs1, _ = env.reset(seed=0)
    obs2, *_ = env.step(torch.tensor([0, 0]))
    snap = {k: v.clone() for k, v in obs2.items()}
    env.step(torch.tensor([1, 1]))
    assert all(torch.equal(snap[k], obs2[k]) for k in snap)
    # copy_mask=True: a returned mask is never written again
    env = _env(n=2, mode="NX_0", max_turn=4, copy_mask=True)
    _, info = env.reset(seed=0)
    _, _, _, _, info1 = env.step(torch.tensor([0, 0]))
    m1 = info1["action_mask"].clone()
    env.step(torch.tensor([1, 1]))
    assert torch.equal(m1, info1["action_mask"])


def test_single_env_adapter_passes_check_env_without_warnings():
    single = SingleEnvAdapter(_env(n=1, mode="NX_0", max_turn=3, num_leave_compute=2, leave_threshold=1.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(single, skip_render_check=True)
    obs, info = single.reset(seed=0)
    assert isinstance(obs["user"], np.int64) and info["action_mask"].shape == (4,)
    _, r, te, tr, _ = single.step(0)
    assert isinstance(r, float) and isinstance(te, bool)
    with pytest.raises(ValueError, match="num_envs=1"):
        SingleEnvAdapter(_env(n=2))


def test_info_dict_computes_lazy_entries_once_on_first_read():
    calls = []

    def build():
        calls.append(1)
        return torch.ones(2)

    info = InfoDict({"a": 1, "m": Lazy(build)})
    assert "m" in info and len(info) == 2 and sorted(info) == ["a", "m"] and info.get("a") == 1
    assert calls == []  # nothing read yet
    m = info["m"]
    assert calls == [1] and info["m"] is m and info.get("m") is m and info.get("zz", 3) == 3
    # every way of copying or reading values sees computed values, never the Lazy placeholder
    copies = [lambda d: {**d}, dict, lambda d: d.copy(), copy.copy, copy.deepcopy, lambda d: dict(d.items()),
              lambda d: pickle.loads(pickle.dumps(d)), lambda d: d | {}, lambda d: {} | d,
              lambda d: dict(zip(d.keys(), d.values(), strict=True)), lambda d: {"m": d.pop("m")},
              lambda d: {"m": d.setdefault("m", None)}]
    for make_copy in copies:
        out = make_copy(InfoDict({"m": Lazy(lambda: 5)}))
        assert out["m"] == 5 and not isinstance(dict.__getitem__(out, "m"), Lazy)
    assert InfoDict({"m": Lazy(lambda: 5)}) == {"m": 5} and "5" in repr(InfoDict({"m": Lazy(lambda: 5)}))


def test_disabled_check_is_part_of_the_step_validation():
    env = _env(n=2, autoreset_mode="DISABLED", max_turn=1)
    env.reset(seed=0)
    env.step(torch.tensor([0, 1]))
    # the ended-env error comes before action errors of the same step
    with pytest.raises(RuntimeError, match=r"envs \[0, 1\] have ended"):
        env.step(torch.tensor([0, 9]))
    loose = _env(n=2, autoreset_mode="DISABLED", max_turn=1, validate_actions=False)
    loose.reset(seed=0)
    loose.step(torch.tensor([0, 1]))
    loose.step(torch.tensor([0, 1]))  # not checked: the caller vouches for its steps


def test_seeds_outside_the_62_bit_key_space_are_refused_not_wrapped():
    env = _env(n=2)
    obs0, _ = env.reset(seed=0)
    # 2**62 used to be taken modulo 2**62: the same episodes as seed 0
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*62\), got 4611686018427387904 \(it would wrap "
                                         r"onto seed 0\)"):
        env.reset(seed=2**62)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*62\), got -1"):
        env.reset(seed=-1)
    env.reset(seed=2**62 - 1)  # the largest key is fine
    single = SingleEnvAdapter(_env(n=1, autoreset_mode="DISABLED"))
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*62\)"):
        single.reset(seed=2**62)


def test_unusable_device_names_the_argument():
    with pytest.raises(ValueError, match=r"device='gpu' is not a torch device \(expected cpu, cuda, cuda:N or mps\)"):
        _env(device="gpu")
    if torch.cuda.is_available() and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    # on a CPU build torch used to fail with "Cannot get CUDA generator without ATen_cuda library"
    with pytest.raises(ValueError, match=r"device='cuda:3' requested but"):
        _env(device="cuda:3")
