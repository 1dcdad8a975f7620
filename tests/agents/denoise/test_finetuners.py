"""ReFiT / DDPO / RWFT on the tiny ``DiffusionDenoise-Synthetic-v0`` (10-step chain, 400 items)."""

from __future__ import annotations

import pytest
import torch

from recgym.agents import make_agent
from recgym.agents.denoise.common import ChainFinetunerConfig, chain_stds, sample_chain, split_steps
from recgym.agents.denoise.ddpo import DDPO, DDPOConfig
from recgym.agents.denoise.refit import ReFiT, ReFiTConfig, ReFiTLastStep, ReFiTLastStepConfig
from recgym.agents.denoise.rwft import RWFT, RWFTConfig

denoise = pytest.importorskip("recgym.envs.denoise")


@pytest.fixture(scope="module")
def env():
    torch.set_num_threads(1)
    return denoise.DiffusionDenoiseEnv("synthetic", num_envs=64, progress=False)  # the paper's batch 64


@pytest.fixture(scope="module")
def holdout_env(env):
    """recgym's earlier reward: the normalised RACS on held-out training items (what refit_lastep was tuned on)."""
    return denoise.DiffusionDenoiseEnv("synthetic", num_envs=64, progress=False, model=env.model,
                                       reward="racs_norm", reward_items="holdout")


@pytest.fixture(scope="module")
def eval_env(env):
    return denoise.DiffusionDenoiseEnv("synthetic", num_envs=400, progress=False, model=env.model,
                                       reward="racs_norm", reward_items="holdout")


def mean_reward(eval_env, policy) -> float:
    """Mean RACS of the deterministic chain (DiffRec inference) over a fixed batch of 400 episodes."""
    obs, _ = eval_env.reset(seed=123)
    x0 = eval_env.model.sample(obs["x_t"], denoiser=policy)
    return float(eval_env.terminal_reward(x0)["reward"].mean())


FAST = dict(progress=False, eval_every=0, keep_best=False)


def params(agent) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in agent.policy.parameters()])


def test_refit_lastep_raises_racs_over_pretrained(holdout_env, eval_env) -> None:
    env = holdout_env
    base = mean_reward(eval_env, env.denoiser)
    agent = ReFiTLastStep(env, ReFiTLastStepConfig(seed=0, **FAST))
    agent.learn(env, 32)
    tuned = mean_reward(eval_env, agent.policy)
    # measured on seeds 0/1/2 (sweep): +0.012 / +0.024 / +0.023 over the pre-trained 0.686
    assert tuned > base + 0.008, (base, tuned)
    # the frozen model was not touched
    assert mean_reward(eval_env, env.denoiser) == base


def test_ddpo_raises_racs_over_pretrained(holdout_env, eval_env) -> None:
    env = holdout_env
    base = mean_reward(eval_env, env.denoiser)
    agent = DDPO(env, DDPOConfig(seed=0, **FAST))
    agent.learn(env, 20)
    tuned = mean_reward(eval_env, agent.policy)
    assert tuned > base + 0.008, (base, tuned)  # seeds 0/1/2: +0.012 / +0.024 / +0.020


def test_make_agent_registry_and_config_errors(env) -> None:
    agent = make_agent("refit", env, iterations=1, **FAST)
    assert isinstance(agent, ReFiT)
    lastep = make_agent("refit_lastep", env, **FAST)
    assert isinstance(lastep, ReFiTLastStep) and lastep.name == "refit_lastep"
    assert (lastep.config.explore_std, lastep.config.explore_steps, lastep.config.lr) == (0.02, 1, 1e-4)
    assert isinstance(make_agent("rwft", env, **FAST), RWFT)
    assert isinstance(make_agent("ddpo", env, **FAST), DDPO)
    with pytest.raises(ValueError, match="unknown config field"):
        make_agent("refit", env, not_a_field=1)
    with pytest.raises(ValueError, match="samples_per_user >= 2"):
        ReFiTConfig(samples_per_user=1)
    assert ReFiTConfig(samples_per_user=1, baseline="greedy").samples_per_user == 1
    with pytest.raises(ValueError, match="advantage_clip"):
        ReFiTConfig(advantage_clip=0.0)
    with pytest.raises(ValueError, match="baseline"):
        ReFiTConfig(baseline="median")
    with pytest.raises(ValueError, match="temperature"):
        RWFTConfig(temperature=0)
    with pytest.raises(ValueError, match="explore_steps"):
        ReFiT(env, ReFiTConfig(explore_steps=11, **FAST)).learn(env, 1)
    with pytest.raises(TypeError, match="DiffusionDenoise"):
        ReFiT(object(), ReFiTConfig(**FAST))
    with pytest.raises(ValueError, match="env's device"):
        ReFiT(env, ReFiTConfig(device="cuda", **FAST))


