"""DiffusionDenoise env: MDP sanity (frozen model reproduces DiffRec's evaluation), rewards, masks, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import recgym  # noqa: F401  (registers the ids)
from recgym.envs.denoise import DiffusionDenoiseEnv, guidance_basis, similar_user_signal
from recgym.recommenders import CheckpointMismatchError, DiffRecConfig, make_splits, train_diffrec

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env_valid() -> DiffusionDenoiseEnv:
    env = DiffusionDenoiseEnv("synthetic", num_envs=8, reward_items="valid", progress=False)
    return env


def _run_frozen(env: DiffusionDenoiseEnv, seed: int = 0, users=None, mode_action=None):
    obs, info = env.reset(seed=seed, options=None if users is None else {"users": users})
    hist = obs["x_t"].clone()
    for _ in range(env.T):
        a = env.posterior_mean(obs["x_t"], obs["t"]) if mode_action is None else mode_action
        obs, r, term, trunc, info = env.step(a)
    assert bool(term.all()) and not bool(trunc.any())
    return hist, obs["x_t"], r, info


def test_frozen_policy_reproduces_diffrec_evaluation(env_valid: DiffusionDenoiseEnv) -> None:
    env0 = env_valid
    pool = env0.users_pool
    env = DiffusionDenoiseEnv("synthetic", num_envs=int(pool.numel()), reward_items="valid", progress=False)
    hist, x0, r, info = _run_frozen(env, users=pool)
    # x_0 of the episode == DiffRec inference on the same input, bit for bit
    assert torch.equal(hist, env.resources.train[pool])
    assert torch.equal(x0, env.model.predict(hist))
    # ... and its metrics averaged over users == the DiffRec-protocol validation numbers
    ev = env.evaluate(which=("valid",), ks=(20,))["valid"]
    m = info["episode_metrics"]
    assert ev["users"] == pool.numel()
    assert float(m["recall"].double().mean()) == pytest.approx(ev["Recall@20"], abs=1e-6)  # float32 info
    assert float(m["ndcg"].double().mean()) == pytest.approx(ev["NDCG@20"], abs=1e-6)
    assert bool(info["_episode_metrics"].all())
    # N_K counts the hits: recall * |R|
    n_r = env.reward_mask.sum(1)
    assert torch.allclose(m["n_k"], m["recall"] * n_r, atol=1e-5)


@pytest.mark.parametrize("mode", ["residual", "guidance"])
def test_zero_action_equals_frozen_model(mode: str) -> None:
    lat = DiffusionDenoiseEnv("synthetic", num_envs=5, progress=False)
    env = DiffusionDenoiseEnv("synthetic", num_envs=5, action_mode=mode, guidance_dim=8, progress=False)
    _, x_lat, r_lat, _ = _run_frozen(lat, seed=3)
    zero = torch.zeros(env.action_space.shape)
    _, x_mode, r_mode, info = _run_frozen(env, seed=3, mode_action=zero)
    assert torch.equal(x_lat, x_mode) and torch.equal(r_lat, r_mode)
    # a non-zero action changes the chain
    env.reset(seed=3)
    obs, *_ = env.step(torch.ones(env.action_space.shape))
    mu_env = DiffusionDenoiseEnv("synthetic", num_envs=5, progress=False)
    o2, _ = mu_env.reset(seed=3)
    assert not torch.equal(obs["x_t"], mu_env.posterior_mean(o2["x_t"], o2["t"]))


def test_episode_structure_and_rewards(env_valid: DiffusionDenoiseEnv) -> None:
    env = DiffusionDenoiseEnv("synthetic", num_envs=4, reward_items="holdout", progress=False)
    obs, info = env.reset(seed=1)
    assert bool((obs["t"] == env.T).all())
    for i in range(env.T):
        a = env.posterior_mean(obs["x_t"], obs["t"])
        obs, r, term, trunc, info = env.step(a)
        assert bool((obs["t"] == env.T - 1 - i).all())
        if i < env.T - 1:
            assert bool((r == 0).all()) and not bool(term.any()) and "episode_metrics" not in info
    m = info["episode_metrics"]
    assert torch.allclose(r, 0.5 * m["n_k"] + 0.5 * m["n_simk"])
    assert bool(((r >= 0) & (r <= env.k)).all())  # RACS counts hits
    # top-K list excludes the input history and has K distinct items
    top = m["topk"]
    assert top.shape == (4, env.k)
    assert not bool(env.history.gather(1, top).bool().any())
    assert torch.equal(env.ranking_exclusion(), env.history > 0)
    assert all(len(set(row.tolist())) == env.k for row in top)
    # NEXT_STEP autoreset: the next step starts new episodes with reward 0
    obs, r, term, trunc, info = env.step(torch.zeros(4, env.n_items))
    assert bool((obs["t"] == env.T).all()) and bool((r == 0).all()) and not bool(term.any())


def test_racs_counts_hits_as_the_paper_defines_it() -> None:
    """RACS = alpha N_K + (1 - alpha) N_simK recomputed from sets: the user's hits on its observed (training)
    items, and the mean hits of the same list on the items of its 10 most cosine-similar users."""
    env = DiffusionDenoiseEnv("synthetic", num_envs=6, progress=False)
    assert env.reward_kind == "racs" and env.reward_items == "train" and env.alpha == 0.5 and env.k == 20
    assert env.n_similar == 10
    obs, _ = env.reset(seed=2)
    train = env.resources.train.numpy() > 0
    users = env.user.tolist()
    # input = the full training row, as in evaluation; the reward items are those observed items
    assert torch.equal(obs["history"], env.resources.train[env.user]) and env.ranking_exclusion() is None
    assert torch.equal(env.reward_mask, env.resources.train[env.user] > 0)
    x0 = torch.randn(6, env.n_items, generator=torch.Generator().manual_seed(0))
    m = env.terminal_reward(x0)
    xn = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    checked = 0
    for b, u in enumerate(users):
        top = set(np.argsort(-x0[b].numpy())[:20].tolist())  # nothing excluded: the targets are the input
        assert set(m["topk"][b].tolist()) == top
        n_k = len(top & set(np.flatnonzero(train[u]).tolist()))
        sim = xn @ xn[u]
        sim[u] = -1.0
        order = np.argsort(-sim, kind="stable")
        nb = [v for v in order[:10] if sim[v] > 0]
        n_simk = np.mean([len(top & set(np.flatnonzero(train[v]).tolist())) for v in nb]) if nb else 0.0
        assert float(m["n_k"][b]) == n_k
        if sim[order[9]] - sim[order[10]] > 1e-6:  # (a tie at the 10th neighbour may be broken either way)
            checked += 1
            assert float(m["n_simk"][b]) == pytest.approx(n_simk, abs=1e-5)
        assert float(m["reward"][b]) == pytest.approx(0.5 * float(m["n_k"][b]) + 0.5 * float(m["n_simk"][b]))
    assert checked >= 2
    # "ra" is N_K alone; the normalised form divides by min(|R|, K) and by the best neighbour-weighted list
    ra = DiffusionDenoiseEnv("synthetic", num_envs=6, reward="ra", progress=False, model=env.model)
    ra.reset(seed=2)
    assert torch.equal(ra.terminal_reward(x0)["reward"], m["n_k"])
    norm = DiffusionDenoiseEnv("synthetic", num_envs=6, reward="racs_norm", progress=False, model=env.model)
    norm.reset(seed=2)
    mn = norm.terminal_reward(x0)
    cap = env.reward_mask.sum(1).clamp(max=20).float()
    assert torch.allclose(mn["n_k"], m["n_k"] / cap)
    assert bool(((mn["reward"] >= 0) & (mn["reward"] <= 1)).all())


def test_terminal_reward_hand_values() -> None:
    env = DiffusionDenoiseEnv("synthetic", num_envs=2, reward="ndcg", k=5, reward_items="holdout", progress=False)
    env.reset(seed=0)
    rm, hist = env.reward_mask, env.history
    # scores: reward items on top -> N_K = 1, NDCG = 1
    x0 = rm.float() * 10 - hist * 100
    m = env.terminal_reward(x0)
    assert torch.allclose(m["n_k"], rm.sum(1).clamp(max=5).float()) and torch.allclose(m["ndcg"], torch.ones(2))
    assert torch.allclose(m["reward"], m["ndcg"])
    # scores with no reward item in the top K -> 0
    m0 = env.terminal_reward(-rm.float() * 10)
    assert torch.equal(m0["n_k"], torch.zeros(2)) and torch.equal(m0["ndcg"], torch.zeros(2))
    # normalised N_simK: the best list over the neighbour signal gets 1
    norm = DiffusionDenoiseEnv("synthetic", num_envs=2, reward="racs_norm", k=5, reward_items="holdout",
                               progress=False, model=env.model)
    norm.reset(seed=0)
    w = norm.signal[norm.user].masked_fill(norm.history > 0, 0.0)
    m1 = norm.terminal_reward(w - norm.history * 100)
    assert torch.allclose(m1["n_simk"], torch.ones(2))
    # NDCG with a single hit at rank 2 among |R| reward items: (1/log2(3)) / IDCG(min(|R|, K))
    user0_r = torch.nonzero(rm[0]).flatten()
    x = torch.zeros(2, env.n_items) - hist * 100
    filler = torch.nonzero(~rm[0] & (hist[0] == 0)).flatten()[:1]
    x[0, filler] = 3.0
    x[0, user0_r[0]] = 2.0
    idcg = sum(1 / np.log2(i + 2) for i in range(min(int(rm[0].sum()), 5)))
    assert float(env.terminal_reward(x)["ndcg"][0]) == pytest.approx((1 / np.log2(3)) / idcg, rel=1e-6)


def test_similar_user_signal_hand_example() -> None:
    x = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    w = similar_user_signal(x, n_similar=1)
    # user 0's most similar is user 1 (cos 0.5) -> w = X[1]; user 2 has no positive neighbour -> 0
    assert torch.allclose(w[0], x[1]) and torch.allclose(w[1], x[0]) and torch.equal(w[2], torch.zeros(4))
    w2 = similar_user_signal(x, n_similar=2)
    assert torch.allclose(w2[0], x[1])  # the second neighbour (user 2) has cos 0 and weight 0
    # uniform weights: the mean of the positive-similarity neighbours' rows (user 3 is like 0 and 1 alike)
    x4 = torch.cat([x, torch.tensor([[1.0, 1.0, 1.0, 0.0]])])
    u = similar_user_signal(x4, n_similar=2, weighting="uniform")
    assert torch.allclose(u[3], (x4[0] + x4[1]) / 2)
    c = similar_user_signal(x4, n_similar=2, weighting="cosine")
    assert torch.allclose(c[3], (x4[0] + x4[1]) / 2)  # equal similarities: the same mean
    assert torch.allclose(u[0], (x4[3] + x4[1]) / 2) and not torch.allclose(c[0], u[0])
    with pytest.raises(ValueError, match="weighting"):
        similar_user_signal(x, weighting="jaccard")


def test_holdout_items_are_training_items_never_test_and_resampled() -> None:
    env = DiffusionDenoiseEnv("synthetic", num_envs=16, holdout_frac=0.3, reward_items="holdout", progress=False)
    obs, info = env.reset(seed=5)
    train = env.resources.train[env.user] > 0
    test = torch.from_numpy(env.splits.test)[env.user]
    rm, hist = env.reward_mask, obs["history"] > 0
    assert bool((rm <= train).all()) and not bool((rm & hist).any()) and bool(((rm | hist) == train).all())
    assert not bool((rm & test).any())
    assert bool((rm.sum(1) >= 1).all()) and bool((hist.sum(1) >= 1).all())
    first = (env.user.clone(), rm.clone())
    # deterministic per seed, different across episodes
    env.reset(seed=5)
    assert torch.equal(env.user, first[0]) and torch.equal(env.reward_mask, first[1])
    env.reset()
    assert not (torch.equal(env.user, first[0]) and torch.equal(env.reward_mask, first[1]))


def test_start_noise_and_flat_obs() -> None:
    env = DiffusionDenoiseEnv("synthetic", num_envs=3, start_noise=4, flat=True, progress=False)
    obs, _ = env.reset(seed=2)
    n = env.n_items
    assert obs.shape == (3, 2 * n + 1) and bool((obs[:, -1] == 1.0).all())
    x, hist = obs[:, :n], obs[:, n: 2 * n]
    assert not torch.equal(x, hist)
    ab = float(env.model.schedule.array("alphas_cumprod")[3])
    resid = (x - ab ** 0.5 * hist) / (1 - ab) ** 0.5  # the standard normal noise
    assert abs(float(resid.mean())) < 0.1 and abs(float(resid.std()) - 1) < 0.1
    obs2, _ = env.reset(seed=2)
    assert torch.equal(obs, obs2)


def test_log_prob_matches_gaussian_and_obs_time(env_valid: DiffusionDenoiseEnv) -> None:
    env = env_valid
    obs, _ = env.reset(seed=0)
    x_t, t = obs["x_t"], obs["t"]
    mu = env.posterior_mean(x_t, t)
    x_prev = mu + 0.01 * torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
    std = env.posterior_std(t)
    ref = torch.distributions.Normal(mu, std[:, None]).log_prob(x_prev)
    assert torch.allclose(env.log_prob(x_prev, x_t, t, reduce="sum"), ref.sum(1), rtol=1e-5)
    assert torch.allclose(env.log_prob(x_prev, x_t, t, reduce="mean"), ref.mean(1), rtol=1e-5)
    # obs time t uses the network's step index t - 1
    assert torch.equal(mu, env.model.posterior_mean(x_t, t - 1))
    assert torch.allclose(env.posterior_variance(env.T), env.model.posterior_std(env.T - 1) ** 2)
    # a trainable clone carries gradients, the frozen net does not
    net = env.clone_denoiser()
    lp = env.log_prob(x_prev, x_t, t, denoiser=net).sum()
    lp.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())
    assert not env.log_prob(x_prev, x_t, t).requires_grad
    assert all(not p.requires_grad for p in env.denoiser.parameters())


def test_guidance_basis_is_top_right_singular_vectors() -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(30, 12, generator=g) < 0.3).float()
    v = guidance_basis(x, 4)
    assert torch.allclose(v @ v.T, torch.eye(4), atol=1e-5)
    _, s, vh = torch.linalg.svd(x.double(), full_matrices=False)
    assert torch.allclose((v.double() @ vh[:4].T).abs(), torch.eye(4, dtype=torch.float64), atol=1e-5)


def test_bad_input_errors(env_valid: DiffusionDenoiseEnv) -> None:
    env = env_valid
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(env.num_envs, env.n_items + 1))
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(env.num_envs + 1, env.n_items))
    bad = obs["x_t"].clone()
    bad[2, 5] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf.*env\(s\) \[2\]"):
        env.step(bad)
    bad[2, 5] = float("inf")
    with pytest.raises(ValueError, match="NaN/inf"):
        env.step(bad)
    with pytest.raises(TypeError, match="dtype"):
        env.step(torch.zeros(env.num_envs, env.n_items, dtype=torch.bool))
    with pytest.raises(ValueError, match="action_mode"):
        DiffusionDenoiseEnv("synthetic", num_envs=2, action_mode="pixel", progress=False)
    with pytest.raises(ValueError, match="catalogue"):
        DiffusionDenoiseEnv("synthetic", num_envs=2, k=env.n_items + 1, progress=False)
    with pytest.raises(ValueError, match="reward"):
        DiffusionDenoiseEnv("synthetic", num_envs=2, reward="ctr", progress=False)
    with pytest.raises(ValueError, match="reward_items"):
        DiffusionDenoiseEnv("synthetic", num_envs=2, reward_items="test", progress=False)
    with pytest.raises(ValueError, match="reset options"):
        env.reset(seed=0, options={"user": [1]})
    # guidance mode: an n_items action is the wrong shape
    gui = DiffusionDenoiseEnv("synthetic", num_envs=2, action_mode="guidance", guidance_dim=4, progress=False)
    gui.reset(seed=0)
    with pytest.raises(ValueError, match=r"guidance mode.*expected \(2, 4\)"):
        gui.step(torch.zeros(2, gui.n_items))


def test_checkpoint_from_another_dataset_is_refused() -> None:
    from recgym.data import load_dataset

    other = load_dataset("synthetic", seed=1)
    cfg = DiffRecConfig(hidden=(16,), steps=3, batch_size=100, max_epochs=1, eval_every=1)
    model, _ = train_diffrec(make_splits(other, cfg.valid_fraction, cfg.split_seed), cfg)
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        DiffusionDenoiseEnv("synthetic", num_envs=2, model=model, progress=False)
    env = DiffusionDenoiseEnv(other, num_envs=2, model=model, progress=False)
    # the env freezes its own copy; the caller's model keeps its gradients
    assert env.model is not model and all(p.requires_grad for p in model.denoiser.parameters())
    x = torch.from_numpy(env.splits.train[:3])
    assert torch.equal(env.model.predict(x), model.predict(x))


def test_check_vector_env_and_check_env() -> None:
    from gymnasium.utils.env_checker import check_env

    from recgym.envs.checker import check_vector_env

    # latent mode: the transition is the action itself, so batched == single holds bit for bit
    env = DiffusionDenoiseEnv("synthetic", num_envs=3, progress=False)
    check_vector_env(env, seed=0, n_steps=2 * env.T + 3)
    # residual mode runs the network on the batch: batched == single up to float rounding of the matmuls
    res = DiffusionDenoiseEnv("synthetic", num_envs=3, action_mode="residual", progress=False)
    one = res.make_sibling(1)
    obs, _ = res.reset(seed=4)
    obs1, _ = one.reset(seed=5)
    assert torch.equal(obs["x_t"][1:2], obs1["x_t"])
    a = torch.rand(3, res.n_items, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for _ in range(res.T):
        obs, r, *_ = res.step(a)
        obs1, r1, *_ = one.step(a[1:2])
        assert torch.allclose(obs["x_t"][1:2], obs1["x_t"], atol=1e-5)
    single = gym.make("DiffusionDenoise-Synthetic-v0", flat=True, action_mode="guidance", progress=False)
    check_env(single.unwrapped, skip_render_check=True)
    obs, _ = single.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.shape == single.observation_space.shape
    dict_env = gym.make("DiffusionDenoise-Synthetic-v0", progress=False)
    check_env(dict_env.unwrapped, skip_render_check=True)


def test_registered_ids_and_make_vec() -> None:
    for tag in ("ML1M", "ML1MNoisy", "Coat", "Yahoo", "Synthetic"):
        assert f"DiffusionDenoise-{tag}-v0" in gym.registry
    venv = gym.make_vec("DiffusionDenoise-Synthetic-v0", num_envs=4, progress=False)
    obs, info = venv.reset(seed=0)
    assert obs["x_t"].shape == (4, venv.unwrapped.n_items) and info["user"].shape == (4,)


@pytest.mark.slow
def test_ml1m_frozen_policy_reproduces_pretrained_numbers() -> None:
    from tests.conftest import require_data

    require_data("ml-1m/diffrec/ml-1m_clean/train_list.npy")
    probe = DiffusionDenoiseEnv("ml1m", num_envs=1, reward_items="valid", progress=False)
    pool = probe.users_pool
    env = DiffusionDenoiseEnv("ml1m", num_envs=int(pool.numel()), reward_items="valid", progress=False)
    hist, x0, _, info = _run_frozen(env, users=pool)
    ev = env.evaluate(which=("valid",), ks=(20,))["valid"]
    m = info["episode_metrics"]
    assert float(m["recall"].double().mean()) == pytest.approx(ev["Recall@20"], abs=1e-6)
    assert float(m["ndcg"].double().mean()) == pytest.approx(ev["NDCG@20"], abs=1e-6)


@pytest.mark.parametrize("mode", ["residual", "guidance"])
def test_actions_outside_the_box_are_clipped_as_the_space_says(mode: str) -> None:
    env = DiffusionDenoiseEnv("synthetic", num_envs=3, action_mode=mode, guidance_dim=8, progress=False)
    assert float(env.single_action_space.low.min()) == -1.0 and float(env.single_action_space.high.max()) == 1.0
    big = torch.full(env.action_space.shape, 7.5)
    big[1] = -40.0
    clipped = big.clamp(-1.0, 1.0)
    env.reset(seed=4)
    obs_big, *_ = env.step(big)
    env.reset(seed=4)
    obs_clip, *_ = env.step(clipped)
    assert torch.equal(obs_big["x_t"], obs_clip["x_t"])  # 7.5 acts as 1, -40 as -1
    nan = clipped.clone()
    nan[2, 0] = float("nan")
    env.reset(seed=4)
    with pytest.raises(ValueError, match=r"NaN/inf value\(s\) in env\(s\) \[2\]"):
        env.step(nan)
