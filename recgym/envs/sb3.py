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
* `ContinuousItemActionWrapper` turns the item-id action into a ``Box(-1, 1, (k,))`` vector mapped to an item by
  EasyRL4Rec's rule (`recgym.envs.item_actions.map_actions_to_items`: clip to [-1, 1], dot product with
  L2-normalised item embeddings, best allowed item, with probability ``remap_eps`` a random allowed item).
  Item embeddings are given (rows normalised here), or learned from the training logs
  (`recgym.envs.item_actions.log_item_embeddings`, ``source="train_svd"`` by default: the top-``k`` SVD of the
  training-log matrix; ``"deepfm"``: the DeepFM user model's item embeddings). The ground truth is never read.
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
from recgym.envs.item_actions import (
    log_item_embeddings,
    map_actions_to_items,
    normalise_rows,
    svd_item_embeddings,
)
from recgym.envs.rec import RecEnv

__all__ = ["ContinuousItemActionWrapper", "RecObsFeaturizer", "SB3VecEnv", "svd_item_embeddings", "to_sb3"]


def _rec_base(env: Any) -> RecEnv | None:
    base = env.unwrapped if hasattr(env, "unwrapped") else env
    return base if isinstance(base, RecEnv) else None


class ContinuousItemActionWrapper(VectorWrapper):
    """Continuous action ``a`` float32 [B, k] -> one allowed item (EasyRL4Rec's mapping; see the module docstring).

    ``item_embeddings``: [n_items, k] (rows are L2-normalised here); None learns them from the training logs
    with ``source`` (``"train_svd"``, ``"deepfm"``) and ``k``. ``remap_eps``: per-row probability of a random
    allowed item, drawn from a generator seeded with ``seed``.
    """

    def __init__(self, env: Any, item_embeddings: np.ndarray | torch.Tensor | None = None, k: int = 16,
                 source: str = "train_svd", remap_eps: float = 0.0, seed: int = 0) -> None:
        super().__init__(env)
        base = _rec_base(env)
        if base is None:
            raise TypeError(f"ContinuousItemActionWrapper needs a batched recgym RecEnv, got {type(env).__name__}")
        if not 0.0 <= float(remap_eps) <= 1.0:
            raise ValueError(f"remap_eps must be in [0, 1], got {remap_eps}")
        self.base = base
        if item_embeddings is None:
            item_embeddings = log_item_embeddings(base.dataset, source, k, seed=seed)
        emb = normalise_rows(item_embeddings)
        if emb.shape[0] != base.n_items:
            raise ValueError(f"item_embeddings must be [n_items={base.n_items}, k], got {tuple(emb.shape)}")
        self.item_embeddings = emb.to(base.device)
        self.k = int(emb.shape[1])
        self.remap_eps = float(remap_eps)
        self.generator = torch.Generator(device=base.device)
        self.generator.manual_seed(int(seed))
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(self.k,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, base.num_envs)
        self._mask: torch.Tensor | None = None

    def items_for(self, actions: Any, mask: torch.Tensor | None = None) -> torch.Tensor:
        """int64 [B] item ids chosen for continuous ``actions`` under ``mask`` (default: the current mask)."""
        a = as_action_tensor(actions, num_envs=self.base.num_envs, device=self.base.device, kind="float",
                             tail_shape=(self.k,))
        m = self._mask if mask is None else mask
        return map_actions_to_items(a, self.item_embeddings, m, self.remap_eps, self.generator)

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
                if emb is None:  # learned from the training logs, never the ground truth
                    emb = (log_item_embeddings(rec.dataset, "train_svd", 16) if len(rec.dataset.train)
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
