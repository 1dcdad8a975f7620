"""`gt_oracle`: the ground-truth reference row reaches the exact optimum when nobody quits, and only there."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

import recgym  # noqa: F401
import recgym.benchmarks.references  # noqa: F401  (registers gt_oracle)
from recgym.agents import agent_spec, make_agent
from recgym.benchmarks.backends import run_grid
from recgym.benchmarks.suite import suite_from_flags

ONE_USER = {"dataset_kwargs": {"n_users": 1, "n_items": 80, "seed": 3}}


def test_oracle_reaches_the_exact_optimum_of_a_one_user_world() -> None:
    env = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=4, protocol="dorl", **ONE_USER)
    optimum = float(env.unwrapped.optimal_return()[0])  # the user's top-30 ground-truth sum
    agent = make_agent("gt_oracle", env, eval_episodes=8)
    agent.learn(env, 0)
    (h,) = agent.history
    assert h["R_cumu"] == pytest.approx(optimum, rel=1e-6) and h["optimal"] == pytest.approx(optimum, rel=1e-6)
    assert h["Length"] == 30.0
    random = make_agent("random", env, eval_episodes=8, progress=False)
    random.learn(env, 0)
    assert random.history[-1]["R_cumu"] < optimum - 1
    assert agent_spec("gt_oracle").budget_unit == "env_steps" and agent_spec("gt_oracle").train_env is None


def test_oracle_optimal_is_nan_when_users_can_quit() -> None:
    env = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=4, protocol="dorl", num_leave_compute=1,
                       leave_threshold=10.0, **ONE_USER)
    assert env.unwrapped.protocol["quitting"]
    agent = make_agent("gt_oracle", env, eval_episodes=4)
    agent.learn(env, 0)
    assert agent.history[-1]["optimal"] != agent.history[-1]["optimal"]  # NaN


def test_oracle_in_a_suite_run(tmp_path: Path) -> None:
    s = suite_from_flags(["GroundTruthRec-Synthetic-v0"], ["gt_oracle"], [0], 0, eval_episodes=8, num_envs=4,
                         env_kwargs=ONE_USER, protocol="dorl", imports=["recgym.benchmarks.references"])
    (res,) = run_grid(s, tmp_path, progress=False, tensorboard=False)
    assert res.status == "done", res.error
    final = json.loads((res.run_dir / "result.json").read_text())["final"]
    assert final["R_cumu"] == pytest.approx(final["optimal"], rel=1e-6)
