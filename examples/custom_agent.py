"""Plug a new agent into recgym: register it, build it with make_agent, evaluate it in the ground-truth env.

An agent is a config dataclass (extending `AgentConfig`: seed, eval_every, eval_episodes, progress) plus a
factory ``factory(env, config)``; `make_agent` builds and checks the config from keyword overrides.

Run: python examples/custom_agent.py   (synthetic data, no download, a few seconds on a CPU)
"""

from dataclasses import dataclass

import gymnasium as gym
import torch

import recgym  # noqa: F401  (registers the env ids)
from recgym.agents import AgentConfig, make_agent, register_agent
from recgym.envs.evaluation import evaluate


@dataclass
class MostLoggedConfig(AgentConfig):
    logged_weight: float = 1.0  # weight of the user's own logged rewards against item popularity (x 1e-3)


class MostLoggedForUser:
    """Recommends the user's own most highly rated logged items first, then the most popular ones."""

    def __init__(self, env, cfg):
        ds = env.unwrapped.dataset
        scores = torch.zeros(ds.n_users, ds.n_items)
        logged = torch.tensor(ds.train["reward"].to_numpy().copy()) * cfg.logged_weight
        scores[ds.train["user"].to_numpy().copy(), ds.train["item"].to_numpy().copy()] = logged
        scores += 1e-3 * torch.bincount(torch.tensor(ds.train["item"].to_numpy().copy()), minlength=ds.n_items)
        self.scores, self.device = scores.to(env.unwrapped.device), env.unwrapped.device

    def act(self, obs, info):
        s = self.scores[obs["user"]].masked_fill(~info["action_mask"], float("-inf"))
        return s.argmax(-1)

    def learn(self, env, budget, logger=None, eval_env=None): ...
    def save(self, path): torch.save(self.scores, path)
    def load(self, path): self.scores = torch.load(path).to(self.device)


register_agent("most_logged_for_user", MostLoggedConfig, MostLoggedForUser)

if __name__ == "__main__":
    env = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=50, protocol="roler")
    for name in ("most_logged_for_user", "random"):
        result = evaluate(make_agent(name, env, seed=0), env, n_episodes=100, seed=0)
        print(f"{name:22s} R_cumu={result['R_cumu']:.2f} Length={result['Length']:.1f}")
