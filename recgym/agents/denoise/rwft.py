"""RWFT: exponential reward-weighted fine-tuning of a pre-trained DiffRec on its own sampled chains.

The offline-style counterpart of ReFiT, after "Robust Post-Training for Generative Recommenders: Why Exponential
Reward-Weighted SFT Outperforms RLHF" (arXiv:2603.10279): no policy gradient, no baseline, just a weighted
likelihood, each sample weighted by ``w = exp(r / lambda)``. Per iteration:

1. sample ``samples_per_user`` chains for each of the env's ``num_envs`` users with the exploration policy
   ``N(mu_theta(x_t, t), explore_std^2 I)`` (as ReFiT) and score each x_0 with the env's terminal reward r;
2. weights ``w_i = exp(r_i / temperature)``, normalised to mean 1 over the batch (``weight_norm="batch"``:
   ``w_i = N softmax(r / lambda)_i``) or within each user's samples (``"user"``); treated as constants;
3. ``inner_epochs`` Adam steps on the weighted loss of the chosen ``target``:

   - ``"chain"`` (default): the weighted negative log-likelihood of the sampled transitions,
     ``-mean_i w_i sum_t log pi_theta(x_{t-1}^i | x_t^i)`` -- exp_rsft's "weight each logged (state, action)
     likelihood term by exp(r / lambda)" with the chain's (x_t, x_{t-1}) pairs as the logged data
     (reward-weighted regression of the posterior mean onto the sampled x_{t-1}; log-prob averaged over items
     with ``log_prob_reduce="mean"``);
   - ``"x0"``: the weighted DiffRec denoising loss on the sampled final vectors,
     ``mean_i w_i * snr_w(t_i) * mean_items (f_theta(q(x_0^i, t_i, eps), t_i) - x_0^i)^2`` with t_i uniform and
     DiffRec's SNR-difference weight (as in pre-training), i.e. the model is taught to reproduce its own
     high-reward outputs.

``temperature`` (lambda) trades robustness for improvement (large lambda: uniform weights, plain
self-distillation; small lambda: imitate the best sample only). Model selection on validation as ReFiT.

Exploration and learning rate as for every chain fine-tuner (`ChainFinetunerConfig`): by default only the last
transition is stochastic, with 32 samples per user sharing the deterministic prefix, lr 1e-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from recgym.agents.base import register_agent
from recgym.agents.denoise.common import (
    ChainFinetuner,
    ChainFinetunerConfig,
    exp_reward_weights,
    gaussian_log_prob,
    sample_chain,
    split_steps,
)


@dataclass
class RWFTConfig(ChainFinetunerConfig):
    """RWFT's own settings: the temperature lambda, how weights are normalised, the loss target, inner epochs."""

    agent: ClassVar[str] = "rwft"

    temperature: float = 0.05  # lambda in w = exp(r / lambda), in reward units (rewards lie in [0, 1])
    weight_norm: str = "user"
    target: str = "chain"
    inner_epochs: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"rwft: temperature={self.temperature}; expected > 0")
        if self.weight_norm not in ("batch", "user"):
            raise ValueError(f"rwft: weight_norm={self.weight_norm!r}; valid values: ['batch', 'user']")
        if self.target not in ("chain", "x0"):
            raise ValueError(f"rwft: target={self.target!r}; valid values: ['chain', 'x0']")
        if self.inner_epochs < 1:
            raise ValueError(f"rwft: inner_epochs={self.inner_epochs}; expected >= 1")


class RWFT(ChainFinetuner):
    """Exponential reward-weighted fine-tuning on sampled chains (see the module docstring)."""

    name = "rwft"
    config: RWFTConfig

    def _update(self, x_start: Tensor, ctx: Any, users: Tensor) -> dict[str, Tensor]:
        c = self.config
        std = self.stds
        store = c.target == "chain"
        x0, states, _ = sample_chain(self.model, self.policy, x_start, std, self.generator, c.explore_steps,
                                     store=store, reduce=c.log_prob_reduce, k=c.samples_per_user)
        rewards = self.bridge.reward(x0, ctx)
        w = self.bridge.ungrouped(exp_reward_weights(self.bridge.grouped(rewards), c.temperature, c.weight_norm))
        _, steps = split_steps(self.model.steps, c.explore_steps)
        total = torch.zeros((), device=self.device)
        for _ in range(c.inner_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            if store:
                for j, t in enumerate(steps):
                    mu = self.model.posterior_mean(states[j], t, denoiser=self.policy)
                    lp = gaussian_log_prob(states[j + 1], mu, std[t], c.log_prob_reduce)
                    loss = -(w * lp).mean()
                    loss.backward()
                    total = total + loss.detach()
            else:
                loss = self._weighted_x0_loss(x0, w)
                loss.backward()
                total = total + loss.detach()
            if c.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
            self.optimizer.step()
        return {"reward": rewards.mean(), "reward_std": rewards.std(), "weight_max": w.max(),
                "loss": total / c.inner_epochs}

    def _weighted_x0_loss(self, x0: Tensor, w: Tensor) -> Tensor:
        t = torch.randint(0, self.model.steps, (x0.shape[0],), generator=self.generator, device=self.device)
        noise = torch.randn(x0.shape, generator=self.generator, device=self.device)
        x_t = self.model.schedule.q_sample(x0, t, noise)
        mse = ((self.policy(x_t, t) - x0) ** 2).mean(-1)
        if self.model.config.reweight:
            sw = (self.model.schedule.snr(t - 1) - self.model.schedule.snr(t)).to(torch.float32)
            mse = torch.where(t == 0, torch.ones_like(sw), sw) * mse
        return (w * mse).mean()


register_agent("rwft", RWFTConfig, RWFT)
