"""ReFiT: REINFORCE fine-tuning of a pre-trained DiffRec denoiser on the DiffusionDenoise env.

After "Fine-Tuning Diffusion-Based Recommender Systems via Reinforcement Learning with Reward Function
Optimization" (arXiv:2511.06937). The denoising chain is an MDP: state (t, x_t), action x_{t-1},
deterministic transition, reward only at the end (the env's RACS by default). The policy is a trainable copy
of the env's pre-trained denoiser.

``refit`` (the paper's MDP). Every one of the T reverse steps is the model's own Gaussian,
``pi(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I)`` with ``mu_theta`` DiffRec's posterior mean built
from the copy's x0 prediction and ``sigma_t^2`` DiffRec's (clipped) posterior variance (``explore_std=None``,
``explore_steps=None``); the update is REINFORCE with the exact log-density of each transition summed over the
items and over t = 1..T (``log_prob_reduce="sum"``): ``grad = E[sum_t grad log pi(x_{t-1} | x_t) * A]``. The
paper's budget is the default: 200 iterations of 64 users (the env's ``num_envs``) at lr 1e-3.

The estimator (the paper states plain REINFORCE on r; that collapses the model at lr 1e-3 here, see
docs/RESULTS.md), all of it switchable:

- ``samples_per_user`` chains per user and a per-user baseline: ``"user"`` (leave-one-out mean of the user's
  other samples, the default), ``"user_mean"``, ``"greedy"`` (the reward of the user's deterministic
  posterior-mean chain: one extra chain per user, no gradient), ``"batch"``, ``"none"`` (the paper);
- ``normalize_advantages``: per-user normalisation (GRPO / DDPO style), optional ``advantage_clip``;
- ``kl_coef * sum_t KL(pi_theta(. | x_t) || pi_ref(. | x_t))`` at the visited states, the exact KL of the
  trajectory distributions to the pre-trained model's (same-std Gaussians: ``||mu_theta - mu_ref||^2 / (2
  sigma_t^2)`` per step, summed over items like the log-prob); ``elbo_coef`` times DiffRec's own denoising
  loss on the users' training rows;
- ``max_grad_norm``: global gradient-norm clipping before the Adam step.

``refit_lastep`` (recgym's earlier variant, `ReFiTLastStep`): only the final transition is stochastic, with a
fixed exploration std 0.02 and 32 samples per user branching after a shared deterministic prefix, the
log-prob averaged over items, lr 1e-4, no advantage normalisation, no KL.

One iteration:
1. ``env.reset()`` draws the next ``num_envs`` users (with the env's reward items); start from the env's x_T;
2. roll out ``samples_per_user`` chains per user without gradients (they branch at the first stochastic step)
   and score each x_0 with the env's terminal reward;
3. advantages from the rewards and the baseline;
4. replay the stochastic steps (same generator stream, same weights, so the same states) with gradients, one
   backward per step so that memory is that of one denoiser pass over the batch (no trajectory is stored); at
   the branching step the K copies share one mean, and their terms are summed analytically into one [B, I]
   vector (``d log pi / d mu = eps / sigma``) so the graph holds B rows, not K*B;
5. the regularisers, clipping, one Adam step.

Model selection and the shared settings are those of `ChainFinetunerConfig` (validation on all users; with
``test_at_end`` the kept weights are compared with the pre-trained model user by user on test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from recgym.agents.base import register_agent
from recgym.agents.denoise.common import (
    BASELINES,
    ChainFinetuner,
    ChainFinetunerConfig,
    gaussian_kl_same_std,
    gaussian_log_prob,
    group_advantages,
    run_prefix,
    sample_chain,
    split_steps,
)


@dataclass
class ReFiTConfig(ChainFinetunerConfig):
    """ReFiT's settings: the paper's MDP and budget (every step the model's posterior Gaussian, exact
    log-density summed over items and steps, lr 1e-3, 200 iterations) and the estimator (per-user baseline,
    advantage normalisation, KL to the pre-trained chain, gradient clipping); see the module docstring."""

    agent: ClassVar[str] = "refit"

    # the paper's MDP and budget (overriding the shared last-step defaults)
    lr: float = 1e-3
    explore_std: float | None = None
    explore_steps: int | None = None
    log_prob_reduce: str = "sum"
    samples_per_user: int = 4
    # the estimator
    baseline: str = "user"
    normalize_advantages: bool = True
    advantage_clip: float | None = None
    kl_coef: float = 1.0
    elbo_coef: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        agent = self.agent
        if self.baseline not in BASELINES:
            raise ValueError(f"{agent}: baseline={self.baseline!r}; valid values: {list(BASELINES)}")
        if self.baseline == "user" and self.samples_per_user < 2:
            raise ValueError(f"{agent}: baseline='user' (leave-one-out) needs samples_per_user >= 2")
        if self.kl_coef < 0 or self.elbo_coef < 0:
            raise ValueError(f"{agent}: kl_coef={self.kl_coef}, elbo_coef={self.elbo_coef}; expected >= 0")
        if self.advantage_clip is not None and not self.advantage_clip > 0:
            raise ValueError(f"{agent}: advantage_clip={self.advantage_clip}; expected > 0 or None")


@dataclass
class ReFiTLastStepConfig(ReFiTConfig):
    """recgym's earlier ReFiT variant: only the last transition explores, with a fixed std (module docstring)."""

    agent: ClassVar[str] = "refit_lastep"

    lr: float = 1e-4
    explore_std: float | None = 0.02
    explore_steps: int | None = 1
    log_prob_reduce: str = "mean"
    samples_per_user: int = 32
    normalize_advantages: bool = False
    kl_coef: float = 0.0


