"""SB3 SAC / TD3 on the DiffusionDenoise env's guidance action mode (through `recgym.envs.to_sb3`)."""

from __future__ import annotations

import pytest
import torch

from recgym.agents import make_agent
from recgym.agents.denoise.sb3 import DenoiseSB3Agent

denoise = pytest.importorskip("recgym.envs.denoise")


@pytest.fixture(scope="module")
def env():
    torch.set_num_threads(1)
    return denoise.DiffusionDenoiseEnv("synthetic", num_envs=16, progress=False, action_mode="guidance",
                                       guidance_dim=4, action_scale=0.1)


@pytest.mark.parametrize("name", ["sb3_sac", "sb3_td3"])
def test_sb3_on_guidance_learns_saves_and_evaluates(env, tmp_path, name) -> None:
    agent = make_agent(name, env, learning_starts=64, batch_size=32, net_arch=(32,), progress=False,
                       test_at_end=True)
    assert isinstance(agent, DenoiseSB3Agent)
    logged = []

    class Log:
        def log_scalar(self, tag, value, step):
            logged.append((tag, value))

    agent.learn(env, 16 * 10 * 2, Log())  # two chains of T=10 steps for each of the 16 envs
    assert [t for t, _ in logged] == ["train/episode_reward"] * 2
    # one record at the end: validation on all users, test paired against the frozen chain
    (rec,) = agent.history
    assert rec["step"] == 320 and rec["Recall@20"] == pytest.approx(agent.evaluate(("valid",))["valid"]["Recall@20"])
    assert rec["test_Recall@20_pretrained"] == pytest.approx(env.evaluate(which=("test",))["test"]["Recall@20"])
    assert rec["test_NDCG@20_diff_low"] <= rec["test_NDCG@20_diff"] <= rec["test_NDCG@20_diff_high"]
    obs, _ = env.reset(seed=0)
    a = agent.act(obs, {})
    assert a.shape == (16, 4) and bool((a.abs() <= 1).all())
    ev = agent.evaluate(("valid",))["valid"]
    assert 0.0 <= ev["Recall@20"] <= 1.0 and ev["users"] > 0
    path = tmp_path / f"{name}.zip"
    agent.save(str(path))
    other = make_agent(name, env, learning_starts=64, batch_size=32, net_arch=(32,), seed=5, progress=False)
    other.load(str(path))
    assert torch.equal(other.act(obs, {}), a)
    # zero action reproduces the frozen model: the steered chain with the actor replaced by 0
    x = obs["history"]
    agent._actions = lambda o: torch.zeros(o["x_t"].shape[0], 4)
    assert torch.allclose(agent.scores(x), env.model.predict(x), atol=1e-6)


def test_sb3_denoise_rejects_latent_mode() -> None:
    latent = denoise.DiffusionDenoiseEnv("synthetic", num_envs=2, progress=False)
    with pytest.raises(ValueError, match="guidance"):
        make_agent("sb3_sac", latent)
