"""SB3 bridge: VecEnv conventions, continuous item actions honouring the mask, SAC / TD3 / A2C training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recgym.envs.rec import GroundTruthRecEnv
from recgym.envs.sb3 import ContinuousItemActionWrapper, svd_item_embeddings, to_sb3


def test_vecenv_terminal_observation_and_truncation(synthetic):
    env = GroundTruthRecEnv(synthetic, num_envs=3, protocol="roler", max_turn=4, mode="FB")
    venv = to_sb3(env)
    venv.seed(5)
    obs = venv.reset()
    assert obs.dtype == np.float32 and obs.shape == (3, venv.observation_space.shape[0])
    for _ in range(3):
        obs, r, done, infos = venv.step(np.array([1, 2, 3]))
        assert not done.any() and r.dtype == np.float32
    last, r, done, infos = venv.step(np.array([4, 5, 6]))
    assert done.all()
    for i in range(3):
        assert infos[i]["TimeLimit.truncated"] is True
        term = infos[i]["terminal_observation"]
        assert term.shape == last[i].shape and not np.array_equal(term, last[i])
        assert term[-1] == pytest.approx(1.0)  # step / max_turn of the final observation
        assert last[i][-1] == 0.0  # new episode
    # seeding: same seed -> same first observations and rewards
    venv2 = to_sb3(GroundTruthRecEnv(synthetic, num_envs=3, protocol="roler", max_turn=4, mode="FB"))
    venv.seed(9)
    venv2.seed(9)
    venv.reset()
    venv2.reset()
    assert np.array_equal(venv.step(np.array([7, 8, 9]))[1], venv2.step(np.array([7, 8, 9]))[1])


def test_continuous_wrapper_picks_best_allowed_item(synthetic):
    env = GroundTruthRecEnv(synthetic, num_envs=2, protocol="roler")
    wrapped = ContinuousItemActionWrapper(env, k=8)
    assert wrapped.single_action_space.shape == (8,)
    emb = wrapped.item_embeddings
    a = torch.ones(2, 8) * torch.tensor([[1.0], [-1.0]])
    wrapped.reset(seed=0)
    chosen = []
    for _ in range(30):
        _, _, _, _, info = wrapped.step(a)
        chosen.append(info["item"])
    chosen = torch.stack(chosen, 1)
    # no repeats (NX_0 mask honoured) and the items come in order of decreasing score
    for b in range(2):
        assert chosen[b].unique().numel() == 30
        scores = emb @ a[b]
        assert torch.equal(chosen[b], scores.topk(30).indices)
    # default embeddings: the SVD of the training logs (never the ground truth), unit rows
    assert torch.allclose(emb, svd_item_embeddings(synthetic.train_matrix(), 8), atol=1e-6)
    # given embeddings are L2-normalised (EasyRL4Rec's mapping scores with normalised item embeddings)
    raw = torch.rand(synthetic.n_items, 3, generator=torch.Generator().manual_seed(0)) + 0.1
    given = ContinuousItemActionWrapper(env, item_embeddings=raw * 7)
    assert torch.allclose(given.item_embeddings, raw / raw.norm(dim=1, keepdim=True), atol=1e-6)
    with pytest.raises(ValueError, match=r"remap_eps must be in \[0, 1\]"):
        ContinuousItemActionWrapper(env, item_embeddings=raw, remap_eps=2.0)
    with pytest.raises(ValueError, match=r"item_embeddings must be \[n_items=400, k\]"):
        ContinuousItemActionWrapper(env, item_embeddings=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(2, 8\)"):
        wrapped.step(torch.zeros(2))


def _finite_losses(model) -> dict:
    model.train(gradient_steps=2, batch_size=64)
    losses = {k: v for k, v in model.logger.name_to_value.items() if k.endswith("loss")}
    assert losses and all(np.isfinite(v) for v in losses.values()), losses
    return losses


@pytest.mark.parametrize("algo", ["SAC", "TD3"])
def test_sb3_continuous_agents_train(synthetic, algo):
    import stable_baselines3 as sb3

    env = GroundTruthRecEnv(synthetic, num_envs=4, protocol="roler")
    venv = to_sb3(ContinuousItemActionWrapper(env, k=8))
    cls = getattr(sb3, algo)
    model = cls("MlpPolicy", venv, learning_starts=200, batch_size=64, train_freq=4, gradient_steps=1,
                policy_kwargs={"net_arch": [32, 32]}, seed=0, device="cpu", verbose=0)
    model.learn(3000)
    assert model.num_timesteps >= 3000
    assert {"train/actor_loss", "train/critic_loss"} <= set(_finite_losses(model))


def test_sb3_discrete_a2c_runs(synthetic):
    from stable_baselines3 import A2C

    env = GroundTruthRecEnv(synthetic, num_envs=4, protocol="easyrl4rec")  # FB: discrete actions may repeat
    venv = to_sb3(env)
    model = A2C("MlpPolicy", venv, n_steps=8, policy_kwargs={"net_arch": [32]}, seed=0, device="cpu")
    model.learn(400)
    assert np.isfinite(model.logger.name_to_value["train/value_loss"])


def test_continuous_wrapper_clips_actions_and_remaps_with_remap_eps(synthetic):
    env = GroundTruthRecEnv(synthetic, num_envs=400, protocol="easyrl4rec")
    emb = torch.zeros(synthetic.n_items, 2)
    emb[:, 0] = 1.0  # every item on the x axis ...
    emb[7] = torch.tensor([0.6, 0.8])  # ... but item 7
    wrapped = ContinuousItemActionWrapper(env, item_embeddings=emb, remap_eps=0.25, seed=1)
    wrapped.reset(seed=0)
    # (0.5, 30) clips to (0.5, 1): item 7 scores 1.1 against 0.5; unclipped it would win anyway, but (3, 1)
    # clips to (1, 1): item 7 scores 1.4 > 1.0, while unclipped (3, 1) would pick an x-axis item (3 > 2.6)
    a = torch.tensor([3.0, 1.0]).repeat(400, 1)
    _, _, _, _, info = wrapped.step(a)
    greedy = info["item"] == 7
    assert 0.7 < float(greedy.float().mean()) < 0.8  # 75% greedy + 25% x 1/400 random hits of item 7
    again = ContinuousItemActionWrapper(GroundTruthRecEnv(synthetic, num_envs=400, protocol="easyrl4rec"),
                                        item_embeddings=emb, remap_eps=0.25, seed=1)
    again.reset(seed=0)
    assert torch.equal(again.step(a)[4]["item"], info["item"])  # seeded


def test_continuous_wrapper_refuses_nan_and_inf_actions(synthetic):
    env = GroundTruthRecEnv(synthetic, num_envs=3, protocol="roler")
    wrapped = ContinuousItemActionWrapper(env, item_embeddings=svd_item_embeddings(torch.rand(20, synthetic.n_items), 4))
    wrapped.reset(seed=0)
    good = torch.zeros(3, 4)
    for bad_value in (float("nan"), float("inf")):
        act = good.clone()
        act[1, 2] = bad_value
        with pytest.raises(ValueError, match=r"actions of envs \[1\] contain NaN or inf"):
            wrapped.step(act)
    obs, r, *_ = wrapped.step(good)  # the env is untouched by the refused steps
    assert (obs["step"] == 1).all()