def test_one_shared_config_and_typed_registry() -> None:
    import ast
    import dataclasses
    import inspect

    from recgym.agents import agent_spec
    from recgym.agents.base import AgentConfig
    from recgym.agents.denoise import common, ddpo, refit, rwft

    shared = {f.name for f in dataclasses.fields(ChainFinetunerConfig)}
    assert issubclass(ChainFinetunerConfig, AgentConfig) and ChainFinetunerConfig.budget_unit == "iterations"
    assert {"seed", "progress", "eval_every", "iterations", "lr", "samples_per_user", "explore_std",
            "explore_steps", "log_prob_reduce", "max_grad_norm", "select_metric", "keep_best", "test_at_end", "log_every",
            "device"} <= shared
    own = {"refit": {"baseline", "normalize_advantages", "advantage_clip", "kl_coef", "elbo_coef"},
           "ddpo": {"clip_range", "adv_clip", "ppo_epochs", "minibatch_size"},
           "rwft": {"temperature", "weight_norm", "target", "inner_epochs"}}
    # ReFiT overrides the shared last-step defaults with the paper's MDP and budget; nothing else is redeclared
    overridden = {"refit": {"lr", "explore_std", "explore_steps", "log_prob_reduce", "samples_per_user"},
                  "ddpo": set(), "rwft": set()}
    for name, cls, cfg in (("refit", ReFiT, ReFiTConfig), ("ddpo", DDPO, DDPOConfig), ("rwft", RWFT, RWFTConfig)):
        assert issubclass(cfg, ChainFinetunerConfig)
        assert set(cfg.__annotations__) - {"agent"} == own[name] | overridden[name]
        assert {f.name for f in dataclasses.fields(cfg)} == shared | own[name]
        spec = agent_spec(name)
        assert spec.config_cls is cfg and spec.factory is cls and spec.budget_unit == "iterations"
    assert ReFiTConfig().eval_every == 20 and DDPOConfig().lr == 1e-4
    # the paper's settings: all T steps stochastic with the model's posterior std, exact log-density summed,
    # lr 1e-3, 200 iterations
    p = ReFiTConfig()
    assert (p.explore_std, p.explore_steps, p.log_prob_reduce, p.lr, p.iterations) == (None, None, "sum", 1e-3, 200)
    assert issubclass(ReFiTLastStepConfig, ReFiTConfig) and agent_spec("refit_lastep").factory is ReFiTLastStep
    # no sideways imports between the algorithms: each imports only the shared module
    for mod in (refit, ddpo, rwft):
        tree = ast.parse(inspect.getsource(mod))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"recgym.agents.denoise.refit", "recgym.agents.denoise.ddpo",
                               "recgym.agents.denoise.rwft"}, mod.__name__
        assert common.__name__ in imported
    # the shared checks name the agent and the field
    with pytest.raises(ValueError, match="ddpo: explore_std=0"):
        DDPOConfig(explore_std=0)
    with pytest.raises(ValueError, match="rwft: select_metric='mrr'"):
        RWFTConfig(select_metric="mrr")


