"""DAC4Rec and the continuous-action harness: schedule, bounded action approximation, energy guidance,
Q-based selection, interactive training with the user model, no ground truth in training, save/load."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import recgym  # noqa: F401  (registers the env ids)
from recgym.agents import agent_spec, make_agent, registered_agents
from recgym.agents.continuous import ReplayBuffer
from recgym.agents.dac4rec import VARIANTS, DAC4RecAgent, DAC4RecConfig
from recgym.agents.diffusion_policy import DiffusionActor, EnergyModel, VPSchedule, cep_loss
from recgym.data import load_dataset
from recgym.envs.item_actions import map_actions_to_items

torch.set_num_threads(1)

SMALL = {"n_users": 60, "n_items": 60}
# a tiny harness: 8 training envs, 2 steps per env (16 transitions) and 4 updates per round, updates once 24
# transitions are in the buffer (from the second round on)
FAST = {"batch_size": 16, "hidden": (32, 32), "tracker": {"hidden": 16}, "n_diffusion_steps": 4,
        "energy_batch": 8, "energy_m": 4, "energy_every": 2, "eval_samples": 3, "eval_episodes": 8,
        "progress": False, "num_envs": 8, "step_per_collect": 16, "update_per_step": 0.25, "learning_starts": 24}


def make_env(ds, family: str = "GroundTruthRec", num_envs: int = 8, **kw):
    return gym.make_vec(f"{family}-Synthetic-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        protocol="easyrl4rec", dataset=ds, **kw)


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", **SMALL)


@pytest.fixture(scope="module")
def env(ds):
    return make_env(ds)


@pytest.fixture(scope="module")
def train(ds):
    """The training env the agents derive from ``env`` (built once here: learn(train, ..., eval_env=env))."""
    return make_env(ds, "InteractiveRec", reward_preset="mbpo", progress=False)


def test_vp_schedule_matches_the_paper_formula():
    sch = VPSchedule(2, beta_min=0.1, beta_max=10.0)
    a1 = math.exp(-0.1 / 2 - 0.5 * 9.9 * 1 / 4)
    a2 = math.exp(-0.1 / 2 - 0.5 * 9.9 * 3 / 4)
    assert torch.allclose(sch.alphas, torch.tensor([a1, a2]), rtol=1e-6)
    assert torch.allclose(sch.abar, torch.tensor([a1, a1 * a2]), rtol=1e-6)
    assert float(sch.post_var[0]) == 0.0 and math.isclose(float(sch.post_c0[0]), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="n_steps"):
        VPSchedule(0)


def test_action_approximation_is_the_closed_form_x0_and_is_bounded():
    torch.manual_seed(0)
    actor = DiffusionActor(state_dim=3, action_dim=4, n_steps=7)
    a0 = torch.rand(6, 4) * 2 - 1
    s = torch.randn(6, 3)
    g = torch.Generator().manual_seed(11)
    i = torch.randint(7, (6,), generator=g)
    noise = torch.randn((6, 4), generator=g)
    abar = np.cumprod([math.exp(-0.1 / 7 - 0.5 * 9.9 * (2 * k - 1) / 49) for k in range(1, 8)])
    ab = torch.tensor(abar[i.numpy()], dtype=torch.float32).unsqueeze(1)
    a_i = ab.sqrt() * a0 + (1 - ab).sqrt() * noise
    eps_c = torch.full((6, 4), 0.3)
    actor.eps = lambda a, t, st: eps_c.expand_as(a)
    err, a0_hat, i_used = actor.denoise_terms(a0, s, torch.Generator().manual_seed(11))
    assert torch.equal(i_used, i)
    assert torch.allclose(a0_hat, (a_i - (1 - ab).sqrt() * eps_c) / ab.sqrt(), atol=1e-5)
    assert torch.allclose(err, (eps_c - noise).pow(2).mean(-1), atol=1e-6)
    # bounded version: steps drawn among the first max_step only, estimate clipped to the box
    g2 = torch.Generator().manual_seed(5)
    i2 = torch.randint(2, (6,), generator=g2)
    noise2 = torch.randn((6, 4), generator=g2)
    ab2 = torch.tensor(abar[i2.numpy()], dtype=torch.float32).unsqueeze(1)
    a_i2 = ab2.sqrt() * a0 + (1 - ab2).sqrt() * noise2
    big = torch.full((6, 4), -40.0)  # an untrained model's wild epsilon
    actor.eps = lambda a, t, st: big.expand_as(a)
    got = actor.approx_action(a0, s, torch.Generator().manual_seed(5), max_step=2)
    assert torch.allclose(got, ((a_i2 + 40 * (1 - ab2).sqrt()) / ab2.sqrt()).clamp(-1, 1), atol=1e-5)
    assert float(got.abs().max()) <= 1.0
    actor.eps = lambda a, t, st: noise2  # the true noise recovers the action
    assert torch.allclose(actor.approx_action(a0, s, torch.Generator().manual_seed(5), 2), a0, atol=1e-5)


def test_energy_guidance_moves_samples_to_higher_q():
    """Bimodal behaviour (modes at a_x = -0.6 and +0.6), known Q(a) = a_x: guidance shifts mass to a_x > 0."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-0.6, 0.0], [0.6, 0.0]])

    def behaviour(n: int) -> torch.Tensor:
        return centres[torch.randint(2, (n,), generator=g)] + 0.05 * torch.randn((n, 2), generator=g)

    actor = DiffusionActor(state_dim=1, action_dim=2, n_steps=10, hidden=(48, 48))
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)
    for _ in range(250):
        err, _, _ = actor.denoise_terms(behaviour(128), torch.zeros(128, 1), g)
        opt.zero_grad()
        err.mean().backward()
        opt.step()
    energy = EnergyModel(state_dim=1, action_dim=2, hidden=(48, 48))
    e_opt = torch.optim.Adam(energy.parameters(), lr=3e-3)
    for _ in range(150):
        cand = behaviour(32 * 16).view(32, 16, 2)
        loss = cep_loss(energy, actor.sched, torch.zeros(32, 1), cand, cand[..., 0], beta=3.0, gen=g)
        e_opt.zero_grad()
        loss.backward()
        e_opt.step()
    s = torch.zeros(500, 1)
    plain = actor.sample(s, torch.Generator().manual_seed(1))
    guided = actor.sample(s, torch.Generator().manual_seed(1), guide=energy.grad_a, scale=3.0)
    frac_plain, frac_guided = float((plain[:, 0] > 0).float().mean()), float((guided[:, 0] > 0).float().mean())
    assert 0.3 < frac_plain < 0.7
    assert frac_guided > frac_plain + 0.25 and frac_guided > 0.8
    with pytest.raises(ValueError, match="cep_loss"):
        cep_loss(energy, actor.sched, torch.zeros(4, 1), torch.zeros(4, 5, 2), torch.zeros(4, 6))


