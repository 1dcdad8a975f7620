"""DAC4Rec: schedule, action approximation, energy guidance on a toy problem, agents on a small synthetic env."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import recgym  # noqa: F401  (registers the env ids)
from recgym.agents import make_agent, registered_agents
from recgym.agents.dac4rec import VARIANTS, DAC4RecAgent, DAC4RecConfig, items_for_actions
from recgym.agents.diffusion_policy import DiffusionActor, EnergyModel, VPSchedule, cep_loss

torch.set_num_threads(1)

FAST = {"batch_size": 32, "hidden": (32, 32), "tracker": {"hidden": 16, "emb_dim": 8}, "n_diffusion_steps": 4,
        "energy_batch": 8, "energy_m": 4, "eval_episodes": 8, "progress": False}


@pytest.fixture(scope="module")
def env():
    return gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        protocol="easyrl4rec", dataset_kwargs={"n_users": 60, "n_items": 60})


def test_vp_schedule_matches_the_paper_formula():
    sch = VPSchedule(2, beta_min=0.1, beta_max=10.0)
    a1 = math.exp(-0.1 / 2 - 0.5 * 9.9 * 1 / 4)
    a2 = math.exp(-0.1 / 2 - 0.5 * 9.9 * 3 / 4)
    assert torch.allclose(sch.alphas, torch.tensor([a1, a2]), rtol=1e-6)
    assert torch.allclose(sch.abar, torch.tensor([a1, a1 * a2]), rtol=1e-6)
    assert torch.allclose(sch.betas, 1 - torch.tensor([a1, a2]), rtol=1e-6)
    # posterior of the first step has no variance and returns a0 exactly
    assert float(sch.post_var[0]) == 0.0 and math.isclose(float(sch.post_c0[0]), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="n_steps"):
        VPSchedule(0)


def test_action_approximation_is_the_closed_form_x0():
    torch.manual_seed(0)
    actor = DiffusionActor(state_dim=3, action_dim=4, n_steps=7)
    a0 = torch.rand(6, 4) * 2 - 1
    s = torch.randn(6, 3)
    # replay the generator to know the step i and the noise that denoise_terms draws
    g = torch.Generator().manual_seed(11)
    i = torch.randint(7, (6,), generator=g)
    noise = torch.randn((6, 4), generator=g)
    abar = np.cumprod([math.exp(-0.1 / 7 - 0.5 * 9.9 * (2 * k - 1) / 49) for k in range(1, 8)])
    ab = torch.tensor(abar[i.numpy()], dtype=torch.float32).unsqueeze(1)
    a_i = ab.sqrt() * a0 + (1 - ab).sqrt() * noise
    # (1) a known constant epsilon: a0_hat = (a_i - sqrt(1 - abar) eps) / sqrt(abar)
    eps_c = torch.full((6, 4), 0.3)
    actor.eps = lambda a, t, st: eps_c.expand_as(a)
    err, a0_hat, i_used = actor.denoise_terms(a0, s, torch.Generator().manual_seed(11))
    assert torch.equal(i_used, i)
    assert torch.allclose(a0_hat, (a_i - (1 - ab).sqrt() * eps_c) / ab.sqrt(), atol=1e-5)
    assert torch.allclose(err, (eps_c - noise).pow(2).mean(-1), atol=1e-6)
    # (2) an oracle epsilon model (returns the true noise) recovers the dataset action exactly
    actor.eps = lambda a, t, st: noise
    _, a0_hat, _ = actor.denoise_terms(a0, s, torch.Generator().manual_seed(11))
    assert torch.allclose(a0_hat, a0, atol=1e-5)


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
        a = behaviour(128)
        err, _, _ = actor.denoise_terms(a, torch.zeros(128, 1), g)
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
    assert 0.3 < frac_plain < 0.7  # the behaviour model is bimodal and roughly balanced
    assert frac_guided > frac_plain + 0.25 and frac_guided > 0.8
    assert float(guided[:, 0].mean()) > float(plain[:, 0].mean()) + 0.3
    # guidance keeps samples on the behaviour support (as close to a mode as the unguided samples are)
    def near(x: torch.Tensor) -> float:
        return float((torch.cdist(x, centres).min(1).values < 0.3).float().mean())

    assert near(guided) > near(plain) - 0.15


def test_cep_loss_checks_shapes():
    sch = VPSchedule(3)
    with pytest.raises(ValueError, match="cep_loss"):
        cep_loss(EnergyModel(1, 2), sch, torch.zeros(4, 1), torch.zeros(4, 5, 2), torch.zeros(4, 6))


def test_registered_names_build_learn_and_act(env):
    names = set(registered_agents())
    assert set(VARIANTS) <= names
    for name in ["dac4rec", "dac4rec_noguide", "dac4rec_a", "sac_diffusion", "sac_diffusion_energy", "td3_diffusion",
                 "offline_sac", "offline_td3", "dac4rec_awr", "td3_diffusion_energy"]:
        agent = make_agent(name, env, seed=0, energy_steps=2, **FAST)
        agent.learn(env, 2)
        assert agent.grad_steps == 2
        assert agent.energy_grad_steps == (2 if VARIANTS[name]["guidance_scale"] > 0 else 0)
        res = agent.history[-1]
        assert 0 < res["Length"] <= 30 and np.isfinite(res["R_cumu"]), name


def test_act_shapes_devices_mask_and_wrapper_equivalence(env):
    from recgym.envs.sb3 import ContinuousItemActionWrapper

    agent = make_agent("dac4rec", env, seed=0, **FAST)
    base = env.unwrapped
    obs, info = env.reset(seed=3)
    a = agent.policy_action(obs)
    assert a.shape == (8, 16) and a.dtype == torch.float32 and a.device == base.device
    assert float(a.abs().max()) <= 1.0
    items = agent.act(obs, info)
    assert items.shape == (8,) and items.dtype == torch.int64 and items.device == base.device
    # only the allowed items can be chosen
    mask = torch.zeros(8, base.n_items, dtype=torch.bool)
    mask[:, 5:9] = True
    chosen = agent.act(obs, {"action_mask": mask})
    assert bool(((chosen >= 5) & (chosen < 9)).all())
    # same embeddings and same action -> item rule as the SB3 continuous wrapper
    wrapper = ContinuousItemActionWrapper(env, k=16)
    assert torch.allclose(wrapper.item_embeddings, agent.item_emb)
    acts = torch.rand(8, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(wrapper.items_for(acts, mask), items_for_actions(acts, agent.item_emb, mask))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_acts_on_cuda():
    cuda_env = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=4, vectorization_mode="vector_entry_point",
                            protocol="easyrl4rec", device="cuda", dataset_kwargs={"n_users": 40, "n_items": 60})
    agent = make_agent("dac4rec", cuda_env, seed=0, energy_steps=1, **FAST)
    agent.learn(cuda_env, 1)
    obs, info = cuda_env.reset(seed=0)
    assert agent.act(obs, info).device.type == "cuda"


def test_determinism_and_save_load(env, tmp_path):
    a1 = make_agent("dac4rec", env, seed=5, energy_steps=2, **FAST)
    a2 = make_agent("dac4rec", env, seed=5, energy_steps=2, **FAST)
    a1.learn(env, 3)
    a2.learn(env, 3)
    for (k, v1), v2 in zip(a1.actor.state_dict().items(), a2.actor.state_dict().values(), strict=True):
        assert torch.equal(v1, v2), k
    assert torch.equal(next(iter(a1.energy.state_dict().values())), next(iter(a2.energy.state_dict().values())))
    obs, info = env.reset(seed=1)
    a1.act_gen.manual_seed(0)
    a2.act_gen.manual_seed(0)
    assert torch.equal(a1.act(obs, info), a2.act(obs, info))
    a3 = make_agent("dac4rec", env, seed=9, **FAST)
    assert not torch.equal(next(iter(a3.actor["pi"].parameters())), next(iter(a1.actor["pi"].parameters())))

    path = tmp_path / "dac.pt"
    a1.save(path)
    a3.load(path)
    assert a3.grad_steps == 3 and a3.energy_grad_steps == 2
    a1.act_gen.manual_seed(4)
    a3.act_gen.manual_seed(4)
    assert torch.equal(a1.policy_action(obs), a3.policy_action(obs))
    with pytest.raises(ValueError, match="saved by agent 'dac4rec'"):
        make_agent("dac4rec_noguide", env, **FAST).load(path)
    with pytest.raises(ValueError, match="n_diffusion_steps"):
        make_agent("dac4rec", env, **{**FAST, "n_diffusion_steps": 5}).load(path)


def test_config_errors(env):
    with pytest.raises(ValueError, match="needs actor='diffusion'"):
        make_agent("offline_sac", env, guidance_scale=1.0)
    with pytest.raises(ValueError, match="unknown config field"):
        make_agent("dac4rec", env, n_steps=5)
    with pytest.raises(ValueError, match="q_mode"):
        make_agent("dac4rec", env, q_mode="bogus")
    with pytest.raises(ValueError, match="item_embeddings must be"):
        DAC4RecAgent(env, DAC4RecConfig(), item_embeddings=np.zeros((3, 4)))


def test_train_svd_embeddings_use_only_the_logs(env):
    agent = make_agent("dac4rec_noguide", env, action_emb="train_svd", **FAST)
    assert agent.item_emb.shape == (env.unwrapped.n_items, 16)
    assert torch.allclose(agent.item_emb.norm(dim=1), torch.ones(env.unwrapped.n_items), atol=1e-5)
    assert agent.meta["self_recovery"] == pytest.approx(1.0)
    assert not torch.allclose(agent.item_emb, make_agent("dac4rec_noguide", env, **FAST).item_emb)


def test_roler_preset_masks_repeats():
    """ROLeR protocol (NX_0): the agent only picks allowed items, so no episode repeats an item."""
    roler = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=8, vectorization_mode="vector_entry_point",
                         protocol="roler", dataset_kwargs={"n_users": 60, "n_items": 60})
    agent = make_agent("dac4rec", roler, seed=0, energy_steps=1, **FAST)
    agent.learn(roler, 2)  # evaluation would raise on a masked (repeated) item
    assert roler.unwrapped.mode == "NX_0" and agent.history[-1]["Length"] == pytest.approx(30.0)
    obs, info = roler.reset(seed=0)
    chosen = []
    for _ in range(30):
        a = agent.act(obs, info)
        assert bool(info["action_mask"][torch.arange(8), a].all())
        chosen.append(a)
        obs, _, term, trunc, info = roler.step(a)
    assert bool((trunc | term).all())
    per_env = torch.stack(chosen, 1)
    assert all(len(set(row.tolist())) == 30 for row in per_env)