class ReFiT(ChainFinetuner):
    """REINFORCE on the denoising chain with a variance-reduced estimator (see the module docstring)."""

    name = "refit"
    config: ReFiTConfig

    def _greedy_reward(self, x_branch: Tensor, suffix: list[int]) -> Tensor:
        """Reward [B] of the deterministic (posterior-mean) continuation of the chain from ``x_branch``."""
        x = run_prefix(self.model, self.policy, x_branch, suffix)
        return self.bridge.env.terminal_reward(x)["reward"]

    def _update(self, x_start: Tensor, ctx: Any, users: Tensor) -> dict[str, Tensor]:
        c = self.config
        stds = self.stds
        start_state = self.generator.get_state()
        prefix, suffix = split_steps(self.model.steps, c.explore_steps)
        # deterministic prefix once, no gradient (documented): the rollout and the replay both start here
        x_branch = run_prefix(self.model, self.policy, x_start, prefix)
        x0, _, _ = sample_chain(self.model, self.policy, x_branch, stds, self.generator, c.explore_steps,
                                k=c.samples_per_user, prefix_done=True)
        rewards = self.bridge.reward(x0, ctx)
        ref = self._greedy_reward(x_branch, suffix) if c.baseline == "greedy" else None
        adv = self.bridge.ungrouped(group_advantages(self.bridge.grouped(rewards), c.baseline,
                                                     c.normalize_advantages, c.advantage_clip, reference=ref))
        # Replay the chain with gradients: same generator stream and unchanged weights -> the same states.
        self.generator.set_state(start_state)
        self.optimizer.zero_grad(set_to_none=True)
        x = x_branch
        pg_total = torch.zeros((), device=self.device)
        kl_total = torch.zeros((), device=self.device)
        k = c.samples_per_user
        n_chains = adv.shape[0]
        for i, t in enumerate(suffix):
            std = stds[t]
            mu = self.model.posterior_mean(x, t, denoiser=self.policy)
            shared = i == 0 and k > 1  # the K samples branch here and share this [B, I] mean
            shape = (mu.shape[0] * k, mu.shape[1]) if shared else mu.shape
            eps = torch.randn(shape, generator=self.generator, device=mu.device, dtype=mu.dtype)
            last = i == len(suffix) - 1
            if shared:
                n_items = mu.shape[1]
                if not last:  # x_prev = mu + std * eps, without materialising mu repeated K times
                    x_prev = (std * eps).view(k, -1, n_items).add_(mu.detach()[None]).view(-1, n_items)
                # Same gradient as -(A * log pi(x_prev | mu repeated)).mean() without a [K*B, I] graph:
                # d log pi / d mu = eps / std (times 1 / n_items for the mean reduction), summed over the K copies.
                scale = 1.0 / n_items if c.log_prob_reduce == "mean" else 1.0
                with torch.no_grad():  # the value, for logging: log pi = -eps^2 / 2 - log std - log(2 pi) / 2
                    lp = -0.5 * eps.pow(2).mean(-1) - math.log(std) - 0.5 * math.log(2 * math.pi)
                    if c.log_prob_reduce == "sum":
                        lp = lp * n_items
                    pg_total = pg_total - (adv * lp).mean()
                    g = eps.mul_(adv[:, None]).view(k, -1, n_items).sum(0).div_(std)
                loss = -(g * mu).sum() * (scale / n_chains)
            else:
                x_prev = mu.detach() + std * eps
                lp = gaussian_log_prob(x_prev, mu, std, c.log_prob_reduce)
                loss = -(adv * lp).mean()  # this step's share of `reinforce_loss`
                pg_total = pg_total + loss.detach()
            if c.kl_coef > 0:
                with torch.no_grad():
                    mu_ref = self.model.posterior_mean(x, t, denoiser=self.reference)
                # (for the shared step the K copies have the same KL: the mean over users is the mean over chains)
                kl = gaussian_kl_same_std(mu, mu_ref, std, c.log_prob_reduce).mean()
                kl_total = kl_total + kl.detach()
                loss = loss + c.kl_coef * kl
            loss.backward()
            if not last:
                x = x_prev
        stats = {"reward": rewards.mean(), "reward_std": rewards.std(), "adv_abs": adv.abs().mean(),
                 "adv_nonzero": (adv != 0).float().mean(), "pg_loss": pg_total, "kl": kl_total}
        if ref is not None:
            stats["reward_greedy"] = ref.mean()
        if c.elbo_coef > 0:
            elbo = self._elbo_loss(users)
            (c.elbo_coef * elbo).backward()
            stats["elbo"] = elbo.detach()
        if c.max_grad_norm is not None:
            stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
        self.optimizer.step()
        return stats


class ReFiTLastStep(ReFiT):
    """``refit_lastep``: the same update with recgym's earlier last-step exploration defaults."""

    name = "refit_lastep"
    config: ReFiTLastStepConfig


register_agent("refit", ReFiTConfig, ReFiT)
register_agent("refit_lastep", ReFiTLastStepConfig, ReFiTLastStep)
