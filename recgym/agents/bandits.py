"""Bandit baselines on world-model scores: ``ucb`` and ``epsilon_greedy``.

The bandit baselines of DORL ("Alleviating Matthew Effect of Offline Reinforcement Learning in Interactive
Recommendation", arXiv:2307.04571).

Both read the world model's full predicted-reward matrix ``mean[u, i]`` (``recgym.worldmodels.fit_or_load``,
fitted once on the training logs and cached; ``world_model="deepfm"``, DORL's DeepFM ensemble, by default,
``"mf"`` as the cheaper alternative when DeepFM is too slow on a machine) and serve, per env, the best allowed
item not yet served in the episode:

- ``ucb``: ``mean[u, i] + c * sqrt(2 ln n / n_i)``, with ``n_i`` how often item ``i`` has been recommended
  by this agent so far (over all users and episodes: one global bandit per item, as DORL's UCB) and ``n`` the
  total number of recommendations; an item never recommended gets an infinite bonus (every item is tried
  once first). The counts grow with every ``act`` call (training and evaluation: it is an online bandit);
- ``epsilon_greedy``: with probability ``epsilon`` (0.3) a uniform allowed item, else the best-scored one.

``learn(env, budget)`` plays ``budget`` env steps in ``env`` (UCB's counts grow; epsilon-greedy has nothing
to update) with an evaluation every ``eval_every`` steps in the matching GroundTruthRec env.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from recgym.agents.base import AgentConfig, register_agent
from recgym.agents.common import (
    EvalRecorder,
    NoRepeatServer,
    check_choice,
    evaluation_env_for,
    generator,
    load_checkpoint,
    log_scalars,
    progress,
    rec_env_spec,
    require_dataset,
    reset_done,
    save_checkpoint,
    step_validity,
    to_device_obs,
)

WORLD_MODELS = ("deepfm", "mf")


@dataclass
class BanditConfig(AgentConfig):
    """Shared by the two bandits (each extends it with its exploration parameter)."""

    eval_every: int = 3_000  # env steps between evaluations during learn
    world_model: str = "deepfm"  # one of WORLD_MODELS


@dataclass
class UCBConfig(BanditConfig):
    c: float = 1.0  # bonus scale


@dataclass
class EpsilonGreedyConfig(BanditConfig):
    epsilon: float = 0.3  # exploration rate


CONFIGS: dict[str, type[BanditConfig]] = {"ucb": UCBConfig, "epsilon_greedy": EpsilonGreedyConfig}


def world_model_scores(dataset: Any, kind: str, device: torch.device, seed: int,
                       progress: bool = True) -> torch.Tensor:
    """The fitted (cached) world model's mean-reward matrix (n_users, n_items) on ``device``."""
    import recgym.worldmodels as wm

    # The same per-dataset config the InteractiveRec envs use, so both share one cached fit.
    config = wm.default_config(kind, dataset.name) if hasattr(wm, "default_config") else None
    model = wm.fit_or_load(kind, dataset, config=config, device=str(device), progress=progress, seed=seed)
    mean, _ = model.predict()
    return mean.to(device, torch.float32)


