"""What the denoising-chain fine-tuners (ReFiT, DDPO, RWFT) share: their config, their agent plumbing and the
pure-torch pieces of their losses.

The reverse diffusion chain of a DiffRec denoiser is treated as an MDP (as in ReFiT, "Fine-Tuning
Diffusion-Based Recommender Systems via Reinforcement Learning with Reward Function Optimization",
arXiv:2511.06937): state (t, x_t), action x_{t-1}, terminal reward r(x_0). The policy is a Gaussian ``N(mu_theta(x_t, t), std^2 I)`` around the trainable
denoiser's posterior mean with an *exploration* std (DiffRec's own posterior std, ~8e-4, is far too small to
explore with).

Log-prob reduction over items. ``reduce="mean"`` (the default everywhere in recgym) averages the per-item
Gaussian log-densities, as DDPO does over pixels, so the per-step log-prob and every loss built on it are
O(1) whatever the catalogue size; PPO's clip range (1e-4 in DDPO) and the KL weight are then
catalogue-independent. ``reduce="sum"`` is the exact log-density of the n_items-dimensional Gaussian; it
multiplies every policy-gradient term by n_items (with Adam this mostly cancels, but it changes the balance with
the regularisers and the meaning of the PPO ratio).

`ChainFinetunerConfig` holds the fields the three algorithms share (each algorithm's config adds only its own);
`ChainFinetuner` is the agent around a trainable copy of the env's denoiser (sampling, model selection on
validation, save / load) and `DenoiseBridge` what it takes from a ``DiffusionDenoise-*`` env. The loss pieces
(`gaussian_log_prob`, `group_advantages`, `reinforce_loss`, `ppo_clip_loss`, `exp_reward_weights`,
`sample_chain`, ...) are functions of tensors only (no env, no host round-trip), so they run on any device and
are unit-tested on hand-computed small Gaussians.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from recgym.agents.base import AgentConfig, BudgetUnit

_LOG_2PI = math.log(2.0 * math.pi)
SELECT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


@dataclass
class ChainFinetunerConfig(AgentConfig):
    """Settings ReFiT, DDPO and RWFT share; ``learn``'s budget counts iterations (one batch of chains each).

    Exploration: ``samples_per_user`` chains per user, Gaussian noise of std ``explore_std`` on the last
    ``explore_steps`` transitions (None: all T); the earlier ones follow the posterior mean (the reasons and
    measurements are in docs/DESIGN.md). ``lr`` 1e-4 (Adam): ReFiT's published 1e-3 random-walked the weights
    away from the pre-trained optimum here. Model selection: every ``eval_every`` iterations (0: never) the
    policy is scored on the validation split by ``select_metric`` (the whole split, so ``eval_episodes`` is not
    used); with ``keep_best`` the best weights are restored at the end of `learn`. ``device`` must be the env's
    (None: the env's).
    """

    budget_unit: ClassVar[BudgetUnit] = "iterations"

    eval_every: int = 20
    iterations: int = 200  # the default budget of `learn`
    lr: float = 1e-4
    samples_per_user: int = 32
    explore_std: float = 0.02
    explore_steps: int | None = 1
    log_prob_reduce: str = "mean"
    max_grad_norm: float | None = 1.0
    select_metric: str = "recall@20"
    keep_best: bool = True
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
        if not self.explore_std > 0:
            raise ValueError(f"{agent}: explore_std={self.explore_std}; expected > 0")
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


def group_advantages(
    rewards: Tensor,
    baseline: str = "user",
    normalize: bool = False,
    clip: float | None = None,
    eps: float = 1e-8,
) -> Tensor:
    """Advantages for rewards shaped [n_users, k] (k samples of the chain per user).

    ``baseline``:
      - ``"user"``: leave-one-out mean of the user's other k-1 samples (RLOO; unbiased, needs k >= 2);
      - ``"user_mean"``: the user's mean over all k samples (DDPO's per-prompt statistics);
      - ``"batch"``: the mean over the whole batch;
      - ``"none"``: no baseline (plain REINFORCE).
    ``normalize``: divide by the std of the same group the baseline came from (per user for the user baselines,
    the batch for ``"batch"``/``"none"``), plus ``eps``. ``clip``: clamp the result to [-clip, clip].
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [n_users, k_samples], got shape {tuple(rewards.shape)}")
    k = rewards.shape[1]
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
        raise ValueError(f"baseline must be 'user', 'user_mean', 'batch' or 'none', got {baseline!r}")
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
    std: float,
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
    mu_policy(x_t, t) + std * eps`` for each of the last ``explore_steps`` steps (the very last one included,
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
        mu = model.posterior_mean(x, t, denoiser=policy)
        if i == 0 and k > 1:
            eps = torch.randn((mu.shape[0] * k, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
            if store:
                mu = mu.repeat(k, 1)
                x_prev = mu + std * eps
            else:  # in place, without a K-times repeated mean
                x_prev = eps.mul_(std).view(k, -1, mu.shape[1]).add_(mu[None]).view(-1, mu.shape[1])
        else:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            x_prev = mu + std * eps
        if store:
            states.append(x_prev)
            lps.append(gaussian_log_prob(x_prev, mu, std, reduce))
        x = x_prev
    if store:
        return x, torch.stack(states), torch.stack(lps)
    return x, None, None


# ----------------------------------------------------------------------------------------------- agents


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
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(config.seed))
        self.iteration = 0
        self.history: list[dict[str, Any]] = []
        self.best_valid = float("-inf")
        self.best_state: dict[str, Tensor] | None = None
        self.best_iteration = 0
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
        if c.eval_every > 0 and self.best_state is None and self.iteration == 0:
            self._validate(logger)
        bar = progress(n_iter, self.name, c.progress)
        for _ in range(n_iter):
            users, x_start, ctx = self._sample_users()
            stats = self._update(x_start, ctx, users)
            self.iteration += 1
            if logger is not None and (self.iteration % c.log_every == 0 or self.iteration == 1):
                log_scalars(logger, {k: float(v) for k, v in stats.items()}, self.iteration, prefix="train/")
            if c.eval_every > 0 and self.iteration % c.eval_every == 0:
                self._validate(logger)
            bar.update(1)
        bar.close()
        if c.eval_every > 0 and self.iteration % c.eval_every != 0:
            self._validate(logger)
        if c.keep_best and self.best_state is not None:
            self.policy.load_state_dict(self.best_state)

    def _validate(self, logger: Any) -> float:
        from recgym.agents.common import log_scalars

        ev = self.evaluate(("valid",))["valid"]
        value = float(metric_value(ev, self.config.select_metric))
        log_scalars(logger, {k: v for k, v in ev.items() if k != "users"}, self.iteration, prefix="valid/")
        self.history.append({"iteration": self.iteration, **{k: float(v) for k, v in ev.items()}})
        if value > self.best_valid:
            self.best_valid = value
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


class DenoiseBridge:
    """What the chain fine-tuners take from a ``DiffusionDenoise-*`` env (`recgym.envs.denoise`).

    - ``batch()``: ``env.reset()`` draws the next ``num_envs`` users and their held-out reward items (the env's
      own per-episode randomness, seeded once by ``seed``); returns ``(users [B], x_T [B, I], None)``. The
      agents run ``K = samples_per_user`` chains per user, sample-major (chain ``n = k * B + b``).
    - ``reward(x0)``: the env's terminal reward of each chain's final scores (``env.terminal_reward``, called
      once per sample so all K samples of a user are scored against the same held-out items), as
      ``[K*B]``; ``grouped`` / ``ungrouped`` convert between that layout and ``[B, K]``.

    The chain itself is run by the agent: in the env's ``latent`` mode the transition is the identity on the
    action (``x_{t-1} = a``), so sampling ``x_{t-1}`` and stepping the env would only copy tensors. The env's
    reward kind (``reward="racs"`` default, ``"ra"``, ``"ndcg"``) and its K, alpha, holdout are used as made.
    """

    def __init__(self, env: Any, agent: str, samples_per_user: int) -> None:
        inner = getattr(env, "unwrapped", env)
        need = ("model", "terminal_reward", "evaluate", "posterior_mean", "reset")
        if any(not hasattr(inner, a) for a in need):
            raise TypeError(f"{agent}: needs a batched DiffusionDenoise env (recgym.envs.denoise, made with "
                            f"gym.make_vec('DiffusionDenoise-<D>-v0', num_envs=B)); got {type(inner).__name__}")
        self.env = inner
        self.model = inner.model
        self.device = torch.device(inner.device)
        self.k = int(samples_per_user)
        self.num_envs = int(inner.num_envs)
        self.n_items = int(inner.n_items)
        self._seed: int | None = None
        self.eval_splits: Any = None  # a DiffRecSplits to evaluate on instead of the env's (e.g. a user subset)

    def seed(self, seed: int) -> None:
        """Seed the env's episode stream (used by the first `batch`)."""
        self._seed = int(seed)

    def batch(self) -> tuple[Tensor, Tensor, None]:
        obs, _ = self.env.reset(seed=self._seed)
        self._seed = None
        x_start = obs["x_t"] if isinstance(obs, dict) else obs[:, : self.n_items]
        return self.env.user.clone(), x_start.clone(), None

    def reward(self, x0: Tensor, ctx: Any = None) -> Tensor:
        per = x0.view(self.k, self.num_envs, self.n_items)
        return torch.cat([self.env.terminal_reward(per[i])["reward"] for i in range(self.k)])

    def grouped(self, values: Tensor) -> Tensor:
        """``[K*B]`` (sample-major) -> ``[B, K]`` (one row per user)."""
        return values.view(self.k, self.num_envs).T

    def ungrouped(self, values: Tensor) -> Tensor:
        """``[B, K]`` -> ``[K*B]`` (sample-major)."""
        return values.T.reshape(-1)

    def train_rows(self, users: Tensor) -> Tensor:
        """The users' full binary training rows (the DiffRec loss's x0)."""
        return self.env.resources.train[users]

    def evaluate(self, policy: torch.nn.Module, which: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """DiffRec protocol on the env's splits (or on ``eval_splits`` when set)."""
        if self.eval_splits is None:
            return self.env.evaluate(policy, which=tuple(which))
        from recgym.recommenders.diffrec import evaluate_diffrec

        return evaluate_diffrec(self.model, self.eval_splits, (10, 20), denoiser=policy, which=tuple(which))
