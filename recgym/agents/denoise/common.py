"""What the denoising-chain fine-tuners (ReFiT, DDPO, RWFT) share: their config, their agent plumbing and the
pure-torch pieces of their losses.

The reverse diffusion chain of a DiffRec denoiser is treated as an MDP (as in ReFiT, "Fine-Tuning
Diffusion-Based Recommender Systems via Reinforcement Learning with Reward Function Optimization",
arXiv:2511.06937): state (t, x_t), action x_{t-1}, terminal reward r(x_0). The policy is a Gaussian
``N(mu_theta(x_t, t), std_t^2 I)`` around the trainable denoiser's posterior mean, with either the model's own
posterior std at each step (``explore_std=None``: ReFiT's MDP, every step the pre-trained model's reverse
Gaussian) or a fixed exploration std (``explore_std=0.02``: recgym's last-step variant).

Log-prob reduction over items. ``reduce="mean"`` (the default everywhere in recgym) averages the per-item
Gaussian log-densities, as DDPO does over pixels, so the per-step log-prob and every loss built on it are
O(1) whatever the catalogue size; PPO's clip range (1e-4 in DDPO) and the KL weight are then
catalogue-independent. ``reduce="sum"`` is the exact log-density of the n_items-dimensional Gaussian; it
multiplies every policy-gradient term by n_items (with Adam this mostly cancels, but it changes the balance with
the regularisers and the meaning of the PPO ratio).

`ChainFinetunerConfig` holds the fields the three algorithms share (each algorithm's config adds only its own);
`ChainFinetuner` is the agent around a trainable copy of the env's denoiser (sampling, model selection on
validation, save / load) and `DenoiseBridge` (`recgym.agents.denoise.bridge`, importable from here too) what it
takes from a ``DiffusionDenoise-*`` env. The loss pieces (`gaussian_log_prob`, `group_advantages`, `reinforce_loss`, `ppo_clip_loss`, `exp_reward_weights`,
`sample_chain`, ...) are functions of tensors only (no env, no host round-trip), so they run on any device and
are unit-tested on hand-computed small Gaussians.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from recgym.agents.base import AgentConfig, BudgetUnit
from recgym.agents.denoise.bridge import DenoiseBridge

_LOG_2PI = math.log(2.0 * math.pi)
SELECT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


@dataclass
class ChainFinetunerConfig(AgentConfig):
    """Settings ReFiT, DDPO and RWFT share; ``learn``'s budget counts iterations (one batch of chains each).

    Exploration: ``samples_per_user`` chains per user, Gaussian noise on the last ``explore_steps`` transitions
    (None: all T); the earlier ones follow the posterior mean. The noise std is ``explore_std`` at every
    stochastic step, or, with ``explore_std=None``, the frozen model's posterior std of that step (DiffRec's
    clipped posterior variance). The defaults here (last step only, std 0.02, lr 1e-4) are the last-step
    variant DDPO and RWFT use and ``refit_lastep`` keeps; ``refit`` overrides them with the paper's MDP (see
    `recgym.agents.denoise.refit`). Model selection: every ``eval_every`` iterations (0: never) the policy is
    scored on the whole validation split (all users with validation items; ``eval_episodes`` is not used) by
    ``select_metric``; with ``keep_best`` the best weights (the pre-trained ones included, scored at
    iteration 0) are restored at the end of `learn`. ``test_at_end``: after that, score the kept weights and
    the pre-trained model on the test split, per user, and record the means and the paired differences with
    their 95% interval (`ChainFinetuner.final_report`). ``device`` must be the env's (None: the env's).
    """

    budget_unit: ClassVar[BudgetUnit] = "iterations"

    eval_every: int = 20
    iterations: int = 200  # the default budget of `learn`
    lr: float = 1e-4
    samples_per_user: int = 32
    explore_std: float | None = 0.02
    explore_steps: int | None = 1
    log_prob_reduce: str = "mean"
    max_grad_norm: float | None = 1.0
    select_metric: str = "recall@20"
    keep_best: bool = True
    test_at_end: bool = False
    log_every: int = 1
    device: str | None = None

    agent: ClassVar[str] = "chain"  # the agent name that errors name

    def __post_init__(self) -> None:
        agent = self.agent
        for name in ("iterations", "samples_per_user", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "iterations" else 1):
                raise ValueError(f"{agent}: {name}={v!r}; expected a positive integer")
        if not self.lr > 0:
            raise ValueError(f"{agent}: lr={self.lr}; expected > 0")
        if self.explore_std is not None and not self.explore_std > 0:
            raise ValueError(f"{agent}: explore_std={self.explore_std}; expected > 0 (or None: the model's "
                             "posterior std)")
        if self.log_prob_reduce not in ("mean", "sum"):
            raise ValueError(f"{agent}: log_prob_reduce={self.log_prob_reduce!r}; valid values: ['mean', 'sum']")
        if self.eval_every < 0:
            raise ValueError(f"{agent}: eval_every={self.eval_every}; expected >= 0")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"{agent}: select_metric={self.select_metric!r}; valid values: {list(SELECT_METRICS)}")


def _reduce_items(values: Tensor, reduce: str) -> Tensor:
    if reduce == "mean":
        return values.mean(dim=-1)
    if reduce == "sum":
        return values.sum(dim=-1)
    raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")


def gaussian_log_prob(x: Tensor, mean: Tensor, std: float | Tensor, reduce: str = "mean") -> Tensor:
    """Log-density of ``x`` under ``N(mean, std^2 I)``, reduced over the last (item) dim by ``reduce``.

    ``x`` and ``mean``: [..., n_items]; ``std``: a positive float or a tensor broadcastable to them.
    Returns [...]: the sum (exact joint log-density) or the mean of the per-item log-densities.
    """
    std_t = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    if bool((std_t <= 0).any()):
        raise ValueError(f"std must be positive, got {std}")
    var = std_t * std_t
    per_item = -0.5 * ((x - mean) ** 2 / var + torch.log(var) + _LOG_2PI)
    return _reduce_items(per_item, reduce)


def gaussian_kl_same_std(mean_p: Tensor, mean_q: Tensor, std: float | Tensor, reduce: str = "mean") -> Tensor:
    """KL(N(mean_p, std^2) || N(mean_q, std^2)) per row: ``(mean_p - mean_q)^2 / (2 std^2)`` reduced over items."""
    std_t = torch.as_tensor(std, dtype=mean_p.dtype, device=mean_p.device)
    return _reduce_items((mean_p - mean_q) ** 2 / (2.0 * std_t * std_t), reduce)


BASELINES = ("user", "user_mean", "greedy", "batch", "none")


def group_advantages(
    rewards: Tensor,
    baseline: str = "user",
    normalize: bool = False,
    clip: float | None = None,
    eps: float = 1e-8,
    reference: Tensor | None = None,
) -> Tensor:
    """Advantages for rewards shaped [n_users, k] (k samples of the chain per user).

    ``baseline``:
      - ``"user"``: leave-one-out mean of the user's other k-1 samples (RLOO; unbiased, needs k >= 2);
      - ``"user_mean"``: the user's mean over all k samples (DDPO's per-prompt statistics);
      - ``"greedy"``: ``reference`` [n_users], a per-user value computed without the samples (the reward of the
        user's deterministic posterior-mean chain); unbiased for any k, and 0 wherever the noise did not change
        the top-K list;
      - ``"batch"``: the mean over the whole batch;
      - ``"none"``: no baseline (plain REINFORCE).
    ``normalize``: divide by the std of the same group the baseline came from (per user for the user baselines,
    the batch for ``"batch"``/``"none"``; for ``greedy`` the root mean square of the user's advantages, or of the
    batch's when k = 1), plus ``eps``. ``clip``: clamp the result to [-clip, clip].
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [n_users, k_samples], got shape {tuple(rewards.shape)}")
    k = rewards.shape[1]
    if (reference is not None) != (baseline == "greedy"):
        raise ValueError("baseline='greedy' needs reference= (one value per user); the others take none")
    if baseline == "greedy":
        assert reference is not None
        if reference.shape != rewards.shape[:1]:
            raise ValueError(f"reference must be [n_users]={tuple(rewards.shape[:1])}, got {tuple(reference.shape)}")
        adv = rewards - reference[:, None]
        if normalize:  # by the root mean square of the advantages (0 only where they all are)
            scale = adv.pow(2).mean(dim=1, keepdim=True).sqrt() if k > 1 else adv.pow(2).mean().sqrt()
            adv = adv / (scale + eps)
        return adv.clamp(-clip, clip) if clip is not None else adv
    if baseline == "user":
        if k < 2:
            raise ValueError("baseline='user' (leave-one-out) needs samples_per_user >= 2")
        total = rewards.sum(dim=1, keepdim=True)
        adv = rewards - (total - rewards) / (k - 1)
    elif baseline == "user_mean":
        adv = rewards - rewards.mean(dim=1, keepdim=True)
    elif baseline == "batch":
        adv = rewards - rewards.mean()
    elif baseline == "none":
        adv = rewards.clone()
    else:
        raise ValueError(f"baseline must be one of {list(BASELINES)}, got {baseline!r}")
    if normalize:
        if baseline in ("user", "user_mean"):
            scale = rewards.std(dim=1, unbiased=False, keepdim=True) if k > 1 else torch.ones_like(rewards[:, :1])
        else:
            scale = rewards.std(unbiased=False)
        adv = adv / (scale + eps)
    if clip is not None:
        adv = adv.clamp(-clip, clip)
    return adv


def reinforce_loss(step_log_probs: Tensor, advantages: Tensor) -> Tensor:
    """REINFORCE surrogate ``-mean_i[A_i * sum_t log pi(x_{t-1}^i | x_t^i)]``.

    ``step_log_probs``: [T, N] per-step log-probs (with grad); ``advantages``: [N] (treated as constants).
    Its gradient is the policy-gradient estimate ``-E[sum_t grad log p * A]`` (the ReFiT update).
    """
    if step_log_probs.dim() != 2 or advantages.shape != step_log_probs.shape[1:]:
        raise ValueError(
            f"step_log_probs must be [T, N] and advantages [N]; got {tuple(step_log_probs.shape)} "
            f"and {tuple(advantages.shape)}"
        )
    return -(advantages.detach() * step_log_probs.sum(dim=0)).mean()


def ppo_clip_loss(
    log_prob_new: Tensor, log_prob_old: Tensor, advantages: Tensor, clip_range: float
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO clipped surrogate over per-step importance ratios (DDPO).

    All inputs share one shape (e.g. [T, N]: one ratio per denoising step and chain). Returns
    ``(loss, clip_fraction, approx_kl)``; loss = mean of ``max(-A r, -A clip(r, 1-eps, 1+eps))`` with
    ``r = exp(new - old)``; approx_kl = mean of ``0.5 (new - old)^2``.
    """
    if clip_range <= 0:
        raise ValueError(f"clip_range must be positive, got {clip_range}")
    log_ratio = log_prob_new - log_prob_old.detach()
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    approx_kl = 0.5 * (log_ratio.detach() ** 2).mean()
    return loss, clip_fraction, approx_kl


def exp_reward_weights(rewards: Tensor, temperature: float, normalize: str = "batch") -> Tensor:
    """Exponential reward weights ``w = exp(r / lambda)``, normalised to mean 1.

    The weights of "Robust Post-Training for Generative Recommenders: Why Exponential Reward-Weighted SFT
    Outperforms RLHF" (arXiv:2603.10279).

    ``rewards``: [n_users, k]. ``normalize="batch"``: ``w_i = N softmax(r / lambda)_i`` over all N = n_users * k
    chains (so the weighted loss keeps the scale of the unweighted one); ``"user"``: the same within each user's
    k samples (only the relative quality of a user's own samples matters). Computed stably (max subtracted).
    """
    if temperature <= 0:
        raise ValueError(f"temperature (lambda) must be positive, got {temperature}")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [n_users, k_samples], got shape {tuple(rewards.shape)}")
    z = rewards / temperature
    if normalize == "batch":
        return torch.softmax(z.reshape(-1), dim=0).reshape(z.shape) * z.numel()
    if normalize == "user":
        return torch.softmax(z, dim=1) * z.shape[1]
    raise ValueError(f"normalize must be 'batch' or 'user', got {normalize!r}")


# ----------------------------------------------------------------------------------------------- chains


def chain_stds(model: Any, explore_std: float | None) -> list[float]:
    """The noise std of each reverse step, indexed by DiffRec's step ``t`` (0..T-1).

    ``explore_std=None``: the model's own posterior std ``exp(0.5 * posterior_log_variance_clipped[t])`` (so
    the last step, t = 0, uses the clipped value of t = 1, as DiffRec's table does); a float: that std at every
    step.
    """
    if explore_std is None:
        return [float(model.posterior_std(t)) for t in range(int(model.steps))]
    return [float(explore_std)] * int(model.steps)


def _std_at(std: float | Sequence[float], t: int) -> float:
    return float(std) if isinstance(std, (int, float)) else float(std[t])


def chain_steps(steps: int) -> list[int]:
    """The reverse-chain step indices in order: ``T-1, ..., 0`` (DiffRec's convention, see `DiffRec`)."""
    return list(reversed(range(int(steps))))


def split_steps(steps: int, explore_steps: int | None) -> tuple[list[int], list[int]]:
    """``(deterministic prefix, stochastic suffix)`` of the chain's step indices.

    The last ``explore_steps`` transitions (all of them when None) are the policy's stochastic actions; the
    ones before follow the posterior mean deterministically (DiffRec inference) and carry no log-prob.
    """
    order = chain_steps(steps)
    e = len(order) if explore_steps is None else int(explore_steps)
    if not 1 <= e <= len(order):
        raise ValueError(f"explore_steps={explore_steps} must be in [1, T={len(order)}] (or None for all)")
    return order[: len(order) - e], order[len(order) - e:]


@torch.no_grad()
def run_prefix(model: Any, policy: torch.nn.Module, x_start: Tensor, prefix: list[int]) -> Tensor:
    """The deterministic part of the chain (posterior means), no gradient."""
    x = x_start
    for t in prefix:
        x = model.posterior_mean(x, t, denoiser=policy)
    return x


@torch.no_grad()
def sample_chain(
    model: Any,
    policy: torch.nn.Module,
    x_start: Tensor,
    std: float | Sequence[float],
    generator: torch.Generator,
    explore_steps: int | None = None,
    store: bool = False,
    reduce: str = "mean",
    k: int = 1,
    prefix_done: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Roll the Gaussian exploration policy down the chain from ``x_start`` (x_T, [B, I]) without gradients,
    ``k`` samples per row (sample-major: chain ``n = j * B + b``).

    Deterministic posterior means for the prefix (`split_steps`, computed once per row), then ``x_{t-1} =
    mu_policy(x_t, t) + std_t * eps`` for each of the last ``explore_steps`` steps (``std``: one float for
    every step, or a per-step sequence indexed by DiffRec's t, `chain_stds`) (the very last one included,
    so the terminal scores are explored); the chains branch into ``k`` copies at the first stochastic step
    (whose mean is shared by the copies). Returns ``(x_final [k*B, I], states, log_probs)``; with ``store``:
    ``states`` [E+1, k*B, I] (the state entering the first stochastic step, repeated, then each sampled
    x_{t-1}) and ``log_probs`` [E, k*B] of each stochastic transition under the sampling policy; else both
    None (the chain can be replayed from the generator state instead). ``prefix_done``: ``x_start`` is already
    the state entering the first stochastic step (`run_prefix` was called by the caller).
    """
    prefix, suffix = split_steps(model.steps, explore_steps)
    x = x_start if prefix_done else run_prefix(model, policy, x_start, prefix)
    states = [x.repeat(k, 1)] if store else None
    lps = [] if store else None
    for i, t in enumerate(suffix):
        s_t = _std_at(std, t)
        mu = model.posterior_mean(x, t, denoiser=policy)
        if i == 0 and k > 1:
            eps = torch.randn((mu.shape[0] * k, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
            if store:
                mu = mu.repeat(k, 1)
                x_prev = mu + s_t * eps
            else:  # in place, without a K-times repeated mean
                x_prev = eps.mul_(s_t).view(k, -1, mu.shape[1]).add_(mu[None]).view(-1, mu.shape[1])
        else:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            x_prev = mu + s_t * eps
        if store:
            states.append(x_prev)
            lps.append(gaussian_log_prob(x_prev, mu, s_t, reduce))
        x = x_prev
    if store:
        return x, torch.stack(states), torch.stack(lps)
    return x, None, None


# ----------------------------------------------------------------------------------------------- agents


def paired_report(ours: dict[str, Any], ref: dict[str, Any], which: str = "test",
                  ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    """Per-user metrics of a model (``ours``) against the pre-trained one (``ref``), both from
    `recgym.recommenders.ranking.evaluate_scores_per_user` on split ``which``: for each metric M,
    ``{which}_M``, ``{which}_M_pretrained``, the paired difference ``{which}_M_diff`` and its 95% interval
    ``_diff_low`` / ``_diff_high`` (`recgym.metrics.paired_difference`), and ``{which}_users``."""
    from recgym.metrics import paired_difference

    if not np.array_equal(ours["users"], ref["users"]):
        raise ValueError("paired_report: the two evaluations cover different users")
    out: dict[str, float] = {f"{which}_users": float(len(ours["users"]))}
    for m in (f"{n}@{k}" for n in ("Recall", "NDCG") for k in ks):
        d = paired_difference(ours[m], ref[m])
        out[f"{which}_{m}"] = float(ours[m].mean())
        out[f"{which}_{m}_pretrained"] = float(ref[m].mean())
        out[f"{which}_{m}_diff"] = d["mean"]
        out[f"{which}_{m}_diff_low"] = d["ci_low"]
        out[f"{which}_{m}_diff_high"] = d["ci_high"]
    return out



def metric_value(metrics: dict[str, Any], name: str) -> float:
    """``metrics[name]`` matched case-insensitively (``recall@20`` finds ``Recall@20``)."""
    for k, v in metrics.items():
        if k.lower() == name.lower():
            return float(v)
    raise KeyError(f"metric {name!r} not in {sorted(metrics)}")


class ChainFinetuner:
    """Plumbing shared by ReFiT, DDPO and RWFT: the trainable copy of the env's denoiser, the optimiser,
    sampling a batch of chains, model selection on validation, logging, save/load, determinism.

    Subclasses implement ``_update(x_start, ctx, users) -> dict`` (one iteration, returns the scalars to log)
    and set ``name``. ``learn(env, budget)`` runs ``budget`` iterations (``None``: ``config.iterations``).
    """

    name = "chain"

    def __init__(self, env: Any, config: ChainFinetunerConfig) -> None:
        self.config = config
        self.bridge = DenoiseBridge(env, agent=self.name, samples_per_user=config.samples_per_user)
        self.device = self.bridge.device
        want = getattr(config, "device", None)
        if want is not None and torch.device(want).type != self.device.type:
            raise ValueError(f"{self.name}: device={want!r} but the env lives on {self.device}; the agent runs "
                             "on the env's device (leave device=None or make the env there)")
        self.model = self.bridge.model  # frozen pre-trained DiffRec (reference policy)
        self.policy = copy.deepcopy(self.model.denoiser).to(self.device)
        self.policy.eval()  # no dropout in the policy: its log-prob must be a function of (x_t, t) only
        for p in self.policy.parameters():
            p.requires_grad_(True)
        self.reference = self.model.denoiser
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)
        self.stds = chain_stds(self.model, config.explore_std)  # noise std per DiffRec step t
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(config.seed))
        self.iteration = 0
        self.history: list[dict[str, Any]] = []
        self.best_valid = float("-inf")
        self.best_state: dict[str, Tensor] | None = None
        self.best_iteration = 0
        # wall-clock cost of `learn` (updates + validations), the update part alone, and the total when the
        # best validation point was reached
        self.seconds = 0.0
        self.update_seconds = 0.0
        self.best_seconds = 0.0
        self._clock = time.perf_counter()  # restarted by `learn`
        self.final: dict[str, float] = {}
        self.training = True

    # -- acting -----------------------------------------------------------------------------------

    def act(self, obs: Any, info: dict[str, Any] | None = None) -> Tensor:
        """The next x_{t-1} for a batched ``latent``-mode observation: the fine-tuned posterior mean.

        Deterministic (DiffRec inference). ``obs["x_t"]`` [B, n_items], ``obs["t"]`` [B] (int step index).
        """
        x_t = torch.as_tensor(obs["x_t"], device=self.device, dtype=torch.float32)
        t = torch.as_tensor(obs["t"], device=self.device).long().reshape(-1)
        with torch.no_grad():
            return self.bridge.env.posterior_mean(x_t, t, denoiser=self.policy)

    def scores(self, history: Tensor) -> Tensor:
        """DiffRec inference with the fine-tuned denoiser: item scores [B, n_items] for input rows."""
        return self.model.predict(history.to(self.device), denoiser=self.policy)

    def evaluate(self, which: tuple[str, ...] = ("valid", "test")) -> dict[str, dict[str, float]]:
        """DiffRec-protocol Recall/NDCG@10/20 of the current policy on valid and/or test."""
        return self.bridge.evaluate(self.policy, which)

    # -- learning ---------------------------------------------------------------------------------

    def _sample_users(self) -> tuple[Tensor, Tensor, Any]:
        """The env's next batch of episodes: ``(users [B], x_T [B, I], ctx)``."""
        return self.bridge.batch()

    def _update(self, x_start: Tensor, ctx: Any, users: Tensor) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _elbo_loss(self, users: Tensor) -> Tensor:
        """DiffRec's denoising loss (uniform t, SNR-difference weights like pre-training) on the users' rows."""
        x0 = self.bridge.train_rows(users)
        t = torch.randint(0, self.model.steps, (x0.shape[0],), generator=self.generator, device=self.device)
        noise = torch.randn(x0.shape, generator=self.generator, device=self.device)
        x_t = self.model.schedule.q_sample(x0, t, noise)
        mse = ((self.policy(x_t, t) - x0) ** 2).mean(-1)
        if self.model.config.reweight:
            w = (self.model.schedule.snr(t - 1) - self.model.schedule.snr(t)).to(torch.float32)
            w = torch.where(t == 0, torch.ones_like(w), w)
            mse = w * mse
        return mse.mean()

    def learn(self, env: Any = None, budget: int | None = None, logger: Any = None, eval_env: Any = None) -> None:
        """Run ``budget`` iterations (default ``config.iterations``); evaluate on valid every ``eval_every``
        iterations and keep the best weights (``keep_best``).

        ``eval_env`` is accepted for the `Agent` protocol and not used: model selection and evaluation rank the
        env's own validation / test splits (the DiffRec protocol), not episodes of another env.
        """
        from recgym.agents.common import base_env, log_scalars, progress

        c = self.config
        n_iter = int(c.iterations if budget is None else budget)
        if n_iter < 0:
            raise ValueError(f"{self.name}: budget must be >= 0 iterations, got {n_iter}")
        if env is not None and base_env(env) is not self.bridge.env:
            raise ValueError(f"{self.name}: learn() got a different env than the one the agent was made for")
        if self.iteration == 0:
            self.bridge.seed(int(c.seed))
        self._clock = time.perf_counter()
        if c.eval_every > 0 and self.best_state is None and self.iteration == 0:
            self._validate(logger)
        bar = progress(n_iter, self.name, c.progress)
        for _ in range(n_iter):
            t0 = time.perf_counter()
            users, x_start, ctx = self._sample_users()
            stats = self._update(x_start, ctx, users)
            self.update_seconds += time.perf_counter() - t0
            self.iteration += 1
            if logger is not None and (self.iteration % c.log_every == 0 or self.iteration == 1):
                log_scalars(logger, {k: float(v) for k, v in stats.items()}, self.iteration, prefix="train/")
            if c.eval_every > 0 and self.iteration % c.eval_every == 0:
                self._validate(logger)
            bar.update(1)
        bar.close()
        if c.eval_every > 0 and self.iteration % c.eval_every != 0:
            self._validate(logger)
        self._tick()
        if c.keep_best and self.best_state is not None:
            self.policy.load_state_dict(self.best_state)
        if c.test_at_end:
            self.final = self.final_report()
            if math.isfinite(self.best_valid):  # the kept weights' validation score
                self.final = {f"valid_{c.select_metric}": self.best_valid, **self.final}
            log_scalars(logger, self.final, self.iteration)
            self.history.append({"iteration": self.iteration, **self.final})

    def final_report(self, which: str = "test", ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
        """The current weights against the pre-trained model on a split, user by user (all users with ground
        truth there): for each metric M, ``{which}_M`` (ours), ``{which}_M_pretrained``, and the paired
        difference ``{which}_M_diff`` with its 95% interval ``_diff_low`` / ``_diff_high``
        (`recgym.metrics.paired_difference`); plus ``{which}_users`` and the cost: ``best_iteration``,
        ``seconds_to_best`` (wall seconds of `learn`, updates and validations, until the best validation
        point), ``seconds_total``, ``user_episodes_to_best`` (chains sampled until then: iterations x users x
        samples per user) and ``seconds_per_user_episode`` (update time per sampled chain)."""
        ours = self.bridge.evaluate_per_user(self.policy, which, ks)
        ref = self.bridge.evaluate_per_user(None, which, ks)
        per_iter = self.bridge.num_envs * self.config.samples_per_user
        return {"best_iteration": float(self.best_iteration), "seconds_to_best": self.best_seconds,
                "seconds_total": self.seconds, "user_episodes_to_best": float(self.best_iteration * per_iter),
                "seconds_per_user_episode": self.update_seconds / max(1, self.iteration * per_iter),
                **paired_report(ours, ref, which, ks)}

    def _tick(self) -> None:
        now = time.perf_counter()
        self.seconds += now - self._clock
        self._clock = now

    def _validate(self, logger: Any) -> float:
        from recgym.agents.common import log_scalars

        ev = self.evaluate(("valid",))["valid"]
        self._tick()
        value = float(metric_value(ev, self.config.select_metric))
        log_scalars(logger, {k: v for k, v in ev.items() if k != "users"}, self.iteration, prefix="valid/")
        self.history.append({"iteration": self.iteration, **{k: float(v) for k, v in ev.items()},
                             "seconds": self.seconds})
        if value > self.best_valid:
            self.best_valid = value
            self.best_seconds = self.seconds
            self.best_iteration = self.iteration
            self.best_state = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        return value

    # -- persistence ------------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """Policy weights, optimiser, generator state, best-so-far bookkeeping and config (atomic write)."""
        from recgym.agents.common import save_checkpoint

        save_checkpoint(path, {
            "agent": self.name,
            "config": self.config,
            "n_items": int(self.model.n_items),
            "policy": {k: v.detach().cpu() for k, v in self.policy.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state().cpu(),
            "iteration": self.iteration,
            "best_valid": self.best_valid,
            "best_iteration": self.best_iteration,
            "best_state": None if self.best_state is None
            else {k: v.detach().cpu() for k, v in self.best_state.items()},
            "history": self.history,
            "final": self.final,
            "seconds": [self.seconds, self.update_seconds, self.best_seconds],
        }, env=self.bridge.env)

    def load(self, path: str) -> None:
        """Restore what `save` wrote; the checkpoint must come from the same agent and catalogue size."""
        from recgym.agents.common import load_checkpoint

        payload = load_checkpoint(path, self.name, env=self.bridge.env)
        if int(payload["n_items"]) != int(self.model.n_items):
            raise ValueError(f"{self.name}: checkpoint {path!r} has n_items={payload['n_items']}, "
                             f"the env has {self.model.n_items}")
        self.policy.load_state_dict(payload["policy"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.generator.set_state(payload["generator"].to(self.generator.get_state().device))
        self.iteration = int(payload["iteration"])
        self.best_valid = float(payload["best_valid"])
        self.best_iteration = int(payload["best_iteration"])
        bs = payload.get("best_state")
        self.best_state = None if bs is None else {k: v.to(self.device) for k, v in bs.items()}
        self.history = list(payload.get("history", []))
        self.final = dict(payload.get("final", {}))
        self.seconds, self.update_seconds, self.best_seconds = payload.get("seconds", [0.0, 0.0, 0.0])
