"""`DenoiseBridge`: what the denoising-chain fine-tuners (`recgym.agents.denoise.common.ChainFinetuner`) take
from a batched ``DiffusionDenoise-*`` env: user batches, terminal rewards and the DiffRec-protocol evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


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
        self._ref_cache: dict[Any, Any] = {}

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

    def evaluate_per_user(self, policy: torch.nn.Module | None, which: str,
                          ks: tuple[int, ...] = (10, 20)) -> dict[str, Any]:
        """Per-user DiffRec-protocol metrics of ``policy`` (None: the frozen pre-trained denoiser) on one split
        (`recgym.recommenders.ranking.evaluate_scores_per_user`); the pre-trained model's are computed once."""
        from recgym.recommenders.ranking import evaluate_scores_per_user

        splits = self.eval_splits if self.eval_splits is not None else self.env.splits
        key = (which, tuple(ks), id(splits))
        if policy is None and key in self._ref_cache:
            return self._ref_cache[key]
        out = evaluate_scores_per_user(lambda x, u: self.model.predict(x, denoiser=policy), splits, ks,
                                       self.device, self.model.config.eval_batch_size, (which,))[which]
        if policy is None:
            self._ref_cache[key] = out
        return out

    def evaluate(self, policy: torch.nn.Module, which: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """DiffRec protocol on the env's splits (or on ``eval_splits`` when set)."""
        if self.eval_splits is None:
            return self.env.evaluate(policy, which=tuple(which))
        from recgym.recommenders.diffrec import evaluate_diffrec

        return evaluate_diffrec(self.model, self.eval_splits, (10, 20), denoiser=policy, which=tuple(which))