def test_chain_shares_prefix_and_replays(env) -> None:
    obs, _ = env.reset(seed=5)
    x = obs["x_t"]
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    xf, states, lps = sample_chain(env.model, env.denoiser, x, 0.02, g1, explore_steps=2, store=True, k=3)
    xf2, _, _ = sample_chain(env.model, env.denoiser, x, 0.02, g2, explore_steps=2, store=False, k=3)
    assert torch.equal(xf, xf2)  # the same generator stream replays the same chain
    b = env.num_envs
    assert states.shape == (3, 3 * b, env.n_items) and lps.shape == (2, 3 * b)
    # the k copies of a user branch at the first stochastic step: identical entering state, different samples
    assert torch.equal(states[0][:b], states[0][b: 2 * b])
    assert not torch.equal(states[1][:b], states[1][b: 2 * b])
    # with no exploration noise the chain is DiffRec's deterministic inference
    x_det, _, _ = sample_chain(env.model, env.denoiser, x, 1e-12, torch.Generator(), explore_steps=None)
    assert torch.allclose(x_det, env.model.sample(x), atol=1e-6)
    prefix, suffix = split_steps(10, 1)
    assert prefix == list(range(9, 0, -1)) and suffix == [0]


@pytest.mark.parametrize("over", [
    {"kl_coef": 0.0},  # the paper's MDP: all T steps, posterior stds, summed log-density; normalised RLOO advantages
    {},  # + the exact KL to the pre-trained chain at the visited states (the default, kl_coef 1)
    {"baseline": "greedy", "samples_per_user": 3},
    {"explore_steps": 2, "explore_std": 0.02, "log_prob_reduce": "mean", "normalize_advantages": False},
])
def test_refit_gradient_matches_stored_trajectory(env, over) -> None:
    """The replayed update equals REINFORCE (+ KL) computed by autograd on a stored trajectory."""
    from recgym.agents.denoise.common import (
        gaussian_kl_same_std,
        gaussian_log_prob,
        group_advantages,
        reinforce_loss,
    )

    cfg = ReFiTConfig(seed=4, **{"samples_per_user": 4, "max_grad_norm": None, **FAST, **over})
    agent = ReFiT(env, cfg)
    # move the policy off the reference so that the KL term has a gradient
    with torch.no_grad():
        for p in agent.policy.parameters():
            p.add_(1e-3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    agent.bridge.seed(9)
    users, x_start, ctx = agent._sample_users()
    gstate = agent.generator.get_state()
    k = cfg.samples_per_user
    x0, states, _ = sample_chain(agent.model, agent.policy, x_start, agent.stds, agent.generator, cfg.explore_steps,
                                 store=True, k=k)
    rewards = agent.bridge.reward(x0)
    ref = None
    if cfg.baseline == "greedy":
        ref = env.terminal_reward(agent.model.sample(x_start, denoiser=agent.policy))["reward"]
    adv = agent.bridge.ungrouped(group_advantages(agent.bridge.grouped(rewards), cfg.baseline,
                                                  cfg.normalize_advantages, reference=ref))
    assert bool((adv != 0).any())
    lps, kl = [], 0.0
    for j, t in enumerate(split_steps(agent.model.steps, cfg.explore_steps)[1]):
        mu = agent.model.posterior_mean(states[j], t, denoiser=agent.policy)
        lps.append(gaussian_log_prob(states[j + 1], mu, agent.stds[t], cfg.log_prob_reduce))
        mu_ref = agent.model.posterior_mean(states[j], t)
        kl = kl + gaussian_kl_same_std(mu, mu_ref, agent.stds[t], cfg.log_prob_reduce).mean()
    agent.policy.zero_grad()
    (reinforce_loss(torch.stack(lps), adv) + cfg.kl_coef * kl).backward()
    expected = [p.grad.clone() for p in agent.policy.parameters()]
    agent.generator.set_state(gstate)
    for group in agent.optimizer.param_groups:
        group["lr"] = 0.0
    agent._update(x_start, ctx, users)
    for p, e in zip(agent.policy.parameters(), expected, strict=True):
        assert torch.allclose(p.grad, e, rtol=2e-3, atol=1e-6 * float(e.abs().max()))


def test_posterior_std_chain_is_the_models_reverse_gaussian(env) -> None:
    """explore_std=None: x_{t-1} - mu_t has the model's posterior std at every step (t = 0 uses the clipped
    value of t = 1, DiffRec's table)."""
    stds = chain_stds(env.model, None)
    assert len(stds) == env.T and stds[0] == stds[1]
    for t in range(env.T):
        assert stds[t] == pytest.approx(float(env.model.posterior_std(t)))
        assert stds[t] == pytest.approx(float(env.posterior_std(t + 1)))  # the env's observation time
    assert chain_stds(env.model, 0.02) == [0.02] * env.T
    obs, _ = env.reset(seed=3)
    _, states, lps = sample_chain(env.model, env.denoiser, obs["x_t"], stds, torch.Generator().manual_seed(0),
                                  None, store=True, k=2, reduce="sum")
    assert states.shape[0] == env.T + 1 and lps.shape == (env.T, 2 * env.num_envs)
    for j, t in enumerate(split_steps(env.T, None)[1]):
        mu = env.model.posterior_mean(states[j], t)
        z = (states[j + 1] - mu) / stds[t]
        assert abs(float(z.std()) - 1.0) < 0.02 and abs(float(z.mean())) < 0.02
        # the stored log-prob is the env's exact transition log-density under the frozen model
        assert torch.allclose(lps[j], env.log_prob(states[j + 1], states[j], t + 1, reduce="sum"), rtol=1e-5)


def test_determinism_and_seed(env) -> None:
    a = ReFiT(env, ReFiTConfig(seed=1, kl_coef=0.1, elbo_coef=0.1, **FAST))
    a.learn(env, 3)
    b = ReFiT(env, ReFiTConfig(seed=1, kl_coef=0.1, elbo_coef=0.1, **FAST))
    b.learn(env, 3)
    c = ReFiT(env, ReFiTConfig(seed=2, kl_coef=0.1, elbo_coef=0.1, **FAST))
    c.learn(env, 3)
    assert torch.equal(params(a), params(b))
    assert not torch.equal(params(a), params(c))


@pytest.mark.parametrize("cls,cfg", [(ReFiT, ReFiTConfig), (DDPO, DDPOConfig), (RWFT, RWFTConfig)])
def test_save_load_resumes_exactly(env, tmp_path, cls, cfg) -> None:
    a = cls(env, cfg(seed=3, samples_per_user=4, **FAST))
    a.learn(env, 2)
    path = tmp_path / f"{cls.name}.pt"
    a.save(str(path))
    b = cls(env, cfg(seed=99, samples_per_user=4, **FAST))
    b.load(str(path))
    assert torch.equal(params(a), params(b)) and b.iteration == 2
    # both continue identically (optimizer and generator restored; the env stream is shared, so reseed it)
    a.bridge.seed(7)
    a.learn(env, 1)
    pa = params(a)
    b.bridge.seed(7)
    b.learn(env, 1)
    assert torch.equal(pa, params(b))
    with pytest.raises(ValueError, match="saved by agent"):
        other = RWFT if cls is not RWFT else ReFiT
        other(env, (RWFTConfig if other is RWFT else ReFiTConfig)(**FAST)).load(str(path))


def test_model_selection_keeps_best_and_logs(env) -> None:
    logged: dict[str, list[float]] = {}

    class Log:
        def log_scalar(self, tag: str, value: float, step: int) -> None:
            logged.setdefault(tag, []).append(value)

    agent = ReFiT(env, ReFiTConfig(seed=0, eval_every=2, keep_best=True, progress=False, samples_per_user=4,
                                   lr=1e-3))
    agent.learn(env, 4, Log())
    assert [h["iteration"] for h in agent.history] == [0, 2, 4]
    best = max(agent.history, key=lambda h: h["Recall@20"])
    assert agent.best_iteration == best["iteration"]
    # the wall-clock cost: cumulative seconds at each validation, the best one's kept
    secs = [h["seconds"] for h in agent.history]
    assert secs == sorted(secs) and secs[-1] <= agent.seconds and agent.best_seconds == best["seconds"]
    assert 0 < agent.update_seconds < agent.seconds
    assert torch.equal(params(agent), torch.cat([v.flatten() for v in agent.best_state.values()]))
    assert agent.evaluate(("valid",))["valid"]["Recall@20"] == pytest.approx(best["Recall@20"])
    assert {"train/reward", "train/pg_loss", "valid/Recall@20"} <= set(logged)
    # act(): the fine-tuned posterior mean for an env observation (t counts the steps left, 1..T)
    obs, _ = env.reset(seed=0)
    a = agent.act(obs, {})
    assert a.shape == (env.num_envs, env.n_items)
    assert torch.allclose(a, env.posterior_mean(obs["x_t"], obs["t"], denoiser=agent.policy))


def test_rwft_runs_and_weights_follow_rewards(env) -> None:
    agent = RWFT(env, RWFTConfig(seed=0, samples_per_user=4, **FAST))
    agent.bridge.seed(0)
    users, x_start, ctx = agent._sample_users()
    stats = agent._update(x_start, ctx, users)
    # with user normalisation every weight is at most k (all mass on one sample)
    assert 1.0 <= float(stats["weight_max"]) <= 4.0
    assert torch.isfinite(stats["loss"])
    agent_x0 = RWFT(env, RWFTConfig(seed=0, samples_per_user=4, target="x0", **FAST))
    before = params(agent_x0)
    agent_x0.learn(env, 1)
    assert not torch.equal(before, params(agent_x0))


def test_test_at_end_pairs_users_against_the_pretrained_model(env) -> None:
    """With no iteration the kept weights are the pre-trained ones: every paired difference and its interval is 0;
    after training the record holds both means, their difference and a 95% interval around it."""
    from recgym.metrics import paired_difference
    from recgym.recommenders.ranking import evaluate_scores_per_user

    logged: dict[str, float] = {}

    class Log:
        def log_scalar(self, tag: str, value: float, step: int) -> None:
            logged[tag] = value

    agent = ReFiT(env, ReFiTConfig(seed=0, eval_every=2, progress=False, test_at_end=True, kl_coef=1.0))
    agent.learn(env, 0, Log())
    f = agent.final
    assert agent.history[-1] == {"iteration": 0, **f} and f["best_iteration"] == 0
    ref = env.evaluate(which=("test",))["test"]
    assert f["test_Recall@20"] == pytest.approx(ref["Recall@20"]) and f["test_users"] == ref["users"]
    assert (f["test_NDCG@20_diff"], f["test_NDCG@20_diff_low"], f["test_NDCG@20_diff_high"]) == (0.0, 0.0, 0.0)
    assert logged["test_NDCG@20_pretrained"] == pytest.approx(ref["NDCG@20"])
    tuned = ReFiT(env, ReFiTConfig(seed=0, eval_every=0, keep_best=False, progress=False, test_at_end=True,
                                   lr=1e-2))
    tuned.learn(env, 2)
    g = tuned.final
    assert g["test_Recall@20"] - g["test_Recall@20_pretrained"] == pytest.approx(g["test_Recall@20_diff"])
    # cost in user-episodes: 2 iterations x 64 users x 4 samples were sampled; none before the best (iteration 0)
    assert g["user_episodes_to_best"] == 0 and g["seconds_to_best"] == 0.0
    assert g["seconds_per_user_episode"] == pytest.approx(tuned.update_seconds / (2 * 64 * 4))
    ours = evaluate_scores_per_user(lambda x, u: tuned.scores(x), env.splits, which=("test",))["test"]
    base = evaluate_scores_per_user(lambda x, u: env.model.predict(x), env.splits, which=("test",))["test"]
    d = paired_difference(ours["NDCG@20"], base["NDCG@20"])
    assert (g["test_NDCG@20_diff_low"], g["test_NDCG@20_diff_high"]) == pytest.approx((d["ci_low"], d["ci_high"]))
    assert g["test_NDCG@20_diff_low"] < g["test_NDCG@20_diff"] < g["test_NDCG@20_diff_high"]
