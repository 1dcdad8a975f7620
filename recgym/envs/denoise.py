"""`DiffusionDenoiseEnv`: the reverse diffusion chain of a pre-trained DiffRec as a batched episodic MDP.

One episode = one reverse chain for one user; the batch holds ``num_envs`` users on the device (the MDP of
ReFiT, "Fine-Tuning Diffusion-Based Recommender Systems via Reinforcement Learning with Reward Function
Optimization", arXiv:2511.06937). The env owns the data, the frozen pre-trained DiffRec, the masks and the
reward. The model comes from the cache; on first use it is pre-trained and cached
(`recgym.recommenders.fit_or_load_diffrec`), which is announced in one line (dataset, expected time, cache
file; through logging when the application configured it, else on stderr) and followed by a progress bar
(``progress=False`` hides the bar). ``config=`` picks the model: a `DiffRecConfig`, or a dict of overrides of
the dataset's default one (e.g. ``{"selection": "full"}``); ``model=`` passes a trained `DiffRec` instead.

**Time.** ``obs["t"]`` counts the steps left: the episode starts at ``t = T`` with ``x_T`` and each step
maps ``x_t`` to ``x_{t-1}``; after T steps ``x_0`` (the final item scores) is reached and the episode
terminates. The frozen network is called with DiffRec's step index ``t - 1`` (0..T-1); every public method
of this env takes the observation's ``t`` (1..T), so ``env.log_prob(x_prev, obs["x_t"], obs["t"])`` is
right as it stands.

**Start.** ``x_T`` is the user's input history (clean, as DiffRec's inference does), or, with
``start_noise=s > 0``, the history noised forward to DiffRec step ``s - 1`` (per-env deterministic noise).

**Actions** (``action_mode``):

- ``latent``: the action is ``x_{t-1}`` itself, float32 ``[B, n_items]`` (unbounded, must be finite).
- ``residual``: ``x_{t-1} = mu(x_t, t) + action_scale * a``, ``a`` in ``[-1, 1]^n_items``, ``mu`` the frozen
  model's posterior mean.
- ``guidance``: ``x_{t-1} = mu(x_t, t) + action_scale * a @ V_G``, ``a`` in ``[-1, 1]^G``, ``V_G`` the top-G
  right singular vectors of the binary training matrix (unit rows, sign fixed so each row's largest-magnitude
  entry is positive), G = ``guidance_dim`` (32).

In the residual and guidance modes, actions outside ``[-1, 1]`` are clamped (documented, as SB3 does); NaN or
inf in any mode raises a ValueError naming the env and the count (``validate_actions=False`` skips the check
and its device sync). With the frozen model acting (``latent`` with ``a = env.posterior_mean(x_t, t)``, or
action 0 in the other two modes) ``x_0`` equals ``DiffRec.predict`` on the input history bit for bit.

**Reward items** (never valid or test items unless asked). ``reward_items="train"`` (default, ReFiT's
setting: fine-tuning uses the observed training interactions only): the input is the user's full training row,
as in evaluation, and the reward items are those same observed items; the top-K list ranks all items (nothing
is excluded: the targets are the input). ``"holdout"``: each episode hides a random ``holdout_frac`` of the
user's training items from the input (at least one hidden, at least one kept; redrawn every episode from the
env's per-episode randomness) and scores their recovery; only users with at least 2 training items are drawn.
``"valid"``: the input is the full training row and the validation split is scored (users with validation
items). With ``holdout`` and ``valid`` the ranking excludes the input items.

**Reward** (at the last step only, 0 before). With ``L`` the top-K of ``x_0`` and ``R`` the reward items,
``S(u)`` the ``n_similar`` (10) users most similar to u by cosine similarity of binary training rows (u
excluded, positive similarity only) and ``I_v`` the training items of v:

- ``reward="racs"`` (ReFiT's RACS, counting hits): ``alpha * N_K + (1 - alpha) * N_simK`` with ``N_K = |L ∩
  R|`` (true positives in the user's top K) and ``N_simK = mean_{v in S(u)} |L ∩ I_v|`` (true positives of the
  same list for the similar users, averaged over them; 0 without a neighbour), alpha 0.5, K 20. Both terms
  count hits, so the reward lies in [0, K]. ``"ra"``: ``N_K`` alone (the paper's r_RA).
- ``reward="racs_norm"`` / ``"ra_norm"`` (recgym's earlier, normalised form): ``N_K = |L ∩ R| / min(|R|, K)``;
  ``N_simK = sum_{i in L} w_u(i) / max_{|L'| = K} sum_{i in L'} w_u(i)`` with cosine-weighted item weights
  ``w_u(i) = sum_{v in S(u)} cos(u, v) X[v, i] / sum_{v in S(u)} cos(u, v)``, the best K-list taken over the
  same rankable items (0 when the neighbours hold none). Both lie in [0, 1].
- ``"ndcg"``: NDCG@K of ``L`` on ``R`` (binary gains, IDCG over ``min(|R|, K)``).

**Info.** At the step that ends an episode ``info["episode_metrics"]`` holds float32 [B] ``recall``
(``|L ∩ R| / |R|``), ``ndcg``, ``n_k``, ``n_simk`` (in the env's reward form: counts, or normalised for the
``*_norm`` rewards), ``reward`` and int64 [B, K] ``topk``, valid where
``info["_episode_metrics"]`` is True. ``info["user"]`` (int64 [B]) is the current user id at every step.

**For ReFiT / DDPO.** ``env.model`` (the frozen `DiffRec`), ``env.denoiser`` (its frozen network, eval mode,
no grad), ``env.clone_denoiser()`` (a trainable copy), ``env.posterior_mean(x_t, t, denoiser=None)``,
``env.posterior_std(t)`` / ``env.posterior_variance(t)``, ``env.ranking_exclusion()`` (the items the top-K may not
hold), ``env.log_prob(x_prev, x_t, t, reduce="mean")``
(``"sum"``: the exact n_items-dimensional Gaussian log-density; ``"mean"``: divided by n_items, DDPO's
convention and the recgym default), ``env.terminal_reward(x_0)`` (the reward of any x_0 for the current
episodes) and ``env.evaluate(denoiser)`` (DiffRec protocol on valid / test).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from torch import nn

from recgym.data.base import LoggedDataset
from recgym.envs.core import BatchedEnv, SingleEnvAdapter, as_action_tensor, hash32, resolve_device
from recgym.envs.denoise_resources import (  # noqa: F401  (re-exported: moved there, imported from here)
    SIGNAL_WEIGHTING,
    DenoiseResources,
    guidance_basis,
    load_resources,
    similar_user_signal,
)
from recgym.recommenders import DiffRec, DiffRecConfig, default_config, evaluate_diffrec

__all__ = [
    "ACTION_MODES",
    "REWARDS",
    "DenoiseResources",
    "DiffusionDenoiseEnv",
    "guidance_basis",
    "load_resources",
    "make_denoise_single",
    "make_denoise_vec",
    "similar_user_signal",
]

ACTION_MODES = ("latent", "residual", "guidance")
REWARDS = ("racs", "ra", "racs_norm", "ra_norm", "ndcg")
REWARD_ITEMS = ("train", "holdout", "valid")
DEFAULT_SCALE = {"latent": 1.0, "residual": 0.05, "guidance": 1.0}

_P_USER, _P_HOLD, _P_NOISE1, _P_NOISE2 = 11, 12, 13, 14


# ----------------------------------------------------------------------------------------------- the env


class DiffusionDenoiseEnv(BatchedEnv):
    """The reverse DiffRec chain as a batched episodic env (see the module docstring for the full contract)."""

    def __init__(
        self,
        dataset: LoggedDataset | str = "synthetic",
        num_envs: int = 64,
        *,
        device: str | torch.device = "cpu",
        action_mode: str = "latent",
        action_scale: float | None = None,
        guidance_dim: int = 32,
        reward: str = "racs",
        alpha: float = 0.5,
        k: int = 20,
        n_similar: int = 10,
        reward_items: str = "train",
        holdout_frac: float = 0.2,
        start_noise: int = 0,
        flat: bool = False,
        users: Any = None,
        model: DiffRec | None = None,
        config: DiffRecConfig | dict[str, Any] | None = None,
        data_dir: Any = None,
        dataset_kwargs: dict[str, Any] | None = None,
        progress: bool = True,
        validate_actions: bool = True,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ) -> None:
        ctor = {k: v for k, v in locals().items() if k not in ("self", "__class__", "num_envs")}
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode={action_mode!r}, expected one of {ACTION_MODES}")
        if reward not in REWARDS:
            raise ValueError(f"reward={reward!r}, expected one of {REWARDS}")
        if reward_items not in REWARD_ITEMS:
            raise ValueError(f"reward_items={reward_items!r}, expected one of {REWARD_ITEMS}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha}, expected in [0, 1]")
        if not 0.0 < holdout_frac < 1.0:
            raise ValueError(f"holdout_frac={holdout_frac}, expected in (0, 1)")
        if int(n_similar) < 1:
            raise ValueError(f"n_similar={n_similar}, expected >= 1")
        if isinstance(config, dict):  # overrides of the dataset's default DiffRec config
            name = dataset.name if isinstance(dataset, LoggedDataset) else str(dataset)
            config = DiffRecConfig.from_dict({**default_config(name).to_dict(), **config})
        dev = resolve_device(device)
        res = load_resources(dataset, dev, config, model, data_dir, dataset_kwargs, progress)
        self.resources = res
        self.model: DiffRec = res.model
        self.splits = res.splits
        self.n_items = int(res.splits.n_items)
        self.T = int(self.model.steps)
        if not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= self.n_items:
            raise ValueError(f"k={k} must be an int in [1, n_items={self.n_items}] (the catalogue size)")
        if not 0 <= int(start_noise) <= self.T:
            raise ValueError(f"start_noise={start_noise}, expected in [0, T={self.T}]")
        self.action_mode = action_mode
        self.action_scale = float(DEFAULT_SCALE[action_mode] if action_scale is None else action_scale)
        self.reward_kind = reward
        self.alpha = float(alpha)
        self.k = int(k)
        self.n_similar = int(n_similar)
        self.reward_items = reward_items
        self.holdout_frac = float(holdout_frac)
        self.start_noise = int(start_noise)
        self.flat = bool(flat)
        self.validate_actions = bool(validate_actions)
        self.guidance_dim = int(guidance_dim)
        self._ctor = {"action_mode": action_mode, "action_scale": self.action_scale, "reward": reward,
                      "alpha": self.alpha, "k": self.k, "n_similar": self.n_similar,
                      "reward_items": reward_items, "holdout_frac": self.holdout_frac,
                      "start_noise": self.start_noise, "guidance_dim": self.guidance_dim, "flat": self.flat}

        n = self.n_items
        if self.flat:
            obs_space: spaces.Space = spaces.Box(-np.inf, np.inf, shape=(2 * n + 1,), dtype=np.float32)
        else:
            obs_space = spaces.Dict({
                "x_t": spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32),
                "t": spaces.Discrete(self.T + 1),
                "history": spaces.Box(0.0, 1.0, shape=(n,), dtype=np.float32),
            })
        if action_mode == "latent":
            act_space = spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)
        elif action_mode == "residual":
            act_space = spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
        else:
            act_space = spaces.Box(-1.0, 1.0, shape=(self.guidance_dim,), dtype=np.float32)
        super().__init__(num_envs, obs_space, act_space, device=dev, autoreset_mode=autoreset_mode)
        self._ctor_kwargs = ctor

        # user pool: users that can carry a reward
        if reward_items == "valid":
            eligible = res.valid.any(1)
        elif reward_items == "holdout":
            eligible = res.n_train >= 2
        else:
            eligible = res.n_train >= 1
        if users is None:
            pool = torch.nonzero(eligible).flatten()
        else:
            pool = torch.as_tensor(np.asarray(users, dtype=np.int64).reshape(-1), device=dev)
            if pool.numel() == 0 or int(pool.min()) < 0 or int(pool.max()) >= self.splits.n_users:
                raise ValueError(f"users must be a non-empty list of ids in [0, {self.splits.n_users})")
            if not bool(eligible[pool].all()):
                bad = pool[~eligible[pool]][:5].tolist()
                raise ValueError(f"users {bad} have no reward items for reward_items={reward_items!r}")
        if pool.numel() == 0:
            raise ValueError(f"dataset {res.name!r} has no user with reward items for reward_items={reward_items!r}")
        self.users_pool = pool
        self._eligible = eligible
        # N_simK is reported in info for every reward kind: counting (uniform) unless the reward is normalised
        self.normalized = reward in ("racs_norm", "ra_norm")
        self.signal = res.similar(self.n_similar, "cosine" if self.normalized else "uniform")
        self.basis = res.guidance(self.guidance_dim) if action_mode == "guidance" else None
        self._item_ids = torch.arange(n, dtype=torch.int64, device=dev)
        self._disc = 1.0 / torch.log2(torch.arange(2, self.k + 2, dtype=torch.float32, device=dev))
        self._idcg = torch.cat([torch.zeros(1, device=dev), torch.cumsum(self._disc, 0)])

        b = self.num_envs
        self.user = torch.zeros(b, dtype=torch.int64, device=dev)
        self.t = torch.zeros(b, dtype=torch.int64, device=dev)
        self.x = torch.zeros(b, n, dtype=torch.float32, device=dev)
        self.history = torch.zeros(b, n, dtype=torch.float32, device=dev)
        self.reward_mask = torch.zeros(b, n, dtype=torch.bool, device=dev)
        self._forced_users: torch.Tensor | None = None

    # -- public API for agents -----------------------------------------------------------------------------

    @property
    def denoiser(self) -> nn.Module:
        """The frozen pre-trained network (eval mode, ``requires_grad=False``)."""
        return self.model.denoiser

    def clone_denoiser(self) -> nn.Module:
        """A trainable copy of the frozen network (train mode, gradients on), e.g. for ReFiT / DDPO."""
        net = copy.deepcopy(self.model.denoiser)
        for p in net.parameters():
            p.requires_grad_(True)
        return net.train()

    def _model_t(self, t: torch.Tensor | int, batch: int) -> torch.Tensor:
        if isinstance(t, int):
            t = torch.full((batch,), t, dtype=torch.long, device=self.device)
        t = t.to(device=self.device, dtype=torch.long)
        if t.ndim == 0:
            t = t.expand(batch)
        return (t - 1).clamp(min=0)

    def posterior_mean(self, x_t: torch.Tensor, t: torch.Tensor | int,
                       denoiser: nn.Module | None = None) -> torch.Tensor:
        """Mean of ``p(x_{t-1} | x_t)`` for observation time ``t`` (1..T); no grad through the frozen net."""
        tm = self._model_t(t, x_t.shape[0])
        if denoiser is None:
            with torch.no_grad():
                return self.model.posterior_mean(x_t, tm)
        return self.model.posterior_mean(x_t, tm, denoiser)

    def posterior_variance(self, t: torch.Tensor | int) -> torch.Tensor:
        """Variance of the frozen model's reverse step at observation time ``t`` (about 6e-7 on ML-1M)."""
        return torch.exp(self.posterior_log_variance(t))

    def posterior_log_variance(self, t: torch.Tensor | int) -> torch.Tensor:
        """Clipped log-variance of the reverse step at observation time ``t`` (same shape as ``t``)."""
        if isinstance(t, int):
            return self.model.posterior_log_variance(max(t - 1, 0))
        return self.model.posterior_log_variance((t.to(self.device, torch.long) - 1).clamp(min=0))

    def posterior_std(self, t: torch.Tensor | int) -> torch.Tensor:
        """Std of the frozen model's reverse step at observation time ``t`` (about 8e-4 on ML-1M)."""
        return torch.exp(0.5 * self.posterior_log_variance(t))

    def log_prob(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, reduce: str = "mean",
                 denoiser: nn.Module | None = None) -> torch.Tensor:
        """Log-density of the transition ``x_t -> x_prev`` under the (frozen or given) model's Gaussian posterior.

        ``t`` is the observation time of ``x_t`` (1..T). ``reduce``: ``"sum"`` (exact log-density over all
        items), ``"mean"`` (divided by n_items; DDPO / recgym default) or ``"none"`` (per item). With a
        trainable ``denoiser`` the result carries its gradient; with the frozen one it does not.
        """
        tm = self._model_t(t, x_t.shape[0])
        if denoiser is None:
            with torch.no_grad():
                return self.model.log_prob(x_prev, x_t, tm, reduce=reduce)
        return self.model.log_prob(x_prev, x_t, tm, reduce=reduce, denoiser=denoiser)

    def ranking_exclusion(self) -> torch.Tensor | None:
        """Items the current episodes' top-K lists may not contain (bool [B, n_items]): the input history, or
        None with ``reward_items="train"`` (the targets are the input itself)."""
        return None if self.reward_items == "train" else self.history > 0

    def terminal_reward(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reward and metrics of final scores ``x0`` [B, n_items] for the current episodes (see module doc)."""
        if tuple(x0.shape) != (self.num_envs, self.n_items):
            raise ValueError(f"x0 has shape {tuple(x0.shape)}, expected ({self.num_envs}, {self.n_items})")
        from recgym.metrics import topk_from_scores

        excl = self.ranking_exclusion()
        top = topk_from_scores(x0, self.k, exclude_mask=excl)
        hits = self.reward_mask.gather(1, top).to(torch.float32)
        n_hit = hits.sum(1)
        n_r = self.reward_mask.sum(1)
        cap = n_r.clamp(max=self.k)
        recall = n_hit / n_r.clamp(min=1).to(torch.float32)
        ndcg = (hits * self._disc).sum(1) / self._idcg[cap].clamp(min=1e-12)
        w = self.signal[self.user]
        gain = w.gather(1, top).sum(1)
        if self.normalized:
            n_k = n_hit / cap.clamp(min=1).to(torch.float32)
            if excl is not None:
                w = w.masked_fill(excl, 0.0)
            best = w.topk(self.k, dim=1).values.sum(1)
            n_simk = torch.where(best > 0, gain / best.clamp(min=1e-12), torch.zeros_like(best))
        else:  # counts: hits of L on R, and the neighbours' mean hits of L on their own items
            n_k = n_hit
            n_simk = gain
        if self.reward_kind in ("racs", "racs_norm"):
            r = self.alpha * n_k + (1.0 - self.alpha) * n_simk
        elif self.reward_kind in ("ra", "ra_norm"):
            r = n_k
        else:
            r = ndcg
        return {"reward": r, "recall": recall, "ndcg": ndcg, "n_k": n_k, "n_simk": n_simk, "topk": top}

    def evaluate(self, denoiser: nn.Module | None = None, which: tuple[str, ...] = ("valid", "test"),
                 ks: tuple[int, ...] = (10, 20)) -> dict[str, dict[str, float]]:
        """DiffRec-protocol Recall/NDCG@ks of the frozen (or a given, e.g. fine-tuned) denoiser."""
        return evaluate_diffrec(self.model, self.splits, ks, denoiser=denoiser, which=which)

    def effective_kwargs(self) -> dict[str, Any]:
        return dict(self._ctor)

    # -- hooks -----------------------------------------------------------------------------------------------

    def _reset_options(self, options: dict[str, Any]) -> None:
        users = options.pop("users", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; supported: ['reset_mask', 'users']")
        if users is None:
            self._forced_users = None
            return
        u = torch.as_tensor(np.asarray(users.cpu() if isinstance(users, torch.Tensor) else users),
                            dtype=torch.int64, device=self.device).reshape(-1)
        if u.numel() != self.num_envs:
            raise ValueError(f"reset option users has {u.numel()} ids, expected num_envs={self.num_envs}")
        if int(u.min()) < 0 or int(u.max()) >= self.splits.n_users or not bool(self._eligible[u].all()):
            raise ValueError(f"reset option users must be ids in [0, {self.splits.n_users}) with reward items "
                             f"for reward_items={self.reward_items!r}")
        self._forced_users = u

    def _uniform(self, purpose: int) -> torch.Tensor:
        """float64 [B, n_items] uniforms in (0, 1), a pure function of (env key, episode, purpose, item)."""
        base = self.per_env_bits(purpose)
        bits = hash32(hash32(base[:, None] ^ self._item_ids[None, :]) ^ (purpose * 0x9E3779B1 & 0xFFFFFFFF))
        return (bits.to(torch.float64) + 0.5) / 4294967296.0

    def _reset_envs(self, mask: torch.Tensor) -> None:
        if self._forced_users is not None:
            new_user = self._forced_users
            self._forced_users = None
        else:
            new_user = self.users_pool[self.per_env_randint(int(self.users_pool.numel()), purpose=_P_USER)]
        user = torch.where(mask, new_user, self.user)
        row = self.res_train[user]
        has = row > 0
        if self.reward_items == "valid":
            hist = row
            rmask = self.resources.valid[user]
        elif self.reward_items == "train":
            hist = row
            rmask = has
        else:
            u = self._uniform(_P_HOLD)
            hold = has & (u < self.holdout_frac)
            big = torch.full_like(u, 2.0)
            # at least one held out (the item with the smallest draw) and at least one kept (the largest)
            first = torch.where(has, u, big).argmin(1, keepdim=True)
            hold = hold.scatter(1, first, True) & has
            last = torch.where(has, u, -big).argmax(1, keepdim=True)
            all_held = (hold == has).all(1, keepdim=True)
            hold = torch.where(all_held, hold.scatter(1, last, False), hold)
            hist = row.masked_fill(hold, 0.0)
            rmask = hold
        if self.start_noise > 0:
            u1, u2 = self._uniform(_P_NOISE1), self._uniform(_P_NOISE2)
            noise = (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(torch.float32)
            ts = torch.full((self.num_envs,), self.start_noise - 1, dtype=torch.long, device=self.device)
            x0 = self.model.schedule.q_sample(hist, ts, noise)
        else:
            x0 = hist
        m2 = mask[:, None]
        self.user = user
        self.history = torch.where(m2, hist, self.history)
        self.reward_mask = torch.where(m2, rmask, self.reward_mask)
        self.x = torch.where(m2, x0, self.x)
        self.t = torch.where(mask, self.T, self.t)

    @property
    def res_train(self) -> torch.Tensor:
        return self.resources.train

    def _validate_actions(self, actions: Any, active: torch.Tensor) -> torch.Tensor:
        dim = self.guidance_dim if self.action_mode == "guidance" else self.n_items
        a = as_action_tensor(actions, num_envs=self.num_envs, device=self.device, kind="float", tail_shape=(dim,),
                             name=f"actions ({self.action_mode} mode)")
        if self.validate_actions:
            bad = ~torch.isfinite(a).all(1) & active
            if bool(bad.any()):
                idx = torch.nonzero(bad).flatten()
                n_bad = int((~torch.isfinite(a[idx])).sum())
                raise ValueError(f"actions contain {n_bad} NaN/inf value(s) in env(s) {idx[:10].tolist()}; "
                                 f"{self.action_mode} actions must be finite")
        if self.action_mode != "latent":
            a = a.clamp(-1.0, 1.0)
        return a

    def _step_envs(self, actions: torch.Tensor, active: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        if self.action_mode == "latent":
            x_new = actions
        else:
            mu = self.posterior_mean(self.x, self.t.clamp(min=1))
            if self.action_mode == "residual":
                x_new = mu + self.action_scale * actions
            else:
                assert self.basis is not None
                x_new = mu + self.action_scale * (actions @ self.basis)
        self.x = torch.where(active[:, None], x_new, self.x)
        self.t = torch.where(active, self.t - 1, self.t)
        terminated = active & (self.t == 0)
        truncated = torch.zeros_like(terminated)
        reward = torch.zeros(self.num_envs, dtype=torch.float32, device=self.device)
        info: dict[str, Any] = {}
        if bool(terminated.any()):
            m = self.terminal_reward(self.x)
            reward = torch.where(terminated, m["reward"], reward)
            info["episode_metrics"] = m
            info["_episode_metrics"] = terminated
        return reward, terminated, truncated, info

    def _observe(self) -> Any:
        if self.flat:
            return torch.cat([self.x, self.history, (self.t.to(torch.float32) / self.T)[:, None]], dim=1)
        return {"x_t": self.x, "t": self.t, "history": self.history}

    def _step_info(self) -> dict[str, Any]:
        return {"user": self.user}


# ----------------------------------------------------------------------------------------------- factories


def make_denoise_vec(num_envs: int = 64, **kwargs: Any) -> DiffusionDenoiseEnv:
    """``vector_entry_point`` of ``DiffusionDenoise-*-v0``: the batched torch env."""
    kwargs.pop("max_episode_steps", None)
    return DiffusionDenoiseEnv(num_envs=num_envs, **kwargs)


def make_denoise_single(**kwargs: Any) -> SingleEnvAdapter:
    """``entry_point`` of ``DiffusionDenoise-*-v0``: a numpy single env over a num_envs=1 env."""
    kwargs.pop("num_envs", None)
    kwargs["autoreset_mode"] = AutoresetMode.DISABLED
    return SingleEnvAdapter(DiffusionDenoiseEnv(num_envs=1, **kwargs))
