"""State trackers: turn a batched rec-env observation into a state vector, on the device.

The batched rec env observes a dict of tensors ``user`` [B], ``step`` [B], ``items`` [B, W] (last W item ids,
most recent last, -1 padded) and ``rewards`` [B, W]. A tracker is an ``nn.Module`` mapping that dict to a
float state [B, out_dim]; the agents train it jointly with their heads.

- ``avg``: the tracker of DORL ("Alleviating Matthew Effect of Offline Reinforcement Learning in Interactive
  Recommendation", arXiv:2307.04571): mean of the last ``window`` item embeddings concatenated with the last
  reward min-max normalised (DORL uses window 3).
- ``gru``: a GRU over the (item embedding, normalised reward) sequence; the last hidden state.
- ``sasrec``: a causal self-attention (SASRec-style) encoder over the same sequence; the last position.

Optional extras, off in DORL's tracker: a user embedding (``user_dim > 0``), the normalised step
(``use_step``), which makes a fixed-horizon episode Markov for the critic, and a *logged profile* of the user
(``profile``): from the training logs (the data every offline method may see), the mean embedding of the
items the user logged and their mean embedding weighted by the user-centred normalised logged reward (at most
``profile_max`` logged items per user, the most recent when the logs have time). It shares the item embedding
table, so users with similar logs get similar states from the first step on. Padding (-1) is mapped to a learned
padding token for the sequence encoders and excluded from the average tracker's mean.

Every agent with a tracker holds a `TrackerConfig` as its config's ``tracker`` field; suites and the CLI set it
with a dict of its fields (``tracker = { kind = "gru" }``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TRACKERS = ("avg", "gru", "sasrec")
# Largest n_users * 2 * n_items for which the logged profile is kept as a dense weight matrix (64 MB of float32)
DENSE_PROFILE_MAX = 16_000_000


@dataclass
class TrackerConfig:
    """Tracker settings shared by every agent that uses one (the ``tracker`` field of its config)."""

    kind: str = "avg"  # one of TRACKERS
    window: int = 3  # items averaged by the ``avg`` tracker (DORL: 3)
    emb_dim: int = 32  # item embedding size
    user_dim: int = 0  # user embedding size (0 = no user id in the state, as in DORL)
    use_step: bool = True  # append step / max_turn to the state
    hidden: int = 64  # GRU / SASRec width
    n_heads: int = 2  # SASRec heads
    n_layers: int = 1  # SASRec blocks
    profile: bool = False  # append the user's logged profile (needs the training logs)
    profile_max: int = 256  # logged items per user kept for the profile

    def __post_init__(self) -> None:
        if self.kind not in TRACKERS:
            raise ValueError(f"tracker kind={self.kind!r}; valid values: {list(TRACKERS)}")
        for name in ("window", "emb_dim", "hidden", "n_heads", "n_layers", "profile_max"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"tracker {name} must be >= 1, got {getattr(self, name)}")
        if self.user_dim < 0:
            raise ValueError(f"tracker user_dim must be >= 0 (0 = no user embedding), got {self.user_dim}")


class StateTracker(nn.Module):
    """Base: embeddings shared by every tracker; subclasses implement ``encode``."""

    def __init__(self, cfg: TrackerConfig, n_users: int, n_items: int, history_len: int,
                 reward_range: tuple[float, float], max_turn: int, dataset: Any = None) -> None:
        super().__init__()
        if cfg.kind not in TRACKERS:
            raise ValueError(f"tracker kind={cfg.kind!r}; valid values: {list(TRACKERS)}")
        if cfg.window < 1 or cfg.emb_dim < 1:
            raise ValueError(f"tracker window and emb_dim must be >= 1, got {cfg.window}, {cfg.emb_dim}")
        self.cfg = cfg
        self.n_items = n_items
        self._frozen = False  # inside `frozen()`: the per-user features are cached
        self._user_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.history_len = history_len
        self.max_turn = max(int(max_turn), 1)
        lo, hi = float(reward_range[0]), float(reward_range[1])
        self.register_buffer("r_lo", torch.tensor(lo))
        self.register_buffer("r_scale", torch.tensor(1.0 / (hi - lo) if hi > lo else 1.0))
        # Row n_items is the padding token (history slot -1).
        self.item_emb = nn.Embedding(n_items + 1, cfg.emb_dim)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        self.user_emb = nn.Embedding(n_users, cfg.user_dim) if cfg.user_dim > 0 else None
        if self.user_emb is not None:
            nn.init.normal_(self.user_emb.weight, std=0.1)
        if cfg.profile:
            if dataset is None:
                raise ValueError("tracker profile=True needs the dataset's training logs (dataset=None)")
            items, weights = logged_profile(dataset, n_users, cfg.profile_max, lo, hi)
            valid = (items >= 0).float()
            count = valid.sum(1, keepdim=True).clamp(min=1)
            # per user: its logged items (padding row for -1) and the weights of its two bags (mean, weighted);
            # derived from the dataset at construction, so not saved in checkpoints
            items = torch.where(items >= 0, items, n_items)
            bag_w = torch.stack([valid / count, weights / count], 1)  # [n_users, 2, L]
            self.n_profile_users = n_users
            if n_users * 2 * n_items <= DENSE_PROFILE_MAX:
                # as a dense [n_users, 2, n_items] weight matrix: profile = one matmul with the item embeddings,
                # whose backward is one more (an embedding_bag's backward sorts its indices: ~3x slower here)
                dense = torch.zeros(n_users, 2, n_items + 1).scatter_add_(2, items.unsqueeze(1).expand(-1, 2, -1), bag_w)
                self.register_buffer("prof_dense", dense[..., :n_items].contiguous(), persistent=False)
            else:
                self.register_buffer("prof_items", items, persistent=False)
                self.register_buffer("prof_weights", bag_w, persistent=False)

    @property
    def out_dim(self) -> int:
        return self.core_dim + self.cfg.user_dim + int(self.cfg.use_step) + 2 * self.cfg.emb_dim * self.cfg.profile

    core_dim: int = 0

    def norm_reward(self, r: torch.Tensor) -> torch.Tensor:
        return (r.float() - self.r_lo) * self.r_scale

    def encode(self, items: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_obs(self, items: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """The history part of the state from the raw ``items`` (long, -1 padded) and ``rewards`` [B, W]."""
        valid = items >= 0
        return self.encode(items, torch.where(valid, self.norm_reward(rewards), 0.0), valid)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """State [B, out_dim] = [history part, user embedding, step / max_turn, logged profile] (the last three
        as configured)."""
        items = obs["items"]
        if items.dtype != torch.long:
            items = items.long()
        parts = [self.encode_obs(items, obs["rewards"])]
        per_user = None
        ud = self.cfg.user_dim
        if self.user_emb is not None or self.cfg.profile:
            user = obs["user"]
            per_user = self.user_features(user if user.dtype == torch.long else user.long())
        if self.user_emb is not None:
            assert per_user is not None
            parts.append(per_user[:, :ud])
        if self.cfg.use_step:
            parts.append((obs["step"].float() * (1.0 / self.max_turn)).unsqueeze(-1))
        if self.cfg.profile:
            assert per_user is not None
            parts.append(per_user[:, ud:])
        return torch.cat(parts, dim=-1)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """A block in which the caller does not change the parameters (e.g. an RL rollout): the per-user part
        of the state (user embedding, logged profile) is computed once per user, on first use, and reused until
        the block ends. Only forward passes without gradient use the cache."""
        self._user_cache = None
        self._frozen = True
        try:
            yield
        finally:
            self._frozen = False
            self._user_cache = None

    def user_features(self, user: torch.Tensor) -> torch.Tensor:
        """[B, user_dim + 2 * emb_dim * profile]: the user embedding and the logged profile of each user."""
        if not self._frozen or torch.is_grad_enabled():
            return self._user_features(user)
        if self._user_cache is None:
            n = self.n_profile_users if self.cfg.profile else self.user_emb.num_embeddings  # type: ignore[union-attr]
            dim = self.cfg.user_dim + 2 * self.cfg.emb_dim * self.cfg.profile
            self._user_cache = (torch.zeros(n, dim, device=user.device),
                                torch.zeros(n, dtype=torch.bool, device=user.device))
        cache, have = self._user_cache
        missing = user[~have[user]]
        if missing.numel():
            missing = torch.unique(missing)
            cache[missing] = self._user_features(missing)
            have[missing] = True
        return cache[user]

    def _user_features(self, user: torch.Tensor) -> torch.Tensor:
        if user.numel() > 256:  # an update's batch repeats each user once per step of its episode
            uniq, inverse = torch.unique(user, return_inverse=True)
            return self._user_features(uniq)[inverse]
        parts = []
        if self.user_emb is not None:
            parts.append(self.user_emb(user))
        if self.cfg.profile:
            parts.append(self.profile(user))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def profile(self, user: torch.Tensor) -> torch.Tensor:
        """[B, 2 * emb_dim]: the mean embedding of each user's logged items and their reward-weighted mean."""
        B = user.shape[0]
        if hasattr(self, "prof_dense"):
            return (self.prof_dense[user].view(2 * B, self.n_items) @ self.item_emb.weight[:-1]).view(B, -1)
        # large catalogues: one fused gather-and-sum (embedding_bag) over each user's two bags
        items = self.prof_items[user]  # [B, L], padding = the padding row (excluded from the sums)
        L = items.shape[1]
        bags = F.embedding_bag(items.unsqueeze(1).expand(B, 2, L).reshape(2 * B, L), self.item_emb.weight,
                               mode="sum", per_sample_weights=self.prof_weights[user].reshape(2 * B, L),
                               padding_idx=self.n_items)
        return bags.view(B, 2 * self.cfg.emb_dim)

    def _embed(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_emb(items.remainder(self.n_items + 1))  # -1 (padding) -> the padding row n_items


class AverageTracker(StateTracker):
    """DORL: mean of the last ``window`` item embeddings + the last reward (min-max normalised)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.core_dim = self.cfg.emb_dim + 1

    def encode(self, items: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._window_mean(items), rewards[:, -1:]], dim=-1)

    def encode_obs(self, items: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        # only the last reward enters the state: normalise that column alone
        r_last = torch.where(items[:, -1:] >= 0, self.norm_reward(rewards[:, -1:]), 0.0)
        return torch.cat([self._window_mean(items), r_last], dim=-1)

    def _window_mean(self, items: torch.Tensor) -> torch.Tensor:
        """Mean embedding of the valid items among the last ``window`` (0 when there are none), fused in one
        ``embedding_bag`` whose "mean" leaves the padding slots out."""
        last = items[:, -min(self.cfg.window, items.shape[1]):]
        return F.embedding_bag(last.remainder(self.n_items + 1), self.item_emb.weight, mode="mean",
                               padding_idx=self.n_items)


class GRUTracker(StateTracker):
    """A one-layer GRU over (item embedding, normalised reward); the final hidden state."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gru = nn.GRU(self.cfg.emb_dim + 1, self.cfg.hidden, batch_first=True)
        self.core_dim = self.cfg.hidden

    def encode(self, items: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self._embed(items), rewards.unsqueeze(-1)], dim=-1)
        _, h = self.gru(x)
        return h[-1]


