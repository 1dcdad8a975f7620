"""Static baselines a careful reviewer asks for first: ``popularity``, ``top_rated`` and ``random``.

- ``popularity``: items ranked by how often they were logged in ``dataset.train``;
- ``top_rated``: items ranked by their mean logged reward (items logged fewer than ``min_count`` times rank
  after every other item, by count; ties broken by popularity, then item id);
- ``random``: a uniform draw among the allowed items (``info["action_mask"]``), from a seeded generator.

The two rankings are the same for every user and are served in order without repeats within an episode
(also in FB mode: see `NoRepeatServer`). An RL agent that cannot beat them is not learning.

Nothing here learns from interaction: ``learn`` only evaluates (``n_evals`` evaluations of ``eval_episodes``
episodes each, in the matching GroundTruthRec env), so these agents have a curve like the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recgym.agents.base import AgentConfig, register_agent
from recgym.agents.common import (
    NoRepeatServer,
    action_mask,
    evaluate_only,
    generator,
    load_checkpoint,
    rec_env_spec,
    require_dataset,
    save_checkpoint,
    to_device_obs,
)


@dataclass
class StaticConfig(AgentConfig):
    """``learn`` makes ``n_evals`` evaluations (the curve of a static policy is flat up to noise); ``budget``,
    ``eval_every`` and ``progress`` are accepted for the uniform interface (nothing is trained)."""

    n_evals: int = 1


@dataclass
class TopRatedConfig(StaticConfig):
    min_count: int = 1  # items logged fewer times rank last


def item_ranking(dataset: Any, by: str, min_count: int = 1) -> np.ndarray:
    """Item ids, best first, by ``popularity`` (log count) or ``top_rated`` (mean logged reward)."""
    tr = dataset.train
    n = dataset.n_items
    count = np.bincount(tr["item"].to_numpy(np.int64), minlength=n).astype(np.float64)
    if by == "popularity":
        return np.lexsort((np.arange(n), -count))
    if by == "top_rated":
        total = np.bincount(tr["item"].to_numpy(np.int64), weights=tr["reward"].to_numpy(np.float64), minlength=n)
        mean = np.where(count > 0, total / np.maximum(count, 1), -np.inf)
        enough = count >= max(1, min_count)
        return np.lexsort((np.arange(n), -count, -np.where(enough, mean, -np.inf), ~enough))
    raise ValueError(f"by={by!r}; valid values: ['popularity', 'top_rated']")


class RankedListAgent:
    """Serves one global item ranking in order, skipping masked and already-served items."""

    def __init__(self, env: Any, cfg: StaticConfig, name: str) -> None:
        self.name, self.cfg = name, cfg
        self.spec = spec = rec_env_spec(env, name)
        self.device = spec.device
        ranking = item_ranking(require_dataset(spec, name), name, cfg.min_count if isinstance(cfg, TopRatedConfig) else 1)
        # priority[i] = n_items - rank(i): argmax over allowed items = the best-ranked allowed one.
        prio = np.empty(spec.n_items, dtype=np.float32)
        prio[ranking] = np.arange(spec.n_items, 0, -1, dtype=np.float32)
        self.priority = torch.as_tensor(prio, device=self.device)
        self.server = NoRepeatServer(spec.n_items, self.device)
        self.history: list[dict[str, float]] = []

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        obs = to_device_obs(obs, self.device)
        allowed = self.server.allowed(obs, info)
        scores = torch.where(allowed, self.priority, torch.full_like(self.priority, -1.0))
        actions = scores.argmax(-1)
        self.server.record(actions)
        return actions

    def learn(self, env: Any, budget: int = 0, logger: Any = None, eval_env: Any = None) -> None:
        """Nothing to learn (the ranking comes from the logs): ``n_evals`` evaluations; ``budget`` unused."""
        evaluate_only(self, env, logger, eval_env, self.cfg.n_evals)

    def save(self, path: str) -> None:
        save_checkpoint(path, {"agent": self.name, "config": self.cfg, "priority": self.priority.cpu()}, env=self.spec)

    def load(self, path: str) -> None:
        self.priority = load_checkpoint(path, self.name, env=self.spec)["priority"].to(self.device)


class RandomAgent:
    """Uniform over the allowed items, from a seeded generator on the env's device."""

    name = "random"

    def __init__(self, env: Any, cfg: StaticConfig) -> None:
        self.cfg = cfg
        self.spec = rec_env_spec(env, "random")
        self.device = self.spec.device
        self.gen = generator(cfg.seed, self.device)
        self.history: list[dict[str, float]] = []

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        obs = to_device_obs(obs, self.device)
        mask = action_mask(info, obs["step"].shape[0], self.spec.n_items, self.device)
        mask = torch.where(mask.any(1, keepdim=True), mask, torch.ones_like(mask))
        return torch.multinomial(mask.float(), 1, generator=self.gen).squeeze(-1)

    def learn(self, env: Any, budget: int = 0, logger: Any = None, eval_env: Any = None) -> None:
        """Nothing to learn: ``n_evals`` evaluations; ``budget`` unused."""
        evaluate_only(self, env, logger, eval_env, self.cfg.n_evals)

    def save(self, path: str) -> None:
        save_checkpoint(path, {"agent": self.name, "config": self.cfg, "gen": self.gen.get_state()}, env=self.spec)

    def load(self, path: str) -> None:
        self.gen.set_state(load_checkpoint(path, self.name, env=self.spec)["gen"])


register_agent("popularity", StaticConfig, lambda env, config: RankedListAgent(env, config, "popularity"))
register_agent("top_rated", TopRatedConfig, lambda env, config: RankedListAgent(env, config, "top_rated"))
register_agent("random", StaticConfig, RandomAgent)
