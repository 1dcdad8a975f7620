"""Exponential reward-weighted SFT (``exp_rsft``) of a next-item policy on the logs.

After "Robust Post-Training for Generative Recommenders: Why Exponential Reward-Weighted SFT Outperforms RLHF"
(arXiv:2603.10279). Fully offline: the policy ``pi(a | s)`` (state tracker + MLP over items) maximises the
logged likelihood with each term weighted by ``w = exp(r / lambda)``: the minimiser is
``pi*(a|s) ∝ pi_beta(a|s) exp(r(s, a) / lambda)``, the behaviour policy tilted towards rewarding items.
Small ``lambda`` trusts the rewards more (more improvement, less robustness to noisy rewards); large
``lambda`` falls back to plain behaviour cloning. No reward model, no propensities.

Choices made here (the paper leaves them to the practitioner): rewards are min-max normalised to [0, 1] with
the env's reward range before weighting (``normalize_reward``; so ``lambda`` means the same on every data
set: at ``lambda=0.5`` the best item weighs e^2 ≈ 7.4 times the worst); weights are divided by their
minibatch mean (a constant rescaling per step that keeps the learning rate meaningful). States are built from
the training logs exactly as for the offline agents (`recgym.agents.logged`). ``budget`` counts gradient
steps. Acting is greedy over the allowed items (``info["action_mask"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.a2c import mlp
from recgym.agents.base import AgentConfig, BudgetUnit, register_agent
from recgym.agents.common import (
    EvalRecorder,
    action_mask,
    check_choice,
    evaluation_env_for,
    generator,
    load_checkpoint,
    log_scalars,
    masked_logits,
    progress,
    rec_env_spec,
    require_dataset,
    save_checkpoint,
    seeded,
    to_device_obs,
)
from recgym.agents.logged import ORDERS, build_logged_transitions
from recgym.agents.trackers import TrackerConfig, make_tracker


@dataclass
class ExpRSFTConfig(AgentConfig):
    budget_unit: ClassVar[BudgetUnit] = "gradient_steps"

    eval_every: int = 500  # gradient steps between evaluations (0 = only at the end)
    lam: float = 0.5  # temperature lambda of w = exp(r / lambda)
    normalize_reward: bool = True
    batch_size: int = 256
    lr: float = 1e-3
    hidden: tuple[int, ...] = (64, 64)
    order: str = "time"  # logged-trajectory order, one of logged.ORDERS
    episode_len: int = 0  # 0 = the env's max_turn
    # the user's logged profile in the state by default (see recgym.agents.trackers)
    tracker: TrackerConfig = field(default_factory=lambda: TrackerConfig(profile=True))


class ExpRSFT:
    """Next-item policy trained by exp(r / lambda)-weighted cross-entropy on the logs."""

    name = "exp_rsft"

    def __init__(self, env: Any, cfg: ExpRSFTConfig) -> None:
        self.cfg = cfg
        check_choice(self.name, "order", cfg.order, ORDERS)
        if not cfg.lam > 0:
            raise ValueError(f"{self.name}: lam (lambda) must be > 0, got {cfg.lam}")
        self.spec = spec = rec_env_spec(env, self.name)
        self.dataset = require_dataset(spec, self.name)
        self.device = spec.device
        with seeded(cfg.seed):
            tracker = make_tracker(cfg.tracker, spec.n_users, spec.n_items, spec.history_len, spec.reward_range,
                                   spec.max_turn, self.dataset)
            self.net = nn.Sequential(tracker, mlp(tracker.out_dim, tuple(cfg.hidden), spec.n_items)).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.gen = generator(cfg.seed, self.device)
        lo, hi = spec.reward_range
        self.r_lo, self.r_span = lo, (hi - lo if (cfg.normalize_reward and hi > lo) else 1.0)
        if not cfg.normalize_reward:
            self.r_lo = 0.0
        self.history: list[dict[str, float]] = []
        self.grad_steps = 0
        self._data = None

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        obs = to_device_obs(obs, self.device)
        logits = self.net(obs)
        return masked_logits(logits, action_mask(info, logits.shape[0], logits.shape[1], self.device)).argmax(-1)

    def weights(self, reward: torch.Tensor) -> torch.Tensor:
        """w = exp(r / lambda) on the (normalised) logged reward."""
        return torch.exp((reward - self.r_lo) / self.r_span / self.cfg.lam)

    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        """``budget`` gradient steps of weighted SFT; evaluation every ``eval_every`` steps."""
        cfg = self.cfg
        if self._data is None:
            self._data = build_logged_transitions(self.dataset, self.spec.history_len,
                                                  cfg.episode_len or self.spec.max_turn, cfg.order, cfg.seed,
                                                  self.device)
        data = self._data
        target_env = evaluation_env_for(env, eval_env, cfg.eval_episodes)
        recorder = EvalRecorder(self, cfg.eval_episodes, cfg.seed)
        bar = progress(int(budget), self.name, cfg.progress)
        for k in range(int(budget)):
            idx = torch.randint(len(data), (min(cfg.batch_size, len(data)),), generator=self.gen, device=self.device)
            obs, act, rew, _, _ = data.batch(idx)
            w = self.weights(rew)
            w = w / w.mean()
            loss = (w * F.cross_entropy(self.net(obs), act, reduction="none")).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.grad_steps += 1
            bar.update(1)
            if k % 50 == 0 or k == int(budget) - 1:
                log_scalars(logger, {"loss/weighted_nll": float(loss.detach())}, self.grad_steps)
            if (cfg.eval_every > 0 and self.grad_steps % cfg.eval_every == 0) or k == int(budget) - 1:
                recorder(target_env, self.grad_steps, logger)
        bar.close()

    def save(self, path: str) -> None:
        save_checkpoint(path, {"agent": self.name, "config": self.cfg, "net": self.net.state_dict(),
                               "opt": self.opt.state_dict(), "grad_steps": self.grad_steps}, env=self.spec)

    def load(self, path: str) -> None:
        payload = load_checkpoint(path, self.name, env=self.spec)
        self.net.load_state_dict(payload["net"])
        self.opt.load_state_dict(payload["opt"])
        self.grad_steps = int(payload["grad_steps"])


register_agent("exp_rsft", ExpRSFTConfig, ExpRSFT)
