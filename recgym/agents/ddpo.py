"""DDPO-style PPO over the denoising steps of a pre-trained DiffRec (the image-diffusion analogue of ReFiT).

Same policy as `recgym.agents.refit` (a trainable copy of the env's denoiser, Gaussian around its posterior mean
with ``explore_std``). Per iteration: sample ``samples_per_user`` chains for each of the env's ``num_envs`` users and
store the states and the per-step log-probs of the sampling policy; advantages are the terminal rewards
normalised per user (``(r - mean_u) / (std_u + 1e-8)`` over the user's samples; over the batch when
``samples_per_user == 1``) and clipped to ``[-adv_clip, adv_clip]`` (5, DDPO); then ``ppo_epochs`` passes over
the chains in minibatches of ``minibatch_size`` chains, each minibatch accumulating the PPO clipped loss over
all stochastic steps (one importance ratio per step and chain, ``exp(log pi_new - log pi_old)``, averaged over steps)
before one Adam step. The ratio uses the log-prob averaged over items (``log_prob_reduce="mean"``), for which
DDPO's clip range 1e-4 is meant; with ``"sum"`` the ratio is the n_items-th power of it, so widen the range.

Exploration as in ReFiT (`recgym.agents.refit`): by default only the last transition is stochastic
(``explore_steps=1``; ``None`` for all T) with ``samples_per_user=32`` samples per user sharing the
deterministic prefix, and lr 1e-4 (the reasons and measurements are in ReFiT's docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from recgym.agents.base import build_config, register_agent
from recgym.agents.denoise_common import (
    ChainFinetuner,
    gaussian_log_prob,
    group_advantages,
    ppo_clip_loss,
    sample_chain,
    split_steps,
)
from recgym.agents.refit import _check_common


@dataclass
class DDPOConfig:
    """DDPO settings (REFERENCE §4: mean log-prob, clip 1e-4, per-user normalised advantages clipped at 5)."""

    iterations: int = 200
    lr: float = 1e-4  # the paper's 1e-3 with Adam random-walks away from the optimum here (see docstring)
    samples_per_user: int = 32
    explore_std: float = 0.02
    explore_steps: int | None = 1  # stochastic last steps (None: all T)
    clip_range: float = 1e-4
    adv_clip: float = 5.0
    ppo_epochs: int = 1
    minibatch_size: int = 512  # chains per gradient step
    log_prob_reduce: str = "mean"
    max_grad_norm: float | None = 1.0
    eval_every: int = 20
    select_metric: str = "recall@20"
    keep_best: bool = True
    log_every: int = 1
    seed: int = 0
    progress: bool = True
    device: str | None = None  # must match the env's device (None: the env's)

    def __post_init__(self) -> None:
        _check_common(self, "ddpo")
        if not self.clip_range > 0 or not self.adv_clip > 0:
            raise ValueError(f"ddpo: clip_range={self.clip_range}, adv_clip={self.adv_clip}; expected > 0")
        if self.ppo_epochs < 1 or self.minibatch_size < 1:
            raise ValueError(f"ddpo: ppo_epochs={self.ppo_epochs}, minibatch_size={self.minibatch_size}; "
                             "expected >= 1")


class DDPO(ChainFinetuner):
    """PPO with per-step importance ratios over the reverse chain (see the module docstring)."""

    name = "ddpo"

    def _update(self, x_start: Tensor, ctx: Any, users: Tensor) -> dict[str, Tensor]:
        c = self.config
        std = float(c.explore_std)
        x0, states, old_lp = sample_chain(self.model, self.policy, x_start, std, self.generator, c.explore_steps,
                                          store=True, reduce=c.log_prob_reduce, k=c.samples_per_user)
        rewards = self.bridge.reward(x0, ctx)
        n = rewards.shape[0]
        k = c.samples_per_user
        adv = self.bridge.ungrouped(group_advantages(self.bridge.grouped(rewards), "user_mean" if k > 1 else "batch",
                                                     normalize=True, clip=c.adv_clip))
        _, steps = split_steps(self.model.steps, c.explore_steps)
        n_steps = len(steps)
        loss_sum = torch.zeros((), device=self.device)
        clip_sum = torch.zeros((), device=self.device)
        kl_sum = torch.zeros((), device=self.device)
        n_updates = 0
        for _ in range(c.ppo_epochs):
            perm = torch.randperm(n, generator=self.generator, device=self.device)
            for lo in range(0, n, c.minibatch_size):
                mb = perm[lo: lo + c.minibatch_size]
                self.optimizer.zero_grad(set_to_none=True)
                for j, t in enumerate(steps):
                    mu = self.model.posterior_mean(states[j, mb], t, denoiser=self.policy)
                    lp = gaussian_log_prob(states[j + 1, mb], mu, std, c.log_prob_reduce)
                    loss, clip_frac, approx_kl = ppo_clip_loss(lp, old_lp[j, mb], adv[mb], c.clip_range)
                    (loss / n_steps).backward()
                    loss_sum = loss_sum + loss.detach() / n_steps
                    clip_sum = clip_sum + clip_frac / n_steps
                    kl_sum = kl_sum + approx_kl / n_steps
                if c.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
                self.optimizer.step()
                n_updates += 1
        return {"reward": rewards.mean(), "reward_std": rewards.std(), "ppo_loss": loss_sum / n_updates,
                "clip_fraction": clip_sum / n_updates, "approx_kl": kl_sum / n_updates}


def make_ddpo(env: Any, **config: Any) -> DDPO:
    """Factory for `register_agent`: ``make_agent("ddpo", env, **DDPOConfig fields)``."""
    return DDPO(env, build_config(DDPOConfig, config, "ddpo"))


register_agent("ddpo", make_ddpo)
