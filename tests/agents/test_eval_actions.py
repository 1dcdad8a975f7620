"""Test-time actions (`recgym.agents.eval_actions`): greedy / sample / epsilon in `evaluate_agent` and `EvalRecorder`."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import recgym  # noqa: F401
from recgym.agents import make_agent
from recgym.agents.common import EvalPolicy, EvalRecorder, evaluate_agent, greedy_mode
from recgym.agents.eval_actions import EvalActions, parse_eval_actions
from recgym.envs.evaluation import derive_seed, evaluate

SMALL = {"dataset_kwargs": {"n_users": 40, "n_items": 60, "seed": 1}}


def small_env(num_envs: int = 8, **kw):
    return gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=num_envs, **SMALL, **kw)


@pytest.fixture(scope="module")
def env():
    return small_env()


@pytest.fixture(scope="module")
def a2c(env):
    return make_agent("a2c", env, progress=False, seed=2)


class FakeEnv:
    """What `EvalPolicy` reads from an env: the action space and the device."""

    def __init__(self, n_items: int) -> None:
        self.single_action_space = gym.spaces.Discrete(n_items)
        self.device = torch.device("cpu")


class Always:
    """A greedy agent that always picks ``item``; with ``probs``, a stochastic policy over items."""

    name = "always"

    def __init__(self, item: int, probs: list[float] | None = None) -> None:
        self.item, self.probs, self.training = item, probs, True

    def act(self, obs, info=None):
        return torch.full((obs["step"].shape[0],), self.item, dtype=torch.int64)

    def policy_logits(self, obs, info=None):
        logits = torch.tensor(self.probs).log().expand(obs["step"].shape[0], -1)
        mask = info["action_mask"]
        return logits.masked_fill(~mask, float("-inf"))


def _obs(b: int) -> dict:
    return {"step": torch.zeros(b, dtype=torch.int64)}


def test_parse_eval_actions_forms_and_errors() -> None:
    assert parse_eval_actions(None) == EvalActions("greedy") and parse_eval_actions("greedy").label == "greedy"
    assert parse_eval_actions("sample") == EvalActions("sample")
    assert parse_eval_actions("epsilon") == EvalActions("epsilon", 0.01)  # EasyRL4Rec's test epsilon
    assert parse_eval_actions("epsilon:0.25") == EvalActions("epsilon", 0.25)
    assert parse_eval_actions("epsilon:0.25").label == "epsilon:0.25"
    for bad, msg in (("argmax", "expected"), ("sample:0.1", "expected"), ("epsilon:x", "not a number"),
                     ("epsilon:1.5", "must be in [0, 1]"), (3, "expected")):
        with pytest.raises(ValueError, match="eval_actions") as exc:
            parse_eval_actions(bad)
        assert msg in str(exc.value)


def test_agent_configs_check_eval_actions(env) -> None:
    assert make_agent("random", env, progress=False).cfg.eval_actions == "greedy"
    assert make_agent("popularity", env, progress=False, eval_actions="epsilon:0.1").cfg.eval_actions == "epsilon:0.1"
    with pytest.raises(ValueError, match=r"eval_actions='best'.*greedy"):
        make_agent("random", env, progress=False, eval_actions="best")


def test_epsilon_replaces_greedy_actions_by_uniform_allowed_items() -> None:
    b, n = 4000, 10
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask[:, [3, 5]] = True
    info = {"action_mask": mask}
    pol = EvalPolicy(Always(0), EvalActions("epsilon", 1.0), seed=7, env=FakeEnv(n))
    a = pol.act(_obs(b), info)
    assert set(a.tolist()) == {3, 5} and abs(float((a == 3).float().mean()) - 0.5) < 0.05
    # eps = 0.25 with everything allowed: a quarter explores, 1/n of those land on the greedy item again
    full = {"action_mask": torch.ones(b, n, dtype=torch.bool)}
    a = EvalPolicy(Always(0), EvalActions("epsilon", 0.25), seed=7, env=FakeEnv(n)).act(_obs(b), full)
    assert abs(float((a != 0).float().mean()) - 0.25 * 0.9) < 0.03
    again = EvalPolicy(Always(0), EvalActions("epsilon", 0.25), seed=7, env=FakeEnv(n)).act(_obs(b), full)
    other = EvalPolicy(Always(0), EvalActions("epsilon", 0.25), seed=8, env=FakeEnv(n)).act(_obs(b), full)
    assert torch.equal(a, again) and not torch.equal(a, other)  # the evaluation seed fixes the draws
    zero = EvalPolicy(Always(4), EvalActions("epsilon", 0.0), seed=7, env=FakeEnv(n)).act(_obs(b), full)
    assert (zero == 4).all()


def test_sample_draws_from_softmax_of_policy_logits() -> None:
    b = 20_000
    probs = [0.6, 0.3, 0.1, 0.0]
    mask = torch.ones(b, 4, dtype=torch.bool)
    mask[:, 3] = False
    a = EvalPolicy(Always(0, probs), EvalActions("sample"), seed=3, env=FakeEnv(4)).act(_obs(b), {"action_mask": mask})
    freq = torch.bincount(a, minlength=4).double() / b
    assert freq[3] == 0 and torch.allclose(freq[:3], torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64), atol=0.015)
    with pytest.raises(ValueError, match=r"always: eval_actions='sample' needs a stochastic policy"):
        EvalPolicy(Greedy(), EvalActions("sample"), 0, FakeEnv(4))


class Greedy:
    name = "always"

    def act(self, obs, info=None):
        return torch.zeros(obs["step"].shape[0], dtype=torch.int64)


def test_default_evaluation_is_unchanged_greedy(env, a2c) -> None:
    agent = a2c
    default = evaluate_agent(agent, env, 16, seed=5)
    assert default == evaluate_agent(agent, env, 16, seed=5, actions="greedy")
    assert default == evaluate_agent(agent, env, 16, seed=5, actions="epsilon:0")
    with greedy_mode(agent):  # what evaluate_agent did before the option existed
        direct = evaluate(agent, env, n_episodes=16, seed=5)
    assert default == {k: float(v) for k, v in direct.items() if isinstance(v, (int, float))}
    assert agent.training  # restored


def test_sampled_evaluation_of_a2c_is_seeded_and_leaves_the_agent_rng_alone(env, a2c) -> None:
    agent = a2c
    state = agent.gen.get_state()
    s1 = evaluate_agent(agent, env, 16, seed=5, actions="sample")
    s2 = evaluate_agent(agent, env, 16, seed=5, actions="sample")
    assert s1 == s2 and torch.equal(agent.gen.get_state(), state)
    greedy = evaluate_agent(agent, env, 16, seed=5)
    # an untrained policy is near uniform: sampling spreads over the catalogue, argmax does not
    assert s1["CV"] > greedy["CV"]
    with pytest.raises(ValueError, match="random: eval_actions='sample' needs a stochastic policy"):
        evaluate_agent(make_agent("random", env, progress=False), env, 8, seed=0, actions="sample")


def test_eval_recorder_uses_the_config_setting(env) -> None:
    agent = make_agent("popularity", env, progress=False, eval_actions="epsilon:1.0")
    rec = EvalRecorder(agent, 16, seed=4)
    assert rec.actions == EvalActions("epsilon", 1.0)
    got = rec(env, 0, None)
    # the recorder's k-th evaluation uses the derived seed of (seed, "evaluation", k)
    assert got == evaluate_agent(agent, env, 16, seed=derive_seed(4, "evaluation", 0), actions="epsilon:1")
    assert got != evaluate_agent(agent, env, 16, seed=4, actions="greedy")
    assert agent.history[-1] == {"step": 0, **got}
    assert EvalRecorder(agent, 16, seed=4, actions="greedy").actions == EvalActions("greedy")
