"""`SingleEnvAdapter`: a numpy `gymnasium.Env` over a ``num_envs=1`` batched env (for ``gymnasium.make``,
``check_env`` and SB3), without duplicating any dynamics; and `to_numpy_tree`."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode

if TYPE_CHECKING:
    from recgym.envs.core import BatchedEnv

__all__ = ["SingleEnvAdapter", "to_numpy_tree"]


def to_numpy_tree(x: Any) -> Any:
    """Tensors -> numpy arrays, recursively through dicts (for the numpy single env / SB3)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, Mapping):
        return {k: to_numpy_tree(v) for k, v in x.items()}
    return x


def _copy_tree(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, Mapping):
        return {k: _copy_tree(v) for k, v in x.items()}
    return copy.deepcopy(x)


def _index_tree(x: Any, i: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x[i]
    if isinstance(x, Mapping):
        return {k: _index_tree(v, i) for k, v in x.items()}
    return x


def _to_single(x: Any, space: gym.Space) -> Any:
    if isinstance(space, spaces.Dict):
        return {k: _to_single(x[k], space[k]) for k in space.spaces}
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if isinstance(space, spaces.Discrete):
        return np.int64(arr)
    return np.array(arr, dtype=space.dtype, copy=True)


class SingleEnvAdapter(gym.Env):
    """A numpy `gymnasium.Env` over a ``num_envs=1`` `BatchedEnv` (autoreset DISABLED): same dynamics, no copy.

    Observations are numpy (matching ``batched.single_observation_space``), rewards python floats, info
    values numpy arrays with the batch dimension removed (non-tensor entries pass through).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, batched: BatchedEnv) -> None:
        if batched.num_envs != 1:
            raise ValueError(f"SingleEnvAdapter needs a batched env with num_envs=1, got {batched.num_envs}")
        batched.autoreset_mode = AutoresetMode.DISABLED
        self.batched = batched
        self.observation_space = batched.single_observation_space
        self.action_space = batched.single_action_space
        self._spec: EnvSpec | None = None

    @property
    def spec(self) -> EnvSpec | None:  # type: ignore[override]
        return self._spec

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        if value is not None:
            value = copy.copy(value)
            value.kwargs = {**value.kwargs, **self.batched.effective_kwargs()}
        self._spec = value

    @property
    def device(self) -> torch.device:
        return self.batched.device

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in info.items():
            if k.startswith("final_") or k.startswith("_final"):
                continue
            out[k] = _copy_tree(to_numpy_tree(_index_tree(v, 0)))
        return out

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        obs, info = self.batched.reset(seed=seed, options=options)
        return _to_single(_index_tree(obs, 0), self.observation_space), self._info(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self.batched._has_reset and bool(self.batched.done[0]):
            raise RuntimeError("step() called after the episode ended; call reset() first")
        if isinstance(action, torch.Tensor):
            a = action.reshape(1, *action.shape)
        else:
            arr = np.asarray(action)
            a = arr.reshape(1, *arr.shape)
        obs, reward, terminated, truncated, info = self.batched.step(a)
        return (
            _to_single(_index_tree(obs, 0), self.observation_space),
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            self._info(info),
        )

    def close(self) -> None:
        self.batched.close()