class SASRecTracker(StateTracker):
    """Causal self-attention over the history (SASRec), with learned positions; the last position's output."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        c = self.cfg
        self.inp = nn.Linear(c.emb_dim + 1, c.hidden)
        self.pos = nn.Parameter(torch.randn(self.history_len, c.hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(c.hidden, c.n_heads, dim_feedforward=2 * c.hidden, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.hidden)
        causal = torch.triu(torch.ones(self.history_len, self.history_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", causal)
        self.core_dim = c.hidden

    def encode(self, items: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self.inp(torch.cat([self._embed(items), rewards.unsqueeze(-1)], dim=-1)) + self.pos[: items.shape[1]]
        w = items.shape[1]
        h = self.blocks(x, mask=self.causal[:w, :w])
        return self.norm(h[:, -1])


def logged_profile(dataset: Any, n_users: int, max_items: int, lo: float,
                   hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per user: up to ``max_items`` logged item ids (-1 padded) [n_users, L] and their profile weights.

    Weight = the logged reward min-max normalised with (``lo``, ``hi``), minus the user's mean of it.
    """
    df = dataset.train
    if "time" in df.columns:
        df = df.sort_values(["user", "time"], kind="stable")
    else:
        df = df.sort_values(["user"], kind="stable")
    u = df["user"].to_numpy(np.int64)
    it = df["item"].to_numpy(np.int64)
    r = (df["reward"].to_numpy(np.float64) - lo) / (hi - lo if hi > lo else 1.0)
    counts = np.bincount(u, minlength=n_users)
    start = np.r_[0, np.cumsum(counts)[:-1]]
    rank_from_end = counts[u] - 1 - (np.arange(len(u)) - start[u])
    keep = rank_from_end < max_items
    u, it, r = u[keep], it[keep], r[keep]
    kept = np.bincount(u, minlength=n_users)
    L = max(1, int(kept.max()) if len(kept) else 1)
    col = np.arange(len(u)) - np.r_[0, np.cumsum(kept)[:-1]][u]
    items = np.full((n_users, L), -1, dtype=np.int64)
    w = np.zeros((n_users, L), dtype=np.float32)
    mean = np.bincount(u, weights=r, minlength=n_users) / np.maximum(kept, 1)
    items[u, col] = it
    w[u, col] = r - mean[u]
    return torch.from_numpy(items), torch.from_numpy(w)


def make_tracker(cfg: TrackerConfig, n_users: int, n_items: int, history_len: int,
                 reward_range: tuple[float, float], max_turn: int, dataset: Any = None) -> StateTracker:
    """Build the tracker named by ``cfg.kind`` (one of `TRACKERS`); ``dataset`` is needed for ``profile``."""
    cls = {"avg": AverageTracker, "gru": GRUTracker, "sasrec": SASRecTracker}.get(cfg.kind)
    if cls is None:
        raise ValueError(f"tracker kind={cfg.kind!r}; valid values: {list(TRACKERS)}")
    return cls(cfg, n_users, n_items, history_len, reward_range, max_turn, dataset)
