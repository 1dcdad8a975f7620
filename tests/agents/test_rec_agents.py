"""The rec-env agents (issue 6): construction, acting, masks, save/load, determinism, errors, learning."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import recgym  # noqa: F401
from recgym.agents import AgentConfig, agent_spec, make_agent, registered_agents
from recgym.agents.a2c import DORL_UPDATE, A2CAgent, A2CConfig
from recgym.agents.logged import build_logged_transitions
from recgym.agents.trackers import TrackerConfig, make_tracker

REC_AGENTS = ["a2c", "gt", "r3s", "dorl", "mopo", "mbpo", "roler", "ucb", "epsilon_greedy", "random",
              "popularity", "top_rated", "bcq", "cql", "crr", "sqn", "exp_rsft", "sb3_ppo", "sb3_sac", "sb3_td3"]
SMALL = {"n_users": 40, "n_items": 60}
FAST = {"progress": False, "eval_episodes": 8}
ROOT = Path(__file__).resolve().parents[2]


def small_env(num_envs: int = 8, **kw):
    return gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=num_envs, protocol="roler",
                        dataset_kwargs=SMALL, **kw)


@pytest.fixture(scope="module")
def env():
    return small_env()


def agent_kwargs(name: str) -> dict:
    kw = dict(FAST)
    if name in ("ucb", "epsilon_greedy"):
        kw["world_model"] = "mf"  # cheaper than DeepFM for a construction test
    if name in ("a2c", "gt", "r3s", "dorl", "mopo", "mbpo", "roler"):
        kw["num_envs"] = 8
    return kw


def test_every_listed_agent_is_registered():
    assert set(REC_AGENTS) <= set(registered_agents())


@pytest.mark.parametrize("name", REC_AGENTS)
def test_make_act_mask_and_save_load(name, env, tmp_path):
    agent = make_agent(name, env, seed=0, **agent_kwargs(name))
    obs, info = env.reset(seed=3)
    # A mask allowing only a random third of the items: every action must be one of them.
    gen = torch.Generator().manual_seed(1)
    mask = torch.rand(8, SMALL["n_items"], generator=gen) < 0.33
    mask[:, 0] = False
    mask[0] = False
    mask[0, 5] = True  # a row with exactly one allowed item
    if hasattr(agent, "training"):
        agent.training = False
    actions = agent.act(obs, {**info, "action_mask": mask})
    assert isinstance(actions, torch.Tensor) and actions.dtype == torch.int64
    assert actions.shape == (8,) and actions.device == obs["user"].device
    assert bool(mask[torch.arange(8), actions].all()), f"{name} chose a masked item"
    assert int(actions[0]) == 5
    # Save / load round trip: a fresh agent (another seed) that loads the file acts the same.
    path = tmp_path / f"{name}.ckpt"
    agent.save(str(path))
    expected = agent.act(obs, info)
    other = make_agent(name, env, seed=123, **agent_kwargs(name))
    other.load(str(path))
    if hasattr(other, "training"):
        other.training = False
    assert torch.equal(other.act(obs, info), expected)


def test_world_model_methods_are_a2c_plus_a_training_env(env):
    from recgym.envs.derive import TrainEnvSpec

    for name in ("r3s", "dorl", "mopo", "mbpo", "roler"):
        spec = agent_spec(name)
        assert spec.train_env == TrainEnvSpec("InteractiveRec", {"reward_preset": name})
        assert spec.config_cls is A2CConfig and spec.budget_unit == "env_steps"
    assert agent_spec("gt").train_env == TrainEnvSpec("GroundTruthRec") and agent_spec("a2c").train_env is None
    agent = make_agent("dorl", env, **FAST)
    assert isinstance(agent, A2CAgent) and agent.train_env == agent_spec("dorl").train_env
    # the training env is the registration's business, not a config field
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['env_preset'\]"):
        make_agent("r3s", env, env_preset="mbpo")


def test_a2c_presets_default_to_ranking_settings_and_accept_overrides(env):
    for name in ("gt", "r3s", "dorl", "mopo", "mbpo", "roler"):
        cfg = make_agent(name, env, **FAST).cfg
        assert (cfg.tracker.user_dim, cfg.head, cfg.ent_coef) == (32, "tied", 1.0), name
        assert cfg.tracker.profile and cfg.tracker.kind == "avg", name
        assert (cfg.n_steps, cfg.minibatch_size, cfg.update_epochs, cfg.lr) == (5, 0, 2, 3e-3), name  # FAST_UPDATE
    plain = make_agent("a2c", env, **FAST).cfg
    assert (plain.tracker.user_dim, plain.head, plain.ent_coef) == (0, "mlp", 0.01)  # DORL's settings
    assert (plain.n_steps, plain.minibatch_size, plain.update_epochs, plain.lr) == (30, 64, 1, 1e-3)  # DORL_UPDATE
    faithful = make_agent("gt", env, **DORL_UPDATE, **FAST).cfg
    assert (faithful.n_steps, faithful.minibatch_size, faithful.lr, faithful.head) == (30, 64, 1e-3, "tied")
    assert make_agent("r3s", env, ent_coef=0.05, **FAST).cfg.ent_coef == 0.05
    # a nested override keeps the variant's other nested defaults
    cfg = make_agent("r3s", env, tracker={"kind": "gru"}, **FAST).cfg
    assert (cfg.tracker.kind, cfg.tracker.user_dim, cfg.tracker.profile) == ("gru", 32, True)


def test_train_env_kwargs_reach_the_interactive_training_env(env):
    agent = make_agent("mopo", env, num_envs=4, n_steps=2, eval_every=0, train_env_kwargs={"lambda_u": 0.7}, **FAST)
    train, evaluation = agent._envs(env, None)
    assert train.shaping.lambda_u == 0.7 and train.shaping.reward_preset == "mopo" and train.num_envs == 4
    assert evaluation is env
    with pytest.raises(ValueError, match="train_env_kwargs applies to the agents that train in InteractiveRec"):
        make_agent("gt", env, train_env_kwargs={"lambda_u": 0.7})
    with pytest.raises(ValueError, match=r"train_env_kwargs cannot change \['reward_preset'\]"):
        make_agent("mopo", env, train_env_kwargs={"reward_preset": "dorl"})
    with pytest.raises(TypeError, match=r"train_env_kwargs='lambda_u=1' is not a dict"):
        make_agent("r3s", env, train_env_kwargs="lambda_u=1")


def test_learn_envs_follow_the_train_env_eval_env_contract(env):
    """env = training env, eval_env = evaluation env; a method given its evaluation env alone derives the other."""
    from recgym.envs.derive import matching_env

    ev = small_env(4)
    gt = make_agent("gt", env, num_envs=4, **FAST)
    train, evaluation = gt._envs(env, None)  # one env: it is the evaluation env, the training env is derived
    assert evaluation is env and train is not env and train.num_envs == 4
    assert gt._envs(env, ev) == (env, ev)  # a GroundTruthRec env and an eval env: trained in as given
    train, evaluation = gt._envs(env, env)  # the same env twice is one env: never train in the evaluation env
    assert evaluation is env and train is not env
    r3s = make_agent("r3s", env, num_envs=4, **FAST)
    train, evaluation = r3s._envs(env, ev)  # another family than InteractiveRec: derived from env
    assert train.spec.id == "InteractiveRec-Synthetic-v0" and evaluation is ev
    inter = matching_env(env, "InteractiveRec", num_envs=2, reward_preset="r3s")
    assert r3s._envs(inter, ev) == (inter, ev)
    with pytest.raises(ValueError, match=r"made with \{'reward_preset': 'mbpo'\}.*trains with \{'reward_preset': 'r3s'\}"):
        r3s._envs(matching_env(env, "InteractiveRec", num_envs=2, reward_preset="mbpo"), ev)
    # train_env_kwargs are part of where the agent trains: a given training env made without them is refused
    ablation = make_agent("r3s", env, num_envs=4, train_env_kwargs={"lambda_u": 0.0}, **FAST)
    with pytest.raises(ValueError, match=r"made with \{'lambda_u': [^}]+\}, this agent trains with \{'lambda_u': 0.0\}"):
        ablation._envs(inter, ev)
    made = matching_env(env, "InteractiveRec", num_envs=2, reward_preset="r3s", lambda_u=0.0)
    assert ablation._envs(made, ev) == (made, ev)
    by_rule = make_agent("r3s", env, num_envs=4, train_env_kwargs={"lambda_u": "dorl"}, **FAST)
    made = matching_env(env, "InteractiveRec", num_envs=2, reward_preset="r3s", lambda_u="dorl")
    assert made.spec.kwargs["lambda_u"] != "dorl"  # the env records the value the rule gave ...
    assert by_rule._envs(made, ev) == (made, ev)  # ... and the rule it applied, which is what was asked for
    plain = make_agent("a2c", env, eval_episodes=3, progress=False)
    train, evaluation = plain._envs(env, None)  # plain A2C: trains in env, evaluates in a GroundTruthRec match
    assert train is env and evaluation.spec.id == "GroundTruthRec-Synthetic-v0" and evaluation.num_envs == 3


def test_discrete_agent_on_box_action_space_fails_naming_the_space():
    from recgym.envs.sb3 import ContinuousItemActionWrapper

    boxed = ContinuousItemActionWrapper(small_env(2), k=4)
    for name in ("a2c", "cql", "popularity"):
        with pytest.raises(TypeError, match=r"Discrete.*Box"):
            make_agent(name, boxed)


def test_bad_config_field_names_field_and_valid_values(env):
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['lrr'\].*valid fields:.*'lr'"):
        make_agent("a2c", env, lrr=0.1)
    with pytest.raises(TypeError, match=r"a2c: lr='abc' is not a float"):
        make_agent("a2c", env, lr="abc")
    with pytest.raises(TypeError, match=r"a2c: num_envs=2.5 is not an int"):
        make_agent("a2c", env, num_envs=2.5)
    with pytest.raises(TypeError, match=r"a2c: hidden\[1\]='x' is not an int"):
        make_agent("a2c", env, hidden=[64, "x"])
    with pytest.raises(TypeError, match=r"cql: tracker takes a dict of TrackerConfig fields, got 'gru'"):
        make_agent("cql", env, tracker="gru")
    with pytest.raises(ValueError, match=r"unknown tracker config field\(s\) \['tracker.size'\]; valid fields:.*"
                                         r"'tracker.emb_dim'"):
        make_agent("cql", env, tracker={"size": 8})
    with pytest.raises(ValueError, match=r"tracker kind='lstm'; valid values: \['avg', 'gru', 'sasrec'\]"):
        make_agent("cql", env, tracker={"kind": "lstm"})
    with pytest.raises(ValueError, match=r"world_model='xgb'; valid values"):
        make_agent("ucb", env, world_model="xgb")
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['epsilon'\]"):
        make_agent("ucb", env, epsilon=0.1)  # one config per algorithm: epsilon is epsilon_greedy's
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['crr_beta'\]"):
        make_agent("cql", env, crr_beta=1.0)
    with pytest.raises(ValueError, match="unknown agent 'nope'"):
        make_agent("nope", env)


def test_configs_are_typed_and_lossless_values_are_widened():
    from recgym.agents.trackers import TrackerConfig

    cfg = agent_spec("a2c").default_config(lr=1, hidden=[32, 16], num_envs=8.0, tracker={"kind": "gru"})
    assert (cfg.lr, cfg.hidden, cfg.num_envs) == (1.0, (32, 16), 8)
    assert isinstance(cfg.lr, float) and isinstance(cfg.num_envs, int)
    assert cfg.tracker == TrackerConfig(kind="gru", profile=True)  # a2c's default tracker, kind overridden
    assert agent_spec("sqn").default_config().tracker.kind == "gru"
    assert agent_spec("dac4rec_a").default_config(actor_every=3).action_approx is False
    units = {n: agent_spec(n).budget_unit for n in ("a2c", "r3s", "ucb", "popularity", "sb3_ppo", "bcq", "cql",
                                                     "crr", "sqn", "exp_rsft", "dac4rec", "offline_td3")}
    # the continuous-action harness counts env steps in both modes (offline: budget * update_per_step updates)
    assert units == {**dict.fromkeys(("a2c", "r3s", "ucb", "popularity", "sb3_ppo", "dac4rec", "offline_td3"),
                                     "env_steps"),
                     **dict.fromkeys(("bcq", "cql", "crr", "sqn", "exp_rsft"), "gradient_steps")}
    for name in REC_AGENTS:  # every rec agent has the fields the runner sets
        assert isinstance(agent_spec(name).default_config(seed=3, eval_every=5, eval_episodes=7, progress=False),
                          AgentConfig), name


def test_register_agent_checks_the_config_class_and_its_defaults():
    from dataclasses import dataclass

    from recgym.agents.base import register_agent

    with pytest.raises(TypeError, match="config_cls must be a dataclass type"):
        register_agent("bad_cfg", dict, lambda env, config: None)

    @dataclass
    class Cfg(AgentConfig):
        width: int = 4

    with pytest.raises(TypeError, match="bad_defaults: width='wide' is not an int"):
        register_agent("bad_defaults", Cfg, lambda env, config: None, defaults={"width": "wide"})
    assert "bad_defaults" not in registered_agents()


def test_a2c_deterministic_under_seed():
    def run(seed):
        e = small_env()
        agent = make_agent("gt", e, seed=seed, num_envs=8, eval_every=0, **FAST)
        agent.learn(e, 8 * 30 * 2)
        return agent.history[-1]["R_cumu"], [p.detach().clone() for p in agent.net.parameters()]

    (r1, p1), (r2, p2), (_, p3) = run(0), run(0), run(1)
    assert r1 == r2 and all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(p1, p3, strict=True))


class _RecordingLogger:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, int]] = []

    def log_scalar(self, tag: str, value: float, step: int) -> None:
        self.rows.append((tag, float(value), int(step)))


@pytest.mark.parametrize("name", ["gt", "a2c"])
def test_a2c_logged_losses_are_finite(name):
    """Every update logs finite losses. Regression: the rollout kept references to the env's action mask,
    which the env updates in place, so each stored step saw the end-of-rollout mask with its own action
    masked out: log-prob -inf, a NaN policy/total loss on every update and no gradient on the taken action."""
    e = small_env()
    log = _RecordingLogger()
    agent = make_agent(name, e, seed=0, num_envs=8, eval_every=0, log_every=8 * 30, **FAST)
    agent.learn(e, 8 * 30 * 3, logger=log)
    losses = [(tag, v) for tag, v, _ in log.rows if tag.startswith("loss/")]
    assert {tag for tag, _ in losses} == {"loss/total", "loss/policy", "loss/value", "loss/entropy"}
    assert len(losses) == 4 * 3  # one row per tag per update
    assert all(np.isfinite(v) for _, v in losses), losses
    assert all(v > 0 for tag, v in losses if tag == "loss/entropy")


def test_a2c_logs_training_scalars_every_log_every_steps():
    e = small_env()
    log = _RecordingLogger()
    agent = make_agent("gt", e, seed=0, num_envs=8, n_steps=5, eval_every=0, log_every=100, **FAST)
    agent.learn(e, 8 * 5 * 6, logger=log)  # 6 updates of 40 steps: logs when 100, 200 are passed, and at the end
    steps = sorted({s for tag, _, s in log.rows if tag == "loss/total"})
    assert steps == [120, 200, 240]
    rets = [v for tag, v, _ in log.rows if tag == "train/return"]
    assert rets and all(0 < v <= 30 * 5 for v in rets)  # synthetic ratings 1-5, 30 turns


@pytest.mark.parametrize("name", ["cql", "exp_rsft"])
def test_offline_deterministic_under_seed(name, env):
    def run(seed):
        agent = make_agent(name, env, seed=seed, eval_every=0, batch_size=32, **FAST)
        agent.learn(env, 6)
        return agent.history[-1], [p.detach().clone() for p in agent.net.parameters()]

    (h1, p1), (h2, p2) = run(0), run(0)
    assert h1 == h2 and all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))


def test_static_rankings_are_served_in_order_without_repeats():
    e = small_env(num_envs=2, mode="FB")  # FB: the env allows repeats; the agent must not repeat anyway
    ds = e.unwrapped.dataset
    agent = make_agent("popularity", e)
    counts = np.bincount(ds.train["item"].to_numpy(), minlength=ds.n_items)
    expected = np.lexsort((np.arange(ds.n_items), -counts))[:10]
    obs, info = e.reset(seed=0)
    served = []
    for _ in range(10):
        a = agent.act(obs, info)
        served.append(int(a[0]))
        obs, _, _, _, info = e.step(a)
    assert served == expected.tolist()
    top = make_agent("top_rated", e)
    mean = ds.train.groupby("item")["reward"].mean()
    obs, info = e.reset(seed=0)
    assert int(top.act(obs, info)[0]) == int(mean.idxmax())


def test_logged_transitions_history_layout():
    import pandas as pd

    from recgym.data.base import LoggedDataset

    train = pd.DataFrame({"user": [0, 0, 0, 1, 1], "item": [4, 2, 7, 1, 3],
                          "reward": [1.0, 2.0, 3.0, 4.0, 5.0], "time": [30, 10, 20, 2, 1]})
    ds = LoggedDataset("toy", 2, 8, train, train.iloc[:0], None, np.zeros((8, 1), bool), ["c"], "rating", 4.0,
                       "distance")
    t = build_logged_transitions(ds, history_len=2, episode_len=30, order="time")
    # user 0 in time order: 2 (r2), 7 (r3), 4 (r1); user 1: 3 (r5), 1 (r4)
    assert t.action.tolist() == [2, 7, 4, 3, 1]
    assert t.obs["items"].tolist() == [[-1, -1], [-1, 2], [2, 7], [-1, -1], [-1, 3]]
    assert t.obs["rewards"][2].tolist() == [2.0, 3.0]
    assert t.next_obs["items"][2].tolist() == [7, 4]
    assert t.done.tolist() == [False, False, True, False, True]
    assert t.obs["step"].tolist() == [0, 1, 2, 0, 1]
    chunks = build_logged_transitions(ds, history_len=2, episode_len=2, order="time")
    assert chunks.done.tolist() == [False, True, True, False, True]
    assert chunks.obs["items"][2].tolist() == [-1, -1]  # a new episode starts with an empty history


def test_trackers_shapes_and_padding():
    obs = {"user": torch.tensor([0, 1]), "step": torch.tensor([0, 2]),
           "items": torch.tensor([[-1, -1, -1, -1], [-1, -1, 3, 5]]),
           "rewards": torch.tensor([[0.0, 0, 0, 0], [0, 0, 2.0, 4.0]])}
    for kind in ("avg", "gru", "sasrec"):
        tr = make_tracker(TrackerConfig(kind=kind, emb_dim=8, hidden=16), 2, 10, 4, (0.0, 4.0), 30)
        s = tr(obs)
        assert s.shape == (2, tr.out_dim) and bool(torch.isfinite(s).all())
    avg = make_tracker(TrackerConfig(kind="avg", window=2, emb_dim=8, use_step=False), 2, 10, 4, (0.0, 4.0), 30)
    s = avg(obs).detach()
    e = avg.item_emb.weight.detach()
    assert torch.allclose(s[1, :8], (e[3] + e[5]) / 2) and float(s[1, 8]) == 1.0  # last reward 4 -> 1
    assert torch.equal(s[0], torch.zeros(9))  # empty history: zero mean, zero reward


def test_sample_categorical_follows_softmax_and_mask():
    from recgym.agents.common import sample_categorical

    n = 30_000
    logits = torch.log(torch.tensor([1.0, 2.0, 3.0, 50.0])).repeat(n, 1)
    mask = torch.tensor([True, True, True, False]).repeat(n, 1)
    gen = torch.Generator().manual_seed(0)
    a = sample_categorical(logits, gen, mask)
    freq = torch.bincount(a, minlength=4).float() / n
    assert torch.allclose(freq, torch.tensor([1 / 6, 2 / 6, 3 / 6, 0.0]), atol=0.01), freq
    # -inf logits are never drawn either, nor are zero-probability items at either end of the row
    b = sample_categorical(torch.tensor([[float("-inf"), 0.0, float("-inf")]] * 100), gen)
    assert bool((b == 1).all())
    c = sample_categorical(torch.tensor([[-200.0, 0.0, -200.0]] * 100), gen, torch.tensor([[True, True, False]] * 100))
    assert set(c.tolist()) == {1}  # item 0 has probability ~1e-87: exactly 0 in float32
    # a row with nothing allowed still returns an item in range (only ended envs, whose action is ignored)
    d = sample_categorical(torch.zeros(2, 3), gen, torch.zeros(2, 3, dtype=torch.bool))
    assert bool(((d >= 0) & (d < 3)).all())
    # same generator state, same draws
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(sample_categorical(logits[:50], g1, mask[:50]), sample_categorical(logits[:50], g2, mask[:50]))


def test_policy_terms_match_autograd_of_masked_log_softmax():
    from recgym.agents.a2c import PolicyTerms

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    blocked = torch.rand(6, 9, generator=gen) < 0.4
    blocked[:, 2] = False
    blocked[0] = True
    blocked[0, 7] = False  # a row with exactly one allowed item: log-prob 0, entropy 0
    acts = torch.tensor([7, 2, 2, 2, 2, 2])
    ref_lp = torch.log_softmax(logits.masked_fill(blocked, float("-inf")), -1)
    ref_a = ref_lp.gather(1, acts[:, None]).squeeze(1)
    ref_h = -(ref_lp.exp() * torch.where(blocked, 0.0, ref_lp)).sum(-1)
    lp_a, h = PolicyTerms.apply(logits, blocked, acts)
    assert torch.allclose(lp_a, ref_a) and torch.allclose(h, ref_h) and float(lp_a[0]) == 0.0 and float(h[0]) == 0.0
    w1, w2 = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    g = torch.autograd.grad((lp_a * w1).sum() + (h * w2).sum(), logits)[0]
    g_ref = torch.autograd.grad((ref_a * w1).sum() + (ref_h * w2).sum(), logits)[0]
    assert torch.allclose(g, g_ref) and bool((g[blocked] == 0).all())
    assert torch.autograd.gradcheck(lambda x: PolicyTerms.apply(x, blocked, acts), (logits,))
    # a blocked action is loud (log-prob -inf), as with autograd
    assert float(PolicyTerms.apply(logits.detach(), blocked, torch.tensor([0] * 6))[0][0]) == float("-inf")


def test_gae_advantages_match_the_step_recursion():
    from recgym.agents.a2c import gae_advantages

    gen = torch.Generator().manual_seed(0)
    T, B, gamma = 7, 5, 0.9
    rew, value, last_v = torch.rand(T, B, generator=gen), torch.rand(T, B, generator=gen), torch.rand(B, generator=gen)
    done = torch.rand(T, B, generator=gen) < 0.25
    valid = torch.ones(T, B, dtype=torch.bool)
    valid[1:] = ~done[:-1]  # NEXT_STEP autoreset: the step after an end is not a transition
    done &= valid
    for lam in (0.0, 0.95, 1.0):
        ref = torch.zeros(T, B)
        gae, nxt = torch.zeros(B), last_v
        for t in reversed(range(T)):
            nonterminal = (~done[t]).float()
            delta = rew[t] + gamma * nxt * nonterminal - value[t]
            gae = torch.where(valid[t], delta + gamma * lam * nonterminal * gae, 0.0)
            ref[t] = gae
            nxt = torch.where(valid[t], value[t], 0.0)
        assert torch.allclose(gae_advantages(rew, value, last_v, done, valid, gamma, lam), ref, atol=1e-6), lam


def test_tracker_profile_paths_and_frozen_cache_agree(env, monkeypatch):
    import recgym.agents.trackers as trackers

    ds = env.unwrapped.dataset
    cfg = TrackerConfig(profile=True, user_dim=4, emb_dim=8)
    obs, _ = env.reset(seed=1)
    for t in range(3):
        obs, *_ = env.step(torch.full((8,), 3 * t + 1))
    outs, grads = [], []
    for dense_max in (trackers.DENSE_PROFILE_MAX, 0):  # dense weight matrix, then embedding_bag
        monkeypatch.setattr(trackers, "DENSE_PROFILE_MAX", dense_max)
        torch.manual_seed(0)
        tr = make_tracker(cfg, ds.n_users, ds.n_items, 10, (0.0, 5.0), 30, ds)
        assert hasattr(tr, "prof_dense") == (dense_max > 0)
        s = tr(obs)
        outs.append(s.detach())
        grads.append(torch.autograd.grad(s.square().sum(), tr.item_emb.weight)[0])
        with torch.no_grad(), tr.frozen():
            assert torch.allclose(tr(obs), s) and torch.allclose(tr(obs), s)  # filled on first use, then reused
        with torch.no_grad():
            tr.item_emb.weight.add_(1.0)  # outside frozen(): nothing stale is kept
            assert not torch.allclose(tr(obs), s)
        assert "tracker.prof_dense" not in {f"tracker.{k}" for k in tr.state_dict()}  # rebuilt from the data
    assert torch.allclose(outs[0], outs[1], atol=1e-6) and torch.allclose(grads[0], grads[1], atol=1e-5)
    # the profile part is the mean (and reward-weighted mean) of the user's logged item embeddings
    u = int(obs["user"][0])
    logged = ds.train[ds.train["user"] == u]["item"].to_numpy()
    e = tr.item_emb.weight.detach()
    assert torch.allclose(tr.profile(obs["user"][:1])[0, :8], e[torch.tensor(logged)].mean(0), atol=1e-6)


def test_custom_agent_example_runs(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["custom_agent.py"])
    runpy.run_path(str(ROOT / "examples" / "custom_agent.py"), run_name="__main__")
    out = capsys.readouterr().out
    rows = {line.split()[0]: float(line.split("R_cumu=")[1].split()[0]) for line in out.splitlines() if "R_cumu=" in line}
    assert set(rows) == {"most_logged_for_user", "random"}
    assert rows["most_logged_for_user"] > rows["random"]


# (agent, budget env var, default budget, minimum fraction of the optimal R_cumu or None)
SHORT_CHECKS = [
    # A2C-gt (preset defaults: user embedding, tied head, ent_coef 1.0) trained on the ground truth: measured ~100
    # at 120k steps (popularity 95.9); ~122, 94% of optimal, at 600k (``python -m
    # recgym.benchmarks.a2c_synthetic --budget 600000 --seeds 0 1 2``).
    ("gt", "RECGYM_TEST_A2C_BUDGET", 120_000, 0.7),
    # r3s, trained only in InteractiveRec-Synthetic-v0 (diffusion world model fitted on the logs, decaying entropy
    # penalties): seed 0 measured 101.2 against 95.3 at 600k steps; 95.6 at 300k and 95.5 at 450k, too close to
    # call; seeds 0-2 give 105.5 +- 3.0 at 600k (``... --agent r3s --budget 600000 --seeds 0 1 2``).
    ("r3s", "RECGYM_TEST_R3S_BUDGET", 600_000, None),
]


@pytest.mark.parametrize(("name", "budget_var", "budget", "min_opt_frac"), SHORT_CHECKS, ids=[c[0] for c in SHORT_CHECKS])
def test_a2c_preset_learns_on_synthetic_short(name, budget_var, budget, min_opt_frac):
    """Shortened issue check on GroundTruthRec-Synthetic-v0 (optimal 129.8, random 75.2, popularity 95.3 at 300
    episodes): the agent must clear random by a quarter of the random-to-optimal gap and beat popularity by 2
    (gt also: reach 70% of the optimum). The full check with longer budgets is the slow test below.
    """
    from recgym.data.synthetic import optimal_return, random_return

    torch.set_num_threads(1)
    e = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=100, protocol="roler")
    gt = e.unwrapped.dataset.ground_truth
    opt, rnd = optimal_return(gt, 30).mean, random_return(gt, 30).mean
    agent = make_agent(name, e, seed=0, eval_every=0, eval_episodes=300, progress=False)
    agent.learn(e, int(os.environ.get(budget_var, budget)))
    ret = agent.history[-1]["R_cumu"]
    pop = make_agent("popularity", e, eval_episodes=300, progress=False)
    pop.learn(e)
    popularity = pop.history[-1]["R_cumu"]
    if min_opt_frac is not None:
        assert ret >= min_opt_frac * opt, (ret, opt)
    assert ret > rnd + 0.25 * (opt - rnd), (ret, rnd, opt)
    assert ret > popularity + 2.0, (ret, popularity)


@pytest.mark.slow
def test_a2c_gt_and_r3s_full_synthetic_check():
    """The issue's full check: A2C-gt >= 90% of the optimal R_cumu; r3s beats random and popularity clearly.

    Budgets: RECGYM_SLOW_A2C_BUDGET env steps (default 600,000, the budget of the measured numbers) for each A2C
    run; seed 0, 500 evaluation episodes (as ``python -m recgym.benchmarks.a2c_synthetic``).
    """
    from recgym.data.synthetic import optimal_return

    torch.set_num_threads(1)
    budget = int(os.environ.get("RECGYM_SLOW_A2C_BUDGET", 600_000))
    e = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=100, protocol="roler")
    opt = optimal_return(e.unwrapped.dataset.ground_truth, 30).mean
    res = {}
    for name in ("gt", "r3s", "random", "popularity"):
        learner = name in ("gt", "r3s")
        extra = {"eval_every": 0} if learner else {}
        agent = make_agent(name, e, seed=0, eval_episodes=500, progress=False, **extra)
        agent.learn(e, budget if learner else 0)
        res[name] = agent.history[-1]["R_cumu"]
    assert res["gt"] >= 0.9 * opt, (res, opt)
    margin = 0.05 * (opt - res["random"])
    assert res["r3s"] > res["popularity"] + margin and res["r3s"] > res["random"] + margin, (res, opt)


def test_interactive_preset_trains_in_world_model_env_and_evaluates_in_ground_truth(env):
    from recgym.envs.derive import matching_env

    inter = matching_env(env, "InteractiveRec", num_envs=4, reward_preset="roler")
    assert inter.spec.id == "InteractiveRec-Synthetic-v0"
    assert inter.spec.kwargs["protocol"] == "roler" and inter.spec.kwargs["reward_preset"] == "roler"
    back = matching_env(inter, "GroundTruthRec", num_envs=2)
    assert back.spec.id == "GroundTruthRec-Synthetic-v0" and back.spec.kwargs["protocol"] == "roler"
    agent = make_agent("roler", env, num_envs=4, eval_every=0, **FAST)
    agent.learn(env, 4 * 30)
    assert agent.env_steps == 120 and len(agent.history) == 1
    assert agent.history[0]["Length"] == 30.0  # evaluated in the roler ground-truth env (no quitting)