def test_replay_buffer_ring_and_n_step_returns():
    buf = ReplayBuffer(5, torch.device("cpu"))  # 2 envs: capacity rounded up to 6 rows (3 steps)
    for k in range(4):  # step k, env i: reward 10k + i; env 1 ends its episode at step 1
        r = torch.tensor([10.0 * k, 10.0 * k + 1])
        obs = {"step": torch.tensor([k, k]), "items": r[:, None].long().repeat(1, 2)}
        buf.add(obs, r[:, None], r, {**obs, "step": obs["step"] + 1}, torch.tensor([False, k == 1]))
    assert (buf.capacity, len(buf), buf.pos) == (6, 6, 2)  # step 3 overwrote step 0
    o, a, ret, no, d, disc = buf.sample(300, torch.Generator().manual_seed(0), n_step=3, gamma=0.5)
    got = {float(x): (float(r), int(s), bool(e), float(g)) for x, r, s, e, g in zip(a[:, 0], ret, no["step"], d, disc,
                                                                                  strict=True)}
    assert got == {
        10.0: (10 + 0.5 * 20 + 0.25 * 30, 4, False, 0.125),  # three steps: 10, 20, 30
        11.0: (11.0, 2, True, 0.5),  # done at once: no successor, no bootstrap
        20.0: (20 + 0.5 * 30, 4, False, 0.25),  # step 3 is the newest: two steps only
        21.0: (21 + 0.5 * 31, 4, False, 0.25),
        30.0: (30.0, 4, False, 0.5), 31.0: (31.0, 4, False, 0.5),
    }
    assert torch.equal(o["items"][:, 0].float(), a[:, 0])
    with pytest.raises(ValueError, match="holds steps of 2 envs"):
        buf.add(obs, torch.zeros(3, 1), torch.zeros(3), obs, torch.zeros(3, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="empty"):
        ReplayBuffer(3, torch.device("cpu")).sample(1, torch.Generator())


def test_critic_sees_the_actions_similarity_to_the_recent_items():
    from recgym.agents.dac4rec import TwinCritic
    from recgym.agents.trackers import TrackerConfig, make_tracker

    emb = torch.eye(3)  # 3 items, k = 3
    tracker = make_tracker(TrackerConfig(kind="avg", emb_dim=4), 2, 3, 4, (0.0, 1.0), 30)
    critic = TwinCritic(tracker, 3, (8,), emb, window=2)
    critic.q1 = torch.nn.Identity()  # Q1 now returns its input
    obs = {"user": torch.tensor([0, 1]), "step": torch.tensor([3, 1]),
           "items": torch.tensor([[0, 1, 2, 1], [-1, -1, -1, 2]]), "rewards": torch.zeros(2, 4)}
    s = critic.state(obs)
    assert s.shape == (2, tracker.out_dim + 2 * 3) and critic.state_dim == s.shape[1]
    assert torch.equal(s[:, -6:], torch.tensor([[0.0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1]]))  # padding -> 0
    a = torch.tensor([[0.0, 5.0, -0.5], [0.2, 0.3, 0.9]])
    x = critic.q(s, a)[0]
    # [tracker state, <clip(a), e_j> for the last 2 items (oldest first), a]
    assert torch.equal(x[:, tracker.out_dim:tracker.out_dim + 2], torch.tensor([[-0.5, 1.0], [0.0, 0.9]]))
    assert torch.equal(x[:, -3:], a)


def test_every_variant_trains_interactively_and_evaluates(env, train):
    assert set(VARIANTS) <= set(registered_agents())
    assert agent_spec("dac4rec").budget_unit == "env_steps"
    assert agent_spec("dac4rec").default_config().n_diffusion_steps == 100  # the paper's N
    for name in VARIANTS:
        agent = make_agent(name, env, seed=0, **FAST)
        agent.learn(train, 48, eval_env=env)  # 3 rounds of 16 env steps
        assert agent.env_steps == 48
        offline = name.startswith("offline")
        # interactive: 4 updates in each of the last two rounds; offline: budget * update_per_step updates
        assert agent.grad_steps == (12 if offline else 8), name
        guided = VARIANTS[name]["guidance_scale"] > 0
        assert agent.energy_grad_steps == (4 if guided else 0), name  # one every energy_every=2 updates
        assert len(agent.buffer or []) == (0 if offline else 48), name
        res = agent.history[-1]
        assert res["step"] == 48 and 0 < res["Length"] <= 30 and np.isfinite(res["R_cumu"]), name


def test_interactive_training_pays_the_user_models_reward(env):
    """Given the GroundTruthRec env, the agent derives InteractiveRec(mbpo) and evaluates in the given env: the
    transitions pay reward = DeepFM mean - min, never the ground truth."""
    agent = make_agent("td3", env, seed=1, remap_eps=0.0, **FAST)
    agent.learn(env, 32)
    assert agent.history[-1]["step"] == 32
    d = agent.buffer._data
    n = len(agent.buffer)
    users, acts, rews = d["obs"]["user"][:n], d["act"][:n], d["rew"][:n]
    items = map_actions_to_items(acts, agent.item_emb)
    inter = make_env(env.unwrapped.dataset, "InteractiveRec", reward_preset="mbpo", progress=False)
    mean, _ = inter.unwrapped.world_model.predict()
    lo, hi = inter.unwrapped.single_observation_space["rewards"].low[0], \
        inter.unwrapped.single_observation_space["rewards"].high[0]
    expected = (mean[users, items] - inter.unwrapped.min_r).clamp_min(0) / (hi - lo)
    assert torch.allclose(rews, expected, atol=1e-5)
    gt = torch.as_tensor(env.unwrapped.dataset.ground_truth)[users, items]
    assert not torch.allclose(rews * (hi - lo), gt, atol=0.1)
    # the stored states' rewards are normalised with the training env's bounds, into [0, 1]
    assert float(d["obs"]["rewards"][:n].max()) <= 1.0


def _no_ground_truth(ds):
    """Make every read of ``ds.ground_truth`` (and of its distance source) fail, until restored."""
    original = type(ds)

    def trip(self):
        raise AssertionError("the ground-truth matrix was read during training")

    ds.__class__ = type("NoGroundTruth", (original,), {"ground_truth": property(trip),
                                                       "quit_distance_source": trip})
    return original


def _train_against_two_ground_truths(name, leak=None):
    """Train ``name`` twice with the ground truth unreadable, each agent built from and evaluated in an env
    holding another ground truth (the real one, then its columns reversed). Returns the two agents' parameters
    and histories. ``leak(env)`` (the negative control) gives item embeddings computed from that env."""
    ds = load_dataset("synthetic", **SMALL)
    train = make_env(ds, "InteractiveRec", reward_preset="mbpo", progress=False)
    flipped = torch.as_tensor(ds.ground_truth).flip(1).contiguous()
    targets = (make_env(ds), make_env(ds, ground_truth_tensor=flipped))
    if name == "sb3_td3":
        kw = {"num_envs": 8, "learning_starts": 16, "batch_size": 16, "eval_every": 24, "eval_episodes": 8,
              "progress": False}
    else:
        kw = {**FAST, "eval_every": 24}
    params, histories = [], []
    for target in targets:  # SB3 seeds the global RNGs at construction: build each right before learning
        if leak is None:
            agent = make_agent(name, target, seed=3, **kw)
        else:
            cfg = agent_spec(name).default_config(seed=3, **kw)
            agent = DAC4RecAgent(target, cfg, name=name, item_embeddings=leak(target))
        original = _no_ground_truth(ds)
        try:
            with pytest.raises(AssertionError, match="ground-truth matrix was read"):
                _ = ds.ground_truth  # the tripwire is armed
            if name != "sb3_td3" and leak is None:  # recgym's agents read nothing of it at construction either
                make_agent(name, target, seed=3, **kw)
            agent.learn(train, 64, eval_env=target)
        finally:
            ds.__class__ = original
        if name == "sb3_td3":
            params.append(agent.model.policy.state_dict())
        else:
            params.append({**agent.actor.state_dict(),
                           **{f"c.{k}": v for k, v in agent.critic.state_dict().items()}})
        histories.append(agent.history)
    return params, histories


@pytest.mark.parametrize("name", ["dac4rec", "sac", "td3", "offline_td3", "sb3_td3"])
def test_training_never_reads_the_ground_truth(name):
    """Training with the ground truth unreadable works, and an agent built from and evaluated in an env with
    another ground truth learns exactly the same parameters: the matrix reaches evaluation only."""
    (p0, p1), (h0, h1) = _train_against_two_ground_truths(name)
    assert len(h0) == len(h1) >= 2 and all(np.isfinite(h["R_cumu"]) for h in h0 + h1)
    assert [h["R_cumu"] for h in h0] != [h["R_cumu"] for h in h1]  # evaluation saw two ground truths
    for key, value in p0.items():
        assert torch.equal(value, p1[key]), f"{name}: {key} depends on the evaluation env's ground truth"


def test_the_ground_truth_check_catches_a_leaking_agent():
    """Negative control for the test above: action embeddings from an SVD of the env's ground truth (main's former
    DAC4Rec default) escape the tripwire (the env holds its own tensor) but not the parameter comparison."""

    def gt_svd(env):
        u, sv, _ = torch.linalg.svd(env.unwrapped.gt.float().T, full_matrices=False)
        return u[:, :8] * sv[:8].sqrt()

    (p0, p1), _ = _train_against_two_ground_truths("td3", leak=gt_svd)
    assert any(not torch.equal(v, p1[k]) for k, v in p0.items())


def test_evaluation_keeps_the_best_q_among_sampled_actions(env):
    agent = make_agent("dac4rec_noguide", env, seed=2, eval_samples=5, **{k: v for k, v in FAST.items()
                                                                          if k != "eval_samples"})
    obs, _ = env.reset(seed=0)
    o = agent._default_scaler(obs)
    got = agent.policy_action(o, torch.Generator().manual_seed(9))
    with torch.no_grad():
        s = agent.actor["tracker"](o)
        cand = agent.actor["pi"].sample(s.repeat_interleave(5, 0), torch.Generator().manual_seed(9)).view(8, 5, -1)
        q = agent.critic.q_min(agent.critic.state(o).repeat_interleave(5, 0), cand.view(40, -1)).view(8, 5)
    assert torch.equal(got, cand[torch.arange(8), q.argmax(1)])
    assert len(set(q.argmax(1).tolist())) > 1  # the selection matters: not always the first sample


def test_act_masks_repeats_in_nx_mode(ds):
    roler = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=8, vectorization_mode="vector_entry_point",
                         protocol="roler", dataset=ds)
    agent = make_agent("dac4rec", roler, seed=0, **FAST)
    agent.learn(roler, 32)  # evaluation would raise on a masked (repeated) item
    assert roler.unwrapped.mode == "NX_0" and agent.history[-1]["Length"] == pytest.approx(30.0)
    obs, info = roler.reset(seed=0)
    chosen = []
    for _ in range(30):
        a = agent.act(obs, info)
        assert bool(info["action_mask"][torch.arange(8), a].all())
        chosen.append(a)
        obs, _, term, trunc, info = roler.step(a)
    assert all(len(set(row.tolist())) == 30 for row in torch.stack(chosen, 1))


