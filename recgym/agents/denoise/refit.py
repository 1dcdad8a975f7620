"""ReFiT: REINFORCE fine-tuning of a pre-trained DiffRec denoiser on the DiffusionDenoise env.

After "Fine-Tuning Diffusion-Based Recommender Systems via Reinforcement Learning with Reward Function
Optimization" (arXiv:2511.06937). The denoising chain is an MDP (state (t, x_t), action x_{t-1}, deterministic
transition, reward only at the end). The policy is a trainable copy of the env's pre-trained denoiser, made
stochastic with an exploration std: ``pi(x_{t-1} | x_t) = N(mu_theta(x_t, t), explore_std^2 I)`` where
``mu_theta`` is DiffRec's posterior mean built from the copy's x0 prediction. DiffRec's own posterior std (~8e-4
on ML-1M) is far too small to explore with, so ``explore_std`` is a config (0.02 by default). The agent samples
every stochastic x_{t-1} itself (the env's ``latent`` mode, whose transition is the identity on the action) and
scores x_0 with the env's reward.

Which steps explore (``explore_steps``). ``None`` makes all T transitions stochastic (the full MDP). The default
``1`` explores only the final transition -- the one whose mean is the network's x0 prediction (posterior
coefficient 1); the earlier ones follow the posterior mean deterministically (DiffRec inference) and are not
part of the log-prob (their states are treated as given: no gradient through the prefix). Why: the earlier
steps move x_t by a coefficient << 1 times the network output, so their noise barely changes the ranking but
adds its own score-function term to the gradient (the measurement is in docs/DESIGN.md). With a deterministic
prefix the ``samples_per_user`` chains of a user share one network pass (they branch at the stochastic step),
so many samples per user are cheap: the default is 32.

One iteration:
1. ``env.reset()`` draws the next ``num_envs`` users (the batch size: 64 in the paper) with the env's
   per-episode held-out reward items; start from the env's x_T; ``samples_per_user`` chains per user, all
   scored against the same held-out items;
2. roll out the chain without gradients and score x_0 with the env's terminal reward (RACS by default; make the
   env with ``reward="ra"`` for N_K alone);
3. advantages: reward minus a baseline -- per user (``"user"``: leave-one-out mean of the user's other samples,
   unbiased, the default), ``"user_mean"``, ``"batch"`` or ``"none"``; optional normalisation / clipping;
4. replay the stochastic steps (same generator stream, same weights, so the same states) with gradients and
   take one Adam step on ``-mean_i A_i sum_t log pi(x_{t-1}^i | x_t^i)`` (`reinforce_loss`), one backward per
   step so that memory is that of one denoiser pass over the batch (no trajectory is stored); at the step where
   the K samples branch, the K copies' terms are summed analytically into one [B, I] vector
   (``d log pi / d mu = eps / std``) so the graph holds B rows, not K*B;
5. optional regularisers towards the pre-trained model: ``kl_coef * sum_t KL(pi_theta || pi_ref)`` at the
   visited states (same-std Gaussians: the squared mean gap over ``2 std^2``) and ``elbo_coef`` times DiffRec's
   own denoising loss on the users' training rows.

Log-prob reduction (``log_prob_reduce``): ``"mean"`` (default) averages the per-item Gaussian log-densities (DDPO's
convention: the loss scale does not grow with the catalogue); ``"sum"`` is the exact log-density (n_items x the
gradient; the same direction, so with Adam only the balance with the regularisers changes).

Model selection and the shared settings are those of `ChainFinetunerConfig`; ``evaluate(("test",))`` gives the
numbers to report. The paper's settings are 200 iterations, lr 1e-3 and batch 64; the default lr here is 1e-4
(see `ChainFinetunerConfig`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from recgym.agents.base import register_agent
from recgym.agents.denoise.common import (
    ChainFinetuner,
    ChainFinetunerConfig,
    gaussian_kl_same_std,
    gaussian_log_prob,
    group_advantages,
    run_prefix,
    sample_chain,
    split_steps,
)

BASELINES = ("user", "user_mean", "batch", "none")


@dataclass
class ReFiTConfig(ChainFinetunerConfig):
    """ReFiT's own settings: the advantage baseline and the regularisers towards the pre-trained model."""

    agent: ClassVar[str] = "refit"

    baseline: str = "user"
    normalize_advantages: bool = False
    advantage_clip: float | None = None
    kl_coef: float = 0.0
    elbo_coef: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.baseline not in BASELINES:
            raise ValueError(f"refit: baseline={self.baseline!r}; valid values: {list(BASELINES)}")
        if self.baseline == "user" and self.samples_per_user < 2:
            raise ValueError("refit: baseline='user' (leave-one-out) needs samples_per_user >= 2")
        if self.kl_coef < 0 or self.elbo_coef < 0:
            raise ValueError(f"refit: kl_coef={self.kl_coef}, elbo_coef={self.elbo_coef}; expected >= 0")


class ReFiT(ChainFinetuner):
    """REINFORCE on the denoising chain with a per-user / batch baseline (see the module docstring)."""

    name = "refit"
    config: ReFiTConfig

    def _update(self, x_start: Tensor, ctx: Any, users: Tensor) -> dict[str, Tensor]:
        c = self.config
        std = float(c.explore_std)
        start_state = self.generator.get_state()
        prefix, suffix = split_steps(self.model.steps, c.explore_steps)
        # deterministic prefix once, no gradient (documented): the rollout and the replay both start here
        x_branch = run_prefix(self.model, self.policy, x_start, prefix)
        x0, _, _ = sample_chain(self.model, self.policy, x_branch, std, self.generator, c.explore_steps,
                                k=c.samples_per_user, prefix_done=True)
        rewards = self.bridge.reward(x0, ctx)
        adv = self.bridge.ungrouped(group_advantages(self.bridge.grouped(rewards), c.baseline,
                                                     c.normalize_advantages, c.advantage_clip))
        # Replay the chain with gradients: same generator stream and unchanged weights -> the same states.
        self.generator.set_state(start_state)
        self.optimizer.zero_grad(set_to_none=True)
        x = x_branch
        pg_total = torch.zeros((), device=self.device)
        kl_total = torch.zeros((), device=self.device)
        k = c.samples_per_user
        n_chains = adv.shape[0]
        for i, t in enumerate(suffix):
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
                 "pg_loss": pg_total, "kl": kl_total}
        if c.elbo_coef > 0:
            elbo = self._elbo_loss(users)
            (c.elbo_coef * elbo).backward()
            stats["elbo"] = elbo.detach()
        if c.max_grad_norm is not None:
            stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
        self.optimizer.step()
        return stats


register_agent("refit", ReFiTConfig, ReFiT)
