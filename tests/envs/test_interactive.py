"""InteractiveRec: entropy table and penalties by hand, decay schedule, shaped reward, presets, checkers."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

import recgym  # noqa: F401  (registers the ids)
from recgym.data.base import LoggedDataset
from recgym.envs.interactive import EntropyTable, InteractiveRecEnv, decay_weights, resolve_shaping


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread avoids oversubscription on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


H23 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))  # entropy of (2/3, 1/3) in bits / log2(2)


class _FixedModel:
    """A world model with known matrices."""

    kind = "fixed"

    def __init__(self, mean: torch.Tensor, unc: torch.Tensor) -> None:
        self.mean, self.unc = mean, unc

    def predict(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean, self.unc


def _seq_dataset() -> LoggedDataset:
    # user 0 logs 0,1,0,2 and user 1 logs 0,1,0 (times given out of file order on purpose)
    train = pd.DataFrame({"user": [0, 0, 0, 0, 1, 1, 1], "item": [2, 0, 1, 0, 0, 0, 1],
                          "reward": [1.0, 2, 3, 4, 5, 1, 2], "time": [4, 1, 2, 3, 1, 3, 2]})
    n_items = 5
    gt = np.arange(2 * n_items, dtype=np.float32).reshape(2, n_items)
    cats = np.eye(n_items, dtype=bool)
    return LoggedDataset(name="seq", n_users=2, n_items=n_items, train=train, test=train[["user", "item", "reward"]],
                         ground_truth=gt, item_categories=cats, category_names=[str(i) for i in range(n_items)],
                         reward_kind="rating", positive_threshold=4.0, quit_rule="distance")


def test_entropy_table_by_hand() -> None:
    tab = EntropyTable.from_logs(_seq_dataset(), (1, 2))
    # w=1: {0} -> next {1: 2, 2: 1}: H(2/3,1/3)/log2(2); {1} -> {0: 2}: one distinct next item -> 1
    got = tab.lookup(1, torch.tensor([[0], [1], [2], [4]]))
    assert torch.allclose(got, torch.tensor([H23, 1.0, 1.0, 1.0]), atol=1e-6)  # {2}, {4} unseen -> 1
    # w=2: {0,1} -> next {0: 2, 2: 1} (sorted, so [1,0] and [0,1] are the same set)
    got2 = tab.lookup(2, torch.tensor([[1, 0], [0, 1], [0, 2]]))
    assert torch.allclose(got2, torch.tensor([H23, H23, 1.0]), atol=1e-6)
    assert tab.min_sum() == pytest.approx(2 * H23)


def test_decay_schedule() -> None:
    loc, glob = decay_weights(torch.tensor([0, 1, 2, 10]), 0.5, 1.0)
    want = torch.tensor([0.5, 0.5 * math.exp(-1), 0.5 * math.exp(-2), 0.5 * math.exp(-10)])
    assert torch.allclose(loc, want) and torch.allclose(glob, 1 - want)


def _env(**kw) -> InteractiveRecEnv:  # noqa: ANN003
    ds = _seq_dataset()
    mean = torch.tensor([[1.0, 2, 3, 4, 5], [0.5, 0.5, 0.5, 0.5, 0.5]])
    unc = torch.tensor([[0.0, 1, 2, 0, 0], [0, 0, 0, 0, 0]])
    kw.setdefault("reward_preset", "dorl")
    return InteractiveRecEnv(ds, num_envs=2, world_model=_FixedModel(mean, unc), users=[0, 0], **kw)


def test_dorl_shaped_reward_by_hand() -> None:
    env = _env(lambda_u=0.5, lambda_ent=1.0)
    env.reset(seed=0)
    # DORL-codes simulated_env.py: MIN_R = min(pred) - lambda_var * max(var) + lambda_ent * ent_min
    min_r = 0.5 - 0.5 * 2.0 + 1.0 * 2 * H23
    assert env.shaping.shift == "dorl" and env.min_r == pytest.approx(min_r)
    _, r, *_ = env.step(torch.tensor([0, 1]))
    # step 0: E = table1[{a}] + 1 (episode shorter than 2)
    assert r[0].item() == pytest.approx(1.0 + (H23 + 1) - min_r, abs=1e-5)
    assert r[1].item() == pytest.approx(2 - 0.5 + (1 + 1) - min_r, abs=1e-5)
    _, r, *_ = env.step(torch.tensor([1, 0]))
    # step 1: trajectories [0,1] and [1,0]: E = table1[{last}] + table2[{0,1}]
    assert r[0].item() == pytest.approx(2 - 0.5 + (1.0 + H23) - min_r, abs=1e-5)
    assert r[1].item() == pytest.approx(1.0 + (H23 + H23) - min_r, abs=1e-5)
    # reward range: MAX_R - MIN_R with MAX_R = max(pred) - lambda_var * min(var) + lambda_ent * ent_max
    assert float(env.single_observation_space["rewards"].high[0]) == pytest.approx(5.0 + 2.0 - min_r, rel=1e-4)


def test_cellwise_shift_by_hand() -> None:
    env = _env(lambda_u=0.5, lambda_ent=1.0, shift="cellwise")
    base_min = min(1 - 0, 2 - 0.5, 3 - 1, 4, 5, 0.5)  # min(mean - 0.5 unc) = 0.5
    assert env.min_r == pytest.approx(base_min + 1.0 * 2 * H23)


def test_penalty_shift_keeps_the_rating_scale() -> None:
    # lambda_u 0.5 and lambda_ent = lambda_int = 1 with R3S's decay:
    # r = mean - 0.5 (unc - U_log) - entropy penalties; U_log = mean unc over the 5 logged pairs = (0+1+2+0+0)/5
    env = _env(reward_preset="r3s", lambda_u=0.5, lambda_ent=1.0, lambda_int=1.0)
    assert (env.shaping.shift, env.shaping.lambda_u_rule) == ("penalty", "fixed")
    assert env.u_ref == pytest.approx(0.6) and env.min_r == pytest.approx(-0.3)
    env.reset(seed=0)
    _, r, *_ = env.step(torch.tensor([3, 1]))
    # step 0 (w_loc 0.5, w_glob 0.5): item 3 is unseen ({3} -> 1, window 2 short -> 1): E_loc = E_glob = 2 = E_max
    assert r[0].item() == pytest.approx(4.0 + 0.3, abs=1e-5)
    # item 1: table1[{1}] = 1, so again no entropy penalty; uncertainty 1 costs 0.5 * (1 - 0.6)
    assert r[1].item() == pytest.approx(2.0 - 0.2, abs=1e-5)
    _, r, *_ = env.step(torch.tensor([0, 0]))
    # step 1, trajectory [3, 0]: E_loc = table1[{0}] + table2[{0,3}] = H23 + 1; E_glob samples one position per
    # window 1 ({3} or {0}) and both for window 2: H23 + 1 or 1 + 1. Penalty = w * (2 - E).
    w_loc = 0.5 * math.exp(-1.0)
    pen_loc = w_loc * (1 - H23)
    got = 1.3 - r[0].item() - pen_loc  # what is left is the global penalty: 0 or (1 - w_loc) * (1 - H23)
    assert min(abs(got), abs(got - (1 - w_loc) * (1 - H23))) < 1e-5
    space = env.single_observation_space["rewards"]
    assert float(space.low[0]) == 0.0 and float(space.high[0]) == pytest.approx(5.3, rel=1e-4)


def test_gap_rule_lambda_u_by_hand() -> None:
    from recgym.envs.interactive import LAMBDA_U_MAX, gap_rule_lambda_u

    mean = torch.tensor([[3.0, 1.0, 2.0], [4.0, 2.0, 1.0]])
    unc = torch.tensor([[0.2, 1.0, 0.6], [0.4, 0.8, 1.2]])
    users, items = np.array([0, 1, 1]), np.array([0, 0, 0])  # duplicate pair (1, 0) counts once
    # logged (0,0), (1,0): mean 3.5, unc 0.3; unlogged: mean 1.5, unc 0.9 -> lambda = 2.0 / 0.6
    assert gap_rule_lambda_u(mean, unc, users, items) == pytest.approx(2.0 / 0.6)
    assert gap_rule_lambda_u(mean, 1.2 - unc, users, items) == 0.0  # unlogged pairs less uncertain: rule off
    assert gap_rule_lambda_u(-mean, unc, users, items) == 0.0  # no advantage of logged pairs to offset
    assert gap_rule_lambda_u(mean, unc * 1e-3, users, items) == LAMBDA_U_MAX
    with pytest.raises(ValueError, match="unlogged"):
        gap_rule_lambda_u(mean[:1, :1], unc[:1, :1], np.array([0]), np.array([0]))


def test_lambda_u_gap_rule_is_applied_by_the_env() -> None:
    from recgym.envs.interactive import gap_rule_lambda_u

    ds = _seq_dataset()  # logged: user 0 items 0, 1, 2; user 1 items 0, 1
    mean = torch.tensor([[4.0, 4, 4, 1, 1], [4, 4, 1, 1, 1]])
    unc = torch.tensor([[0.2, 0.2, 0.2, 1, 1], [0.2, 0.2, 1, 1, 1]])
    env = InteractiveRecEnv(ds, num_envs=2, world_model=_FixedModel(mean, unc), users=[0, 0], reward_preset="r3s",
                            lambda_u="gap")
    want = gap_rule_lambda_u(mean, unc, ds.train["user"].to_numpy().copy(), ds.train["item"].to_numpy().copy())
    assert want == pytest.approx(3.0 / 0.8)  # reward gap 4 - 1, uncertainty gap 1 - 0.2
    assert env.shaping.lambda_u_rule == "gap" and env.shaping.lambda_u == pytest.approx(want)
    assert env.effective_kwargs()["lambda_u"] == pytest.approx(want)
    # the r3s default is the fixed one-sigma bound
    assert (resolve_shaping("r3s", "coat").lambda_u, resolve_shaping("r3s", "coat").lambda_u_rule) == (1.0, "fixed")
    dorl = resolve_shaping("r3s", "yahoo", lambda_u="dorl", world_model="deepfm")
    assert (dorl.lambda_u, dorl.lambda_u_rule, dorl.shift, dorl.world_model) == (0.01, "dorl", "penalty", "deepfm")
    with pytest.raises(ValueError, match="lambda_u must be a number"):
        _env(lambda_u="auto")
    with pytest.raises(ValueError, match="shift"):
        _env(shift="zero")


def test_r3s_global_term_samples_positions_and_decays() -> None:
    env = _env(reward_preset="r3s", lambda_u=0.0, lambda_ent=0.0, lambda_int=1.0, entropy_window=(1,))
    seen = set()
    for seed in range(12):
        env.reset(seed=seed)
        env.step(torch.tensor([0, 0]))
        _, r, *_ = env.step(torch.tensor([1, 1]))
        # E_glob over one random position of [0, 1]: table1[{0}] = H23 or table1[{1}] = 1;
        # penalty shift: r = mean - w_glob * (E_max - E_glob) with E_max = 1
        w_glob = 1 - 0.5 * math.exp(-1.0)
        e = 1.0 - (2.0 - r) / w_glob
        for v in e.tolist():
            assert min(abs(v - H23), abs(v - 1.0)) < 1e-4
            seen.add(round(v, 3))
    assert len(seen) == 2  # both positions get drawn
    # same seed -> same draws
    out = []
    for _ in range(2):
        env.reset(seed=5)
        env.step(torch.tensor([0, 0]))
        out.append(env.step(torch.tensor([1, 1]))[1])
    assert torch.equal(out[0], out[1])


def test_negative_weights_and_unknown_preset_are_errors() -> None:
    with pytest.raises(ValueError, match="lambda_u must be a finite number >= 0"):
        resolve_shaping("dorl", "coat", lambda_u=-1.0)
    with pytest.raises(ValueError, match="lambda_ent"):
        _env(lambda_ent=-0.1)
    with pytest.raises(ValueError, match="unknown InteractiveRec reward_preset"):
        resolve_shaping("sac", "coat")
    with pytest.raises(ValueError, match="alpha"):
        resolve_shaping("r3s", "coat", alpha=2.0)


def test_presets_record_their_values() -> None:
    assert resolve_shaping("dorl", "kuairec").lambda_u == 0.05
    assert resolve_shaping("dorl", "kuairand").lambda_ent == 0.05
    assert resolve_shaping("mopo", "kuairec").lambda_ent == 0.0
    mb = resolve_shaping("mbpo", "coat")
    assert mb.lambda_u == 0.0 and mb.lambda_ent == 0.0
    r3 = resolve_shaping("r3s", "coat")
    assert (r3.world_model, r3.alpha, r3.beta) == ("diffusion", 0.5, 1.0)
    assert resolve_shaping("roler", "coat").world_model == "knn"
    # published per-dataset values: DORL paper (KuaiRec/KuaiRand), ROLeR code (Coat/Yahoo; MOPO apart)
    assert (resolve_shaping("dorl", "coat").lambda_u, resolve_shaping("dorl", "coat").lambda_ent) == (0.005, 1.0)
    assert resolve_shaping("mopo", "coat").lambda_u == 0.02
    assert (resolve_shaping("dorl", "yahoo").lambda_u, resolve_shaping("mopo", "yahoo").lambda_u) == (0.01, 0.01)
    assert resolve_shaping("mopo", "kuairec").lambda_u == 0.05
    # no published value: Yahoo's, and the source says so; r3s and roler take the dataset's lambda_ent
    syn = resolve_shaping("r3s", "synthetic")
    assert (syn.lambda_ent, syn.lambda_int) == (1.0, 1.0) and "no published value" in syn.source
    assert resolve_shaping("roler", "kuairec").lambda_ent == 5.0


SMALL = {"dataset_kwargs": {"n_users": 40, "n_items": 60, "seed": 0}, "progress": False,
         "world_model_config": {"epochs": 3, "n_samples": 4, "steps": 5, "hidden": 16}}


def test_gym_make_check_env_and_spec() -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make("InteractiveRec-Synthetic-v0", **SMALL)
    check_env(env.unwrapped, skip_render_check=True)
    kw = env.spec.kwargs
    assert kw["reward_preset"] == "r3s" and kw["world_model"] == "diffusion" and kw["protocol"] == "dorl"
    assert kw["alpha"] == 0.5 and kw["lambda_int"] == kw["lambda_ent"]
    _, info = env.reset(seed=0)
    assert info["shaping"]["reward_preset"] == "r3s"
    # second make loads the cached world model (same predictions)
    env2 = gym.make("InteractiveRec-Synthetic-v0", **SMALL)
    a = env.unwrapped.batched.world_model.predict()[0]
    b = env2.unwrapped.batched.world_model.predict()[0]
    assert torch.equal(a, b)


def test_vector_env_batched_rewards_and_checker() -> None:
    venv = gym.make_vec("InteractiveRec-Synthetic-v0", num_envs=3, reward_preset="mbpo", **{
        **SMALL, "world_model_config": {"epochs": 1, "n_members": 2, "dnn": (8,)}})
    obs, info = venv.reset(seed=1)
    mean, _ = venv.world_model.predict()
    a = torch.tensor([3, 4, 5])
    _, r, *_ = venv.step(a)
    want = (mean[obs["user"], a] - venv.min_r).clamp_min(0)
    assert torch.allclose(r, want, atol=1e-6)
    assert (r >= 0).all()
    try:
        from recgym.envs.checker import check_vector_env
    except ImportError:
        pytest.skip("recgym.envs.checker not available yet")
    check_vector_env(venv)


def test_r3s_vector_env_passes_checker_with_quitting() -> None:
    from recgym.envs.checker import check_vector_env

    venv = gym.make_vec("InteractiveRec-Synthetic-v0", num_envs=3, num_leave_compute=2, leave_threshold=3.0,
                        **SMALL)
    check_vector_env(venv)


def test_coat_dorl_env_uses_features_and_real_quit_rule() -> None:
    from tests.conftest import require_data

    require_data("coat/train.ascii", "coat/test.ascii", "coat/rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii")
    venv = gym.make_vec("InteractiveRec-Coat-v0", num_envs=4, reward_preset="dorl", progress=False,
                        world_model_config={"epochs": 1, "n_members": 2, "dnn": (16,)})
    wm = venv.world_model
    assert tuple(wm.user_feats.shape) == (290, 14) and tuple(wm.item_feats.shape) == (300, 33)
    kw = venv.effective_kwargs()
    assert (kw["protocol"], kw["num_leave_compute"], kw["leave_threshold"]) == ("dorl", 3, 10.0)
    assert (kw["lambda_u"], kw["lambda_ent"]) == (0.005, 1.0)  # ROLeR code's Coat DORL values
    obs, info = venv.reset(seed=0)
    lengths = torch.zeros(4)
    done_any = torch.zeros(4, dtype=torch.bool)
    for _ in range(30):
        a = torch.multinomial(info["action_mask"].float(), 1)[:, 0]
        obs, r, term, trunc, info = venv.step(a)
        assert (r >= 0).all()
        lengths += (~done_any).float()
        done_any |= term | trunc
    assert done_any.all()