class BanditAgent:
    """UCB / epsilon-greedy over world-model scores (see the module docstring)."""

    def __init__(self, env: Any, cfg: BanditConfig, name: str) -> None:
        self.name, self.cfg = name, cfg
        check_choice(name, "name", name, tuple(CONFIGS))
        if not isinstance(cfg, CONFIGS[name]):
            raise TypeError(f"{name}: config must be a {CONFIGS[name].__name__}, got {type(cfg).__name__}")
        check_choice(name, "world_model", cfg.world_model, WORLD_MODELS)
        if isinstance(cfg, EpsilonGreedyConfig) and not 0.0 <= cfg.epsilon <= 1.0:
            raise ValueError(f"{name}: epsilon must be in [0, 1], got {cfg.epsilon}")
        self.spec = spec = rec_env_spec(env, name)
        self.device = spec.device
        # The world model is fitted with seed 0 whatever the agent's seed (one cached fit per dataset, as the
        # InteractiveRec envs do); the agent's seed drives its own randomness.
        self.scores = world_model_scores(require_dataset(spec, name), cfg.world_model, self.device, 0,
                                         cfg.progress)
        if self.scores.shape[1] != spec.n_items:
            raise ValueError(f"{name}: world model has {self.scores.shape[1]} items, env has {spec.n_items}")
        self.counts = torch.zeros(spec.n_items, dtype=torch.float64, device=self.device)
        self.server = NoRepeatServer(spec.n_items, self.device)
        self.gen = generator(cfg.seed, self.device)
        self.history: list[dict[str, float]] = []
        self.env_steps = 0

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        obs = to_device_obs(obs, self.device)
        allowed = self.server.allowed(obs, info)
        score = self.scores[obs["user"].long()]
        if self.name == "ucb":
            n = self.counts.sum()
            bonus = torch.sqrt(2.0 * torch.log(n.clamp(min=1.0)) / self.counts.clamp(min=1e-12))
            bonus = torch.where(self.counts > 0, bonus, torch.full_like(bonus, float("inf")))
            score = score.double() + self.cfg.c * bonus
        score = torch.where(allowed, score, torch.full_like(score, float("-inf")))
        # Ties (e.g. several untried items) go to the lowest id: argmax is deterministic.
        actions = score.argmax(-1)
        if self.name == "epsilon_greedy":
            explore = torch.rand(actions.shape[0], generator=self.gen, device=self.device) < self.cfg.epsilon
            uniform = torch.multinomial(allowed.float(), 1, generator=self.gen).squeeze(-1)
            actions = torch.where(explore, uniform, actions)
        self.server.record(actions)
        if self.name == "ucb":
            self.counts += torch.bincount(actions, minlength=self.spec.n_items).double()
        return actions

    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        """Play ``budget`` env steps in ``env`` (online bandit), evaluating every ``eval_every`` steps."""
        cfg = self.cfg
        target = evaluation_env_for(env, eval_env, cfg.eval_episodes)
        recorder = EvalRecorder(self, cfg.eval_episodes, cfg.seed)
        if target is env or int(budget) <= 0:
            # Evaluation env == training env: the evaluation episodes are the online play.
            n_evals = max(1, int(budget) // max(1, cfg.eval_every))
            for k in range(n_evals):
                recorder(target, (k + 1) * cfg.eval_every, logger)
            return
        obs, info = env.reset(seed=cfg.seed)
        B = rec_env_spec(env, self.name).num_envs
        prev_done = torch.zeros(B, dtype=torch.bool, device=self.device)
        ret = torch.zeros(B, device=self.device)
        next_eval = cfg.eval_every
        bar = progress(int(budget), self.name, cfg.progress)
        while self.env_steps < int(budget):
            actions = self.act(obs, info)
            obs, reward, term, trunc, info = env.step(actions)
            done = torch.as_tensor(term, device=self.device) | torch.as_tensor(trunc, device=self.device)
            valid = step_validity(env, prev_done)
            ret = torch.where(valid, ret + torch.as_tensor(reward, device=self.device), ret)
            ended = done & valid
            if bool(ended.any()):
                log_scalars(logger, {"train/return": float(ret[ended].mean())}, self.env_steps)
            ret = torch.where(ended, torch.zeros_like(ret), ret)
            obs, info = reset_done(env, obs, info, done)
            prev_done = done
            self.env_steps += B
            bar.update(B)
            if self.env_steps >= next_eval or self.env_steps >= int(budget):
                recorder(target, self.env_steps, logger)
                next_eval += cfg.eval_every
        bar.close()

    def save(self, path: str) -> None:
        save_checkpoint(path, {"agent": self.name, "config": self.cfg, "scores": self.scores.cpu(),
                               "counts": self.counts.cpu(), "gen": self.gen.get_state()}, env=self.spec)

    def load(self, path: str) -> None:
        payload = load_checkpoint(path, self.name, env=self.spec)
        self.scores = payload["scores"].to(self.device)
        self.counts = payload["counts"].to(self.device)
        self.gen.set_state(payload["gen"])


def _factory(name: str):
    def factory(env: Any, config: BanditConfig) -> BanditAgent:
        return BanditAgent(env, config, name)

    factory.__doc__ = f"The {name} bandit over world-model scores (see recgym.agents.bandits)."
    return factory


for _name, _cfg in CONFIGS.items():
    register_agent(_name, _cfg, _factory(_name))