def test_determinism_and_save_load(env, train, tmp_path):
    a1, a2 = (make_agent("dac4rec", env, seed=5, **FAST) for _ in range(2))
    a1.learn(train, 48, eval_env=env)
    a2.learn(train, 48, eval_env=env)
    for (k, v1), v2 in zip(a1.actor.state_dict().items(), a2.actor.state_dict().values(), strict=True):
        assert torch.equal(v1, v2), k
    obs, info = env.reset(seed=1)
    a1.act_gen.manual_seed(0)
    a2.act_gen.manual_seed(0)
    assert torch.equal(a1.act(obs, info), a2.act(obs, info))
    a3 = make_agent("dac4rec", env, seed=9, **FAST)
    assert not torch.equal(next(iter(a3.actor["pi"].parameters())), next(iter(a1.actor["pi"].parameters())))
    path = tmp_path / "dac.pt"
    a1.save(path)
    a3.load(path)
    assert (a3.env_steps, a3.grad_steps, a3.energy_grad_steps) == (48, 8, 4)
    a1.act_gen.manual_seed(4)
    a3.act_gen.manual_seed(4)
    o = a1._default_scaler(obs)
    assert torch.equal(a1.policy_action(o), a3.policy_action(o))
    with pytest.raises(ValueError, match="saved by agent 'dac4rec'"):
        make_agent("dac4rec_noguide", env, **FAST).load(path)
    with pytest.raises(ValueError, match="n_diffusion_steps"):
        make_agent("dac4rec", env, **{**FAST, "n_diffusion_steps": 5}).load(path)


def test_config_errors(env):
    with pytest.raises(ValueError, match="needs actor='diffusion'"):
        make_agent("sac", env, guidance_scale=1.0)
    with pytest.raises(ValueError, match=r"train_mode='online'; valid values: \['interactive', 'offline'\]"):
        make_agent("td3", env, train_mode="online")
    with pytest.raises(ValueError, match=r"action_emb='gt_svd'; valid values: \['deepfm', 'train_svd'\]"):
        make_agent("td3", env, action_emb="gt_svd")
    with pytest.raises(ValueError, match="reward_preset='nope'"):
        make_agent("td3", env, reward_preset="nope")
    with pytest.raises(ValueError, match="unknown config field"):
        make_agent("dac4rec", env, n_steps=5)
    with pytest.raises(ValueError, match="item_embeddings must be"):
        DAC4RecAgent(env, DAC4RecConfig(), item_embeddings=np.ones((3, 4)))
