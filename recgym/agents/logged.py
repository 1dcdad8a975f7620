"""Logged trajectories: the training logs of a `LoggedDataset` as (obs, action, reward, next_obs, done) tensors.

Used by the offline agents (BCQ, CQL, CRR, SQN) and by exponential reward-weighted SFT, so they see the same
states as the online agents: each transition's observation has the rec env's layout (``user``, ``step``,
``items`` [W] with the previous item ids, most recent last, -1 padded, ``rewards`` [W]).

Order of a user's interactions: by ``time`` when the logs have it (``order="time"``, the default; ties keep
file order); ``"random"``: a seeded random permutation per user (the honest choice for logs without time, e.g.
Coat and Yahoo, whose files are sorted by item id, an order no user ever saw); ``"file"``: the row order of
``dataset.train``. With ``order="time"`` and no time column, the random order is used (and reported in
``meta``). Each user's sequence is cut into episodes of ``episode_len`` steps (DORL splits long logs the same
way); the last transition of each episode has ``done = True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ORDERS = ("time", "random", "file")


@dataclass
class LoggedTransitions:
    """Flat transition tensors (all on one device); ``obs``/``next_obs`` are rec-env style dicts."""

    obs: dict[str, torch.Tensor]
    action: torch.Tensor  # int64 [N]
    reward: torch.Tensor  # float32 [N]
    next_obs: dict[str, torch.Tensor]
    done: torch.Tensor  # bool [N]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def batch(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor,
                                                dict[str, torch.Tensor], torch.Tensor]:
        """The transitions at ``idx`` (a tensor of indices on the same device)."""
        return ({k: v[idx] for k, v in self.obs.items()}, self.action[idx], self.reward[idx],
                {k: v[idx] for k, v in self.next_obs.items()}, self.done[idx])


def _history(items: np.ndarray, rewards: np.ndarray, pos: np.ndarray, width: int,
             upto_inclusive: bool) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the ``width`` previous (item, reward) within its episode, most recent last, -1 padded."""
    n = len(items)
    h_items = np.full((n, width), -1, dtype=np.int64)
    h_rew = np.zeros((n, width), dtype=np.float32)
    shift0 = 0 if upto_inclusive else 1
    for k in range(width):
        lag = k + shift0  # lag 0 = the row itself
        src = np.arange(n) - lag
        ok = (pos - lag >= 0) & (src >= 0)
        col = width - 1 - k
        h_items[ok, col] = items[src[ok]]
        h_rew[ok, col] = rewards[src[ok]]
    return h_items, h_rew


def build_logged_transitions(dataset: Any, history_len: int, episode_len: int = 30, order: str = "time",
                             seed: int = 0, device: torch.device | str = "cpu",
                             users: np.ndarray | None = None) -> LoggedTransitions:
    """Turn ``dataset.train`` into transitions (see the module docstring for the ordering rules)."""
    if order not in ORDERS:
        raise ValueError(f"order={order!r}; valid values: {list(ORDERS)}")
    if history_len < 1 or episode_len < 1:
        raise ValueError(f"history_len and episode_len must be >= 1, got {history_len}, {episode_len}")
    df = dataset.train
    if len(df) == 0:
        raise ValueError(f"{dataset.name}: the training logs are empty; offline agents need logged interactions")
    if users is not None:
        df = df[df["user"].isin(np.asarray(users))]
    used = order
    if order == "time" and "time" not in df.columns:
        used = "random"
    if used == "time":
        df = df.sort_values(["user", "time"], kind="stable")
    elif used == "random":
        rng = np.random.default_rng(seed)
        df = df.assign(_key=rng.permutation(len(df))).sort_values(["user", "_key"], kind="stable")
    else:
        df = df.sort_values(["user"], kind="stable")
    user = df["user"].to_numpy(np.int64)
    item = df["item"].to_numpy(np.int64)
    reward = df["reward"].to_numpy(np.float32)
    # Position inside the user's sequence, then inside the episode chunk.
    start = np.r_[0, np.flatnonzero(np.diff(user)) + 1]
    lengths = np.diff(np.r_[start, len(user)])
    pos_user = np.arange(len(user)) - np.repeat(start, lengths)
    pos = pos_user % episode_len
    last_of_user = np.r_[user[1:] != user[:-1], True]
    done = last_of_user | (pos == episode_len - 1)
    h_items, h_rew = _history(item, reward, pos, history_len, upto_inclusive=False)
    n_items, n_rew = _history(item, reward, pos, history_len, upto_inclusive=True)
    dev = torch.device(device)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, copy=True)).to(dev)

    obs = {"user": t(user), "step": t(pos.astype(np.int64)), "items": t(h_items), "rewards": t(h_rew)}
    next_obs = {"user": t(user), "step": t(pos.astype(np.int64) + 1), "items": t(n_items), "rewards": t(n_rew)}
    return LoggedTransitions(obs, t(item), t(reward), next_obs, t(done),
                             meta={"order": used, "requested_order": order, "episode_len": episode_len,
                                   "n_transitions": int(len(item)), "n_episodes": int(done.sum())})
