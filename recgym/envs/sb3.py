"""Stable-Baselines3 bridge: `to_sb3(vec_env)` and `ContinuousItemActionWrapper`.

* `to_sb3` wraps a batched recgym env as an SB3 ``VecEnv``: numpy float32 observations (flattened by a
  featurizer), float32 rewards, ``dones = terminated | truncated``, the last observation of a finished episode
  in ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` (truncated and not
  terminated), i.e. SB3's same-step autoreset (the env is switched to ``SAME_STEP``). ``seed(s)`` seeds the
  next ``reset`` (env ``i`` gets ``s + i``, as everywhere in recgym).
* Default featurizer for rec envs (`RecObsFeaturizer`): ``[mean embedding of the last W items (k),
  last W rewards scaled to [0, 1] by the reward range (W), step / max_turn (1)]``. The user id is *not* in the
  features: like DORL's state tracker the agent must infer the user from the history. Other envs: every
  observation tensor flattened and concatenated as float32.
* `ContinuousItemActionWrapper` turns the item-id action into a ``Box(-1, 1, (k,))`` vector: the chosen item is
  ``argmax_i <e_i, a>`` over the allowed items (``info["action_mask"]``, so the NX no-repeat mask is honoured).
  Item embeddings ``e`` are given, or by default the top-``k`` truncated SVD of the ground-truth matrix
  (``e = V_k sqrt(S_k)``, each row scaled to unit norm so every item is reachable). NB: deriving them from the ground
  truth gives the agent item-similarity knowledge from the evaluation matrix; pass embeddings from a world
  model (e.g. DeepFM item factors) to avoid that.
* Discrete SB3 agents cannot mask actions: in NX modes a repeated item raises unless the env was built with
  ``invalid_action="terminate"`` (reward 0, episode ends); or use FB, or the continuous wrapper (masked).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorWrapper
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from recgym.envs.core import BatchedEnv, as_action_tensor
from recgym.envs.rec import RecEnv

__all__ = ["ContinuousItemActionWrapper", "RecObsFeaturizer", "SB3VecEnv", "svd_item_embeddings", "to_sb3"]


def svd_item_embeddings(matrix: np.ndarray | torch.Tensor, k: int = 16, seed: int = 0) -> torch.Tensor:
    """``V_k sqrt(S_k)`` of the (users x items) matrix, rows scaled to unit L2 norm, float32 [n_items, k].

    Exact SVD up to 4,096 items, ``torch.svd_lowrank`` (seeded, 4 power iterations) above.
    """
    m = torch.as_tensor(np.asarray(matrix, dtype=np.float32) if not isinstance(matrix, torch.Tensor) else matrix)
    m = m.float().cpu()
    k = int(min(k, *m.shape))
    if m.shape[1] <= 4096:
        _, s, vh = torch.linalg.svd(m, full_matrices=False)
        v, s = vh[:k].T, s[:k]
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, s, v = torch.svd_lowrank(m, q=k, niter=4)
    e = v * s.clamp_min(0).sqrt()[None, :]
    # Unit rows: argmax_i <e_i, a> is then the cosine-nearest item, and every item with a non-zero row is
    # reachable (a = e_j picks j). With raw V_k sqrt(S_k) rows, long vectors hide most of the catalogue
    # (measured self-recovery: 36% of Coat's items, 1.8% of Yahoo's).
    return (e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)).contiguous()


def _rec_base(env: Any) -> RecEnv | None:
    base = env.unwrapped if hasattr(env, "unwrapped") else env
    return base if isinstance(base, RecEnv) else None


class ContinuousItemActionWrapper(VectorWrapper):
    """Continuous action ``a`` float32 [B, k] -> item ``argmax_i <e_i, a>`` among the allowed items."""

    def __init__(self, env: Any, item_embeddings: np.ndarray | torch.Tensor | None = None, k: int = 16) -> None:
        super().__init__(env)
        base = _rec_base(env)
        if base is None:
            raise TypeError(f"ContinuousItemActionWrapper needs a batched recgym RecEnv, got {type(env).__name__}")
        self.base = base
        if item_embeddings is None:
            gt = getattr(base, "gt", None)
            if gt is None:
                raise ValueError("no item_embeddings given and the env has no ground-truth matrix to take an SVD of")
            item_embeddings = svd_item_embeddings(gt.float().cpu(), k)
        emb = torch.as_tensor(np.asarray(item_embeddings) if not isinstance(item_embeddings, torch.Tensor)
                              else item_embeddings).float()
        if emb.dim() != 2 or emb.shape[0] != base.n_items:
            raise ValueError(f"item_embeddings must be [n_items={base.n_items}, k], got {tuple(emb.shape)}")
        self.item_embeddings = emb.to(base.device)
        self.k = int(emb.shape[1])
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(self.k,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, base.num_envs)
        self._mask: torch.Tensor | None = None

    def items_for(self, actions: Any, mask: torch.Tensor | None = None) -> torch.Tensor:
        """int64 [B] item ids chosen for continuous ``actions`` under ``mask`` (default: the current mask)."""
        a = as_action_tensor(actions, num_envs=self.base.num_envs, device=self.base.device, kind="float",
                             tail_shape=(self.k,))
        finite = torch.isfinite(a).all(1)
        if not bool(finite.all()):  # a diverged actor must not be mapped to items 0, 1, 2 and paid real rewards
            bad = (~finite).nonzero().flatten()[:5].tolist()
            raise ValueError(f"ContinuousItemActionWrapper: actions of envs {bad} contain NaN or inf; expected "
                             f"finite float [B, {self.k}] actions in [-1, 1]")
        scores = a @ self.item_embeddings.T  # [B, n_items]
        m = self._mask if mask is None else mask
        if m is not None:
            scores = scores.masked_fill(~m, float("-inf"))
        return scores.argmax(1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._mask = info.get("action_mask")
        return obs, info

    def step(self, actions: Any):
        items = self.items_for(actions)
        obs, r, term, trunc, info = self.env.step(items)
        self._mask = info.get("action_mask")
        info = {**info, "item": items}
        return obs, r, term, trunc, info


class RecObsFeaturizer:
    """Rec observation dict -> float32 [B, k + W + 1] (see the module docstring)."""

    def __init__(self, base: RecEnv, item_embeddings: torch.Tensor) -> None:
        self.emb = item_embeddings.to(base.device).float()
        self.w = base.history_len
        self.max_turn = max(base.max_turn, 1)
        box = base.single_observation_space["rewards"]
        lo, hi = float(box.low.min()), float(box.high.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
            lo, hi = 0.0, 1.0
        self.lo, self.scale = lo, 1.0 / (hi - lo)
        self.dim = self.emb.shape[1] + self.w + 1

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        items = obs["items"]
        valid = (items >= 0).float()
        e = self.emb[items.clamp_min(0)] * valid[..., None]
        mean_e = e.sum(1) / valid.sum(1, keepdim=True).clamp_min(1.0)
        rew = (obs["rewards"] - self.lo) * self.scale * valid
        step = obs["step"].float()[:, None] / self.max_turn
        return torch.cat([mean_e, rew, step], 1)


def _flatten_featurizer(obs: Any) -> torch.Tensor:
    if isinstance(obs, torch.Tensor):
        return obs.reshape(obs.shape[0], -1).float()
    parts = [obs[k].reshape(obs[k].shape[0], -1).float() for k in sorted(obs)]
    return torch.cat(parts, 1)


class SB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a batched recgym env (see the module docstring)."""

    def __init__(self, env: Any, featurizer: Callable[[Any], torch.Tensor] | None = None) -> None:
        self.env = env
        base = env.unwrapped if hasattr(env, "unwrapped") else env
        if not isinstance(base, BatchedEnv):
            raise TypeError(f"to_sb3 needs a batched recgym env, got {type(env).__name__}")
        self.base = base
        base.autoreset_mode = AutoresetMode.SAME_STEP
        if featurizer is None:
            rec = _rec_base(env)
            if rec is not None:
                emb = env.item_embeddings if isinstance(env, ContinuousItemActionWrapper) else None
                if emb is None:
                    gt = getattr(rec, "gt", None)
                    emb = (svd_item_embeddings(gt.float().cpu(), 16) if gt is not None
                           else torch.zeros((rec.n_items, 0)))
                featurizer = RecObsFeaturizer(rec, emb)
            else:
                featurizer = _flatten_featurizer
        self.featurizer = featurizer
        obs, _ = base.reset(seed=0)
        dim = int(self.featurizer(obs).shape[1])
        base._has_reset = False
        obs_space = spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        self.render_mode = None
        super().__init__(base.num_envs, obs_space, env.single_action_space)
        self._actions: Any = None

    def _obs(self, obs: Any) -> np.ndarray:
        return self.featurizer(obs).detach().cpu().numpy().astype(np.float32, copy=False)

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        obs, info = self.env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._obs(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        acts = self._actions
        if isinstance(self.action_space, spaces.Discrete):
            acts = np.asarray(acts).reshape(self.num_envs).astype(np.int64)
        obs, r, term, trunc, info = self.env.step(acts)
        flat = self._obs(obs)
        rew = r.detach().cpu().numpy().astype(np.float32)
        term_np = term.cpu().numpy()
        trunc_np = trunc.cpu().numpy()
        dones = term_np | trunc_np
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final = self._obs(info["final_obs"])
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = final[i]
                infos[i]["TimeLimit.truncated"] = bool(trunc_np[i] and not term_np[i])
        return flat, rew, dones, infos

    def close(self) -> None:
        self.env.close()

    def _indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        value = getattr(self.env, attr_name) if hasattr(self.env, attr_name) else getattr(self.base, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.base, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list:
        out = getattr(self.base, method_name)(*method_args, **method_kwargs)
        return [out for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False for _ in self._indices(indices)]


def to_sb3(vec_env: Any, featurizer: Callable[[Any], torch.Tensor] | None = None) -> SB3VecEnv:
    """Adapt a batched recgym env (optionally wrapped, e.g. by `ContinuousItemActionWrapper`) to SB3."""
    return SB3VecEnv(vec_env, featurizer)
