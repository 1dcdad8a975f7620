"""DDPO-style PPO over the denoising steps of a pre-trained DiffRec (the image-diffusion analogue of ReFiT).

After "Training Diffusion Models with Reinforcement Learning" (arXiv:2305.13301). The policy is the one all
chain fine-tuners share (`recgym.agents.denoise.common`: a trainable copy of the env's denoiser, Gaussian
around its posterior mean with ``explore_std``). Per iteration: sample ``samples_per_user`` chains for each of
the env's ``num_envs`` users and store the states and the per-step log-probs of the sampling policy; advantages
are the terminal rewards normalised per user (``(r - mean_u) / (std_u + 1e-8)`` over the user's samples; over
the batch when ``samples_per_user == 1``) and clipped to ``[-adv_clip, adv_clip]`` (5, DDPO); then
``ppo_epochs`` passes over the chains in minibatches of ``minibatch_size`` chains, each minibatch accumulating
the PPO clipped loss over all stochastic steps (one importance ratio per step and chain, ``exp(log pi_new - log
pi_old)``, averaged over steps) before one Adam step. The ratio uses the log-prob averaged over items
(``log_prob_reduce="mean"``, DDPO's averaging over pixels), for which DDPO's clip range 1e-4 is meant; with
``"sum"`` the ratio is the n_items-th power of it, so widen the range.

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
    gaussian_log_prob,
    group_advantages,
    ppo_clip_loss,
    sample_chain,
    split_steps,
)


@dataclass
class DDPOConfig(ChainFinetunerConfig):
    """DDPO's own settings: PPO clip range 1e-4 and advantages clipped at 5 (DDPO's values), epochs, minibatch."""

    agent: ClassVar[str] = "ddpo"

    clip_range: float = 1e-4
    adv_clip: float = 5.0
    ppo_epochs: int = 1
    minibatch_size: int = 512  # chains per gradient step

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.clip_range > 0 or not self.adv_clip > 0:
            raise ValueError(f"ddpo: clip_range={self.clip_range}, adv_clip={self.adv_clip}; expected > 0")
        if self.ppo_epochs < 1 or self.minibatch_size < 1:
            raise ValueError(f"ddpo: ppo_epochs={self.ppo_epochs}, minibatch_size={self.minibatch_size}; "
                             "expected >= 1")


class DDPO(ChainFinetuner):
    """PPO with per-step importance ratios over the reverse chain (see the module docstring)."""

    name = "ddpo"
    config: DDPOConfig

    def _update(self, x_start: Tensor, ctx: Any, users: Tensor) -> dict[str, Tensor]:
        c = self.config
        std = self.stds
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
                    lp = gaussian_log_prob(states[j + 1, mb], mu, std[t], c.log_prob_reduce)
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


register_agent("ddpo", DDPOConfig, DDPO)
