"""Interactive-recommendation dynamics (`RecEnv`) and the ground-truth evaluation env (`GroundTruthRecEnv`).

One episode = one user drawn uniformly from the evaluation users (the ground-truth users, or a fixed
``users=`` list). Action = one item id (int64 tensor [num_envs]). The protocol follows DORL / ROLeR /
EasyRL4Rec (DORL arXiv:2307.04571, ROLeR arXiv:2407.13163, EasyRL4Rec arXiv:2402.15164):

* **Reward**: a pluggable *reward source*. `GroundTruthRecEnv` looks the (user, item) entry up in the
  complete ground-truth matrix; `recgym.envs.interactive.InteractiveRecEnv` plugs in a world model plus
  shaping. Either override `RecEnv._rewards` in a subclass or pass ``reward_fn(users, items, state) ->
  float32 [B]`` (``state`` is a `RecState` snapshot taken *before* the transition).
* **Quit rule** (window N = ``num_leave_compute``, threshold M = ``leave_threshold``), checked on the new
  item against the last N items of the episode *before* it; step 0 never quits:

  - ``distance`` (Coat, Yahoo, ML-1M, synthetic): quit if ``dist(new, j) < M`` for any j in the window,
    ``dist(i, j) = ||GT[:, i] - GT[:, j]||_2`` over ground-truth columns, precomputed once as an item x item
    matrix on the device (float32 up to 4,096 items, float16 above; see `item_distance_matrix`). With
    M <= 0 the rule never fires and the matrix is not built.
  - ``category`` (KuaiRec, KuaiRand): quit if some category of the new item appears more than M times among
    the window's items (M = 0: quit as soon as it shares a category with any of them).

  As in DORL, the quitting step still pays its reward and counts in the length (``terminated=True``).
* ``max_turn`` (default 30): an episode that reaches it without quitting is truncated (``truncated=True``).
* **Modes**: ``FB`` repeats allowed; ``NX_0`` no repeats (``info["action_mask"]`` is False on items already
  recommended in the episode), natural quit; ``NX_10`` no repeats, quitting disabled, exactly 10 steps
  (``max_turn`` forced to 10).
* **Repeating a masked item** (NX modes) is never silent: ``invalid_action="raise"`` (default) raises a
  ValueError naming the env, the item and the step; ``invalid_action="terminate"`` gives reward 0, ends the
  episode (``terminated=True``) and sets ``info["invalid_action"]`` (for learners that cannot mask).
* **Protocols** (``protocol=``) fix N, M, the mode and max_turn per dataset; see `recgym.envs.protocol`. Explicit
  ``num_leave_compute`` / ``leave_threshold`` / ``mode`` / ``max_turn`` / ``quit_rule`` kwargs override the
  protocol; ``protocol="custom"`` starts from N=1, M=0, NX_0, max_turn=30. The effective values are in
  ``env.protocol``, in the ``info["protocol"]`` returned by ``reset`` and in ``env.spec.kwargs``.

Observation (batched): dict of tensors ``user`` int64 [B], ``step`` int64 [B] (steps taken in the episode),
``items`` int64 [B, W] (last W recommended item ids, most recent last, -1 padded), ``rewards`` float32 [B, W]
(their rewards, 0 padded); W = ``history_len`` (default 10). ``info["action_mask"]``: bool [B, n_items],
True = allowed (all True in FB; then a broadcast view, no memory). By default (``copy_mask=True``) a returned
mask is never written again: the env copies its buffer before the next write, so agents may store masks in
rollouts. ``copy_mask=False`` hands out the live buffer, updated in place by the next ``step``/``reset``; it
saves the copy (as costly as the rest of a step at 1,024 envs) but a stored mask then silently changes (this
once gave A2C -inf log-probs for its own actions): use it only when masks are consumed before the next step.
Observation tensors are never written after being returned.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from recgym.data.base import LoggedDataset
from recgym.envs.core import BatchedEnv, SingleEnvAdapter, as_action_tensor, check_action_range
from recgym.envs.protocol import (  # re-exported (tables live there)
    MODES,
    PROTOCOLS,
    Protocol,
    resolve_protocol,
)

__all__ = [
    "MODES",
    "PROTOCOLS",
    "GroundTruthRecEnv",
    "RecEnv",
    "RecState",
    "compact_matrix",
    "item_distance_matrix",
    "make_ground_truth_single",
    "make_ground_truth_vec",
    "resolve_protocol",
]


def compact_matrix(mat: np.ndarray, dtype: str = "auto", max_float32_bytes: int = 512 << 20) -> torch.Tensor:
    """The smallest lossless dtype for a reward matrix: uint8 (integers 0..255), float16, else float32.

    With ``dtype="auto"`` a float32-only matrix larger than ``max_float32_bytes`` is stored as float16 (lossy;
    relative error <= 2**-11), so a KuaiRand-sized matrix stays well under 1 GB. Explicit ``"uint8"``,
    ``"float16"``, ``"float32"`` force the dtype.
    """
    if dtype == "auto" and isinstance(mat, np.ndarray) and mat.dtype in (np.uint8, np.float16):
        return torch.from_numpy(mat)  # already compact (shares memory)
    arr = np.asarray(mat, dtype=np.float32)
    if dtype == "auto":
        finite = bool(np.isfinite(arr).all())
        if finite and arr.min() >= 0 and arr.max() <= 255 and np.array_equal(arr, np.round(arr)):
            return torch.from_numpy(arr.astype(np.uint8))
        f16 = arr.astype(np.float16)
        if np.array_equal(f16.astype(np.float32), arr) or arr.nbytes > max_float32_bytes:
            return torch.from_numpy(f16)
        return torch.from_numpy(arr)
    table = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32}
    if dtype not in table:
        raise ValueError(f"gt_dtype={dtype!r}, expected one of {['auto', *table]}")
    return torch.from_numpy(arr.astype(table[dtype]))


def item_distance_matrix(
    gt: np.ndarray | torch.Tensor, device: torch.device | str = "cpu", chunk: int = 1024
) -> torch.Tensor:
    """``dist[i, j] = ||GT[:, i] - GT[:, j]||_2`` (item x item), computed in column chunks, exactly: in float32
    for integer-valued matrices whose dot products stay below 2**24, in float64 otherwise.

    Stored float32 for up to 4,096 items and float16 above (7,583 items: 115 MB).
    """
    g = torch.as_tensor(np.asarray(gt, dtype=np.float64) if not isinstance(gt, torch.Tensor) else gt)
    g = g.to(device=device, dtype=torch.float64).T.contiguous()  # [n_items, n_users]
    # integer-valued matrices (ratings, clicks) are exact in float32 while every dot product stays < 2**24
    if bool(torch.equal(g, g.round())) and float(g.abs().max()) ** 2 * g.shape[1] < 2**24:
        g = g.float()
    n = g.shape[0]
    out_dtype = torch.float32 if n <= 4096 else torch.float16
    sq = (g * g).sum(1)
    out = torch.empty((n, n), dtype=out_dtype, device=g.device)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        d2 = sq[s:e, None] + sq[None, :] - 2.0 * (g[s:e] @ g.T)
        out[s:e] = d2.double().clamp_min_(0.0).sqrt_().to(out_dtype)
    out.fill_diagonal_(0.0)
    return out


_DIST_CACHE: list[tuple[tuple, torch.Tensor]] = []


def _cached_distances(src: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """`item_distance_matrix`, reused for a source matrix of identical content (the last 2 are kept).

    Keyed by shape, dtype and a blake2b digest of the bytes, so copies of a dataset (``gym.make`` deep-copies
    its kwargs) share one matrix.
    """
    arr = src.detach().cpu().numpy() if isinstance(src, torch.Tensor) else np.ascontiguousarray(src)
    key = (arr.shape, str(arr.dtype), hashlib.blake2b(arr.tobytes(), digest_size=16).hexdigest(), str(device))
    for k, dist in _DIST_CACHE:
        if k == key:
            return dist
    dist = item_distance_matrix(arr, device)
    _DIST_CACHE.append((key, dist))
    del _DIST_CACHE[:-2]
    return dist


class RecState(NamedTuple):
    """Snapshot of the batched state handed to reward sources (taken before the transition)."""

    user: torch.Tensor  # int64 [B]
    step: torch.Tensor  # int64 [B], steps already taken in the episode
    items: torch.Tensor  # int64 [B, K], last K items (most recent last, -1 padded)
    rewards: torch.Tensor  # float32 [B, K]
    active: torch.Tensor  # bool [B], envs actually stepping now


class RecEnv(BatchedEnv):
    """Batched recommendation dynamics with a pluggable reward source (see the module docstring)."""

    def __init__(
        self,
        dataset: LoggedDataset,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        protocol: str | None = "dorl",
        mode: str | None = None,
        max_turn: int | None = None,
        num_leave_compute: int | None = None,
        leave_threshold: float | None = None,
        quit_rule: str | None = None,
        history_len: int = 10,
        users: Any = None,
        invalid_action: str = "raise",
        reward_fn: Any = None,
        reward_range: tuple[float, float] = (-np.inf, np.inf),
        distance_source: np.ndarray | torch.Tensor | None = None,
        item_distances: torch.Tensor | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        validate_actions: bool = True,
        copy_mask: bool = True,
    ) -> None:
        if not isinstance(dataset, LoggedDataset):
            raise TypeError(f"dataset must be a LoggedDataset, got {type(dataset).__name__}")
        if invalid_action not in ("raise", "terminate"):
            raise ValueError(f"invalid_action={invalid_action!r}, expected 'raise' or 'terminate'")
        if int(history_len) < 1:
            raise ValueError(f"history_len must be >= 1, got {history_len}")
        self.dataset = dataset
        self.n_items = int(dataset.n_items)
        self.history_len = int(history_len)
        self.invalid_action = invalid_action
        self.reward_fn = reward_fn
        self.validate_actions = bool(validate_actions)
        self.copy_mask = bool(copy_mask)
        self._mask_published = False
        self._protocol_name = protocol
        self._explicit = {
            "mode": mode,
            "max_turn": max_turn,
            "num_leave_compute": num_leave_compute,
            "leave_threshold": leave_threshold,
            "quit_rule": quit_rule,
        }
        base = resolve_protocol(protocol, dataset.name, dataset.quit_rule, **self._explicit)
        self._base_protocol = base

        # evaluation users
        n_pool_max = dataset.n_gt_users if dataset.n_gt_users > 0 else dataset.n_users
        if users is None:
            pool = np.arange(n_pool_max, dtype=np.int64)
        elif isinstance(users, torch.Tensor) and users.dtype == torch.int64 and users.dim() == 1 and users.numel():
            pool = users  # shared as is (siblings); validated below
            lo_u, hi_u = int(users.min()), int(users.max())
            if lo_u < 0 or hi_u >= n_pool_max:
                raise ValueError(f"users must be ids in [0, {n_pool_max}), got min {lo_u} max {hi_u}")
        else:
            pool = np.asarray(users, dtype=np.int64).reshape(-1)
            if pool.size == 0:
                raise ValueError("users must be a non-empty list of user ids")
            if pool.min() < 0 or pool.max() >= n_pool_max:
                raise ValueError(
                    f"users must be ids in [0, {n_pool_max}) (the evaluation users), got min {pool.min()} "
                    f"max {pool.max()}"
                )
        self.n_user_space = int(max(dataset.n_users, n_pool_max))

        max_turn_space = max(base.max_turn, 10)
        lo = float(min(0.0, reward_range[0]))
        hi = float(max(0.0, reward_range[1]))
        w = self.history_len
        obs_space = spaces.Dict(
            {
                "user": spaces.Discrete(self.n_user_space),
                "step": spaces.Discrete(max_turn_space + 1),
                "items": spaces.Box(-1, self.n_items - 1, shape=(w,), dtype=np.int64),
                "rewards": spaces.Box(lo, hi, shape=(w,), dtype=np.float32),
            }
        )
        super().__init__(
            num_envs, obs_space, spaces.Discrete(self.n_items), device=device, autoreset_mode=autoreset_mode
        )
        dev = self.device
        self.users_pool = torch.as_tensor(pool, device=dev)
        self.item_categories = torch.as_tensor(np.asarray(dataset.item_categories, dtype=bool), device=dev)
        self._distance_source = distance_source
        self._item_dist: torch.Tensor | None = item_distances
        self._set_protocol(base)

        b = self.num_envs
        self.user = torch.zeros(b, dtype=torch.int64, device=dev)
        self.step_count = torch.zeros(b, dtype=torch.int64, device=dev)
        self.buf_items = torch.full((b, self._k), -1, dtype=torch.int64, device=dev)
        self.buf_rewards = torch.zeros((b, self._k), dtype=torch.float32, device=dev)

    # -- protocol --------------------------------------------------------------------------------------------
    def _set_protocol(self, base: Protocol) -> None:
        p = base.as_dict()
        if p["mode"] == "NX_10":
            p["max_turn"] = 10
            p["quitting"] = False
        else:
            p["quitting"] = p["num_leave_compute"] > 0 and not (
                p["quit_rule"] == "distance" and p["leave_threshold"] <= 0
            )
        self.protocol = p
        self.masked = p["mode"] != "FB"
        self.max_turn = int(p["max_turn"])
        self._n_win = int(p["num_leave_compute"]) if p["quitting"] else 0
        self._k = max(self.history_len, self._n_win)
        if p["quitting"] and p["quit_rule"] == "distance" and self._item_dist is None:
            src = self._distance_source
            if src is None:
                src = self.dataset.quit_distance_source()
            if src is None:
                raise ValueError(f"{self.dataset.name}: distance quit rule needs a ground-truth matrix")
            self._item_dist = _cached_distances(src, self.device)
        if p["quitting"] and p["quit_rule"] == "distance" and self._item_dist is not None:
            # share of item pairs closer than M: near 1 means nearly every episode ends at step 2
            d = self._item_dist
            n = d.shape[0]
            close = float(((d.float() < p["leave_threshold"]).sum() - n) / max(n * (n - 1), 1))
            p["close_pair_share"] = round(close, 4)
            if close > 0.9:
                p["note"] = (f"{close:.0%} of item pairs are closer than leave_threshold={p['leave_threshold']}: "
                             "nearly every episode ends at its second step with this ground truth")
        if self.masked:
            self._mask = torch.ones((self.num_envs, self.n_items), dtype=torch.bool, device=self.device)
        else:
            self._mask = torch.ones((1, self.n_items), dtype=torch.bool, device=self.device).expand(
                self.num_envs, self.n_items
            )

    def set_mode(self, mode: str) -> None:
        """Switch the evaluation mode (FB / NX_0 / NX_10); takes effect at the next full ``reset``."""
        new = resolve_protocol(self._protocol_name, self.dataset.name, self.dataset.quit_rule, **{**self._explicit,
                               "mode": mode})
        k_old = self._k
        self._base_protocol = new
        self._set_protocol(new)
        if self._k != k_old:
            b = self.num_envs
            self.buf_items = torch.full((b, self._k), -1, dtype=torch.int64, device=self.device)
            self.buf_rewards = torch.zeros((b, self._k), dtype=torch.float32, device=self.device)
        self._has_reset = False
        self._done = torch.zeros_like(self._done)

    @property
    def mode(self) -> str:
        return str(self.protocol["mode"])

    def effective_kwargs(self) -> dict[str, Any]:
        p = self._base_protocol
        return {
            "protocol": p.name,
            "mode": p.mode,
            "num_leave_compute": p.num_leave_compute,
            "leave_threshold": p.leave_threshold,
            "max_turn": self.protocol["max_turn"],
            "quit_rule": p.quit_rule,
            "history_len": self.history_len,
        }

    # -- reward source ---------------------------------------------------------------------------------------
    def _rewards(self, users: torch.Tensor, items: torch.Tensor, state: RecState) -> torch.Tensor:
        """float32 [B] rewards of recommending ``items`` to ``users``; override or pass ``reward_fn``."""
        if self.reward_fn is None:
            raise NotImplementedError(f"{type(self).__name__} needs a reward source: override _rewards or pass reward_fn")
        return self.reward_fn(users, items, state)

    # -- hooks -----------------------------------------------------------------------------------------------
    def _validate_actions(self, actions: Any, active: torch.Tensor) -> torch.Tensor:
        a = as_action_tensor(actions, num_envs=self.num_envs, device=self.device, kind="int")
        if self.validate_actions:
            check_action_range(a, 0, self.n_items, active)
        return a

    def _reset_envs(self, mask: torch.Tensor) -> None:
        idx = self.per_env_randint(int(self.users_pool.numel()), purpose=1)
        new_user = self.users_pool[idx]
        self.user = torch.where(mask, new_user, self.user)
        self.step_count = torch.where(mask, 0, self.step_count)
        m2 = mask[:, None]
        self.buf_items = torch.where(m2, -1, self.buf_items)
        self.buf_rewards = torch.where(m2, 0.0, self.buf_rewards)
        if self.masked:
            rows = torch.nonzero(mask).flatten()
            if rows.numel():
                self._own_mask().index_fill_(0, rows, True)

    def _quit(self, a: torch.Tensor) -> torch.Tensor:
        """bool [B]: does the user leave on item ``a`` given the last N items (before ``a``)?"""
        n = self._n_win
        window = self.buf_items[:, self._k - n :]
        valid = window >= 0
        w = window.clamp_min(0)
        if self.protocol["quit_rule"] == "distance":
            assert self._item_dist is not None
            d = self._item_dist[a[:, None], w]
            hit = (d.float() < self.protocol["leave_threshold"]) & valid
            return hit.any(1)
        cats_w = self.item_categories[w] & valid[:, :, None]  # [B, N, C]
        counts = cats_w.sum(1)  # [B, C]
        return ((counts > self.protocol["leave_threshold"]) & self.item_categories[a]).any(1)

    def _step_envs(
        self, actions: torch.Tensor, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        a = torch.where(active, actions, 0)  # inactive entries may hold anything; never index with them
        info: dict[str, Any] = {}
        invalid = None
        if self.masked:
            allowed = self._mask.gather(1, a[:, None])[:, 0]
            invalid = active & ~allowed
            if self.invalid_action == "raise":
                if bool(invalid.any()):
                    i = int(torch.nonzero(invalid)[0, 0])
                    raise ValueError(
                        f"actions[{i}] = {int(a[i])} repeats an item already recommended in this episode "
                        f"(mode {self.mode}, step {int(self.step_count[i])}); expected an item with "
                        "info['action_mask'] True (or pass invalid_action='terminate')"
                    )
                invalid = None
            else:
                info["invalid_action"] = invalid
        state = RecState(self.user, self.step_count, self.buf_items, self.buf_rewards, active)
        reward = self._rewards(self.user, a, state).to(torch.float32)
        if self._n_win > 0:
            quit_ = self._quit(a) & (self.step_count > 0)
        else:
            quit_ = torch.zeros_like(active)
        if invalid is not None:
            reward = torch.where(invalid, 0.0, reward)
            quit_ = quit_ | invalid
        new_step = self.step_count + 1
        terminated = quit_ & active
        truncated = (new_step >= self.max_turn) & ~quit_ & active
        reward = torch.where(active, reward, 0.0)
        # state update for the active envs only
        self.step_count = torch.where(active, new_step, self.step_count)
        act2 = active[:, None]
        self.buf_items = torch.where(act2, torch.cat([self.buf_items[:, 1:], a[:, None]], 1), self.buf_items)
        self.buf_rewards = torch.where(
            act2, torch.cat([self.buf_rewards[:, 1:], reward[:, None]], 1), self.buf_rewards
        )
        if self.masked:
            cur = self._mask.gather(1, a[:, None])
            self._own_mask().scatter_(1, a[:, None], cur & ~act2)
        return reward, terminated, truncated, info

    def _observe(self) -> dict[str, torch.Tensor]:
        w = self.history_len
        return {
            "user": self.user,
            "step": self.step_count,
            "items": self.buf_items[:, self._k - w :],
            "rewards": self.buf_rewards[:, self._k - w :],
        }

    def _own_mask(self) -> torch.Tensor:
        """The mask, writable: copied first if it was handed out and ``copy_mask`` is True (else in place)."""
        if self.copy_mask and self._mask_published:
            self._mask = self._mask.clone()
            self._mask_published = False
        return self._mask

    def _step_info(self) -> dict[str, Any]:
        self._mask_published = True
        return {"action_mask": self._mask}

    def _reset_info(self) -> dict[str, Any]:
        return {"protocol": dict(self.protocol)}

    @property
    def action_mask(self) -> torch.Tensor:
        """bool [num_envs, n_items], True = allowed now."""
        return self._mask


def _load(dataset: LoggedDataset | str, data_dir: Any, dataset_kwargs: dict[str, Any] | None) -> LoggedDataset:
    if isinstance(dataset, LoggedDataset):
        return dataset
    if not isinstance(dataset, str):
        raise TypeError(f"dataset must be a LoggedDataset or a dataset name, got {type(dataset).__name__}")
    from recgym.data import load_dataset

    return load_dataset(dataset, data_dir=data_dir, **(dataset_kwargs or {}))


class GroundTruthRecEnv(RecEnv):
    """`RecEnv` whose reward is the ground-truth matrix entry ``GT[user, item]`` (evaluation env).

    The matrix is held on the device in the smallest lossless dtype (`compact_matrix`: uint8 for integer
    ratings / clicks, float16 when exact, float32 otherwise, float16 for float32 matrices above 512 MB);
    ``protocol["gt_dtype"]`` records which.
    """

    def __init__(
        self,
        dataset: LoggedDataset | str = "synthetic",
        num_envs: int = 1,
        *,
        data_dir: Any = None,
        dataset_kwargs: dict[str, Any] | None = None,
        gt_dtype: str = "auto",
        ground_truth_tensor: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        ds = _load(dataset, data_dir, dataset_kwargs)
        if ds.ground_truth is None:
            raise ValueError(f"dataset {ds.name!r} has no ground_truth matrix; GroundTruthRec needs one")
        ctor = {"dataset": ds, "num_envs": num_envs, "gt_dtype": gt_dtype, **kwargs}
        if ground_truth_tensor is not None:
            if tuple(ground_truth_tensor.shape) != tuple(ds.ground_truth.shape):
                raise ValueError(
                    f"ground_truth_tensor has shape {tuple(ground_truth_tensor.shape)}, expected "
                    f"{tuple(ds.ground_truth.shape)}"
                )
            gt = ground_truth_tensor
        else:
            gt = compact_matrix(ds.ground_truth, gt_dtype)
        if "reward_range" not in kwargs:
            kwargs["reward_range"] = (float(np.min(ds.ground_truth)), float(np.max(ds.ground_truth)))
        self._reward_range = kwargs["reward_range"]
        kwargs.setdefault("distance_source", ds.quit_distance_source())
        super().__init__(ds, num_envs, **kwargs)
        self.gt = gt.to(self.device)
        self._gt_flat = self.gt.reshape(-1)
        self.protocol["gt_dtype"] = str(self.gt.dtype).replace("torch.", "")
        self._ctor_kwargs = ctor

    def _set_protocol(self, base: Protocol) -> None:
        super()._set_protocol(base)
        if "ground_truth" in self.dataset.meta:  # provenance: comparable to the published numbers or a fallback
            self.protocol["ground_truth"] = dict(self.dataset.meta["ground_truth"])
        if hasattr(self, "gt"):
            self.protocol["gt_dtype"] = str(self.gt.dtype).replace("torch.", "")

    def make_sibling(self, num_envs: int, **overrides: Any) -> GroundTruthRecEnv:
        """Same env with another ``num_envs``; reuses the item-distance matrix (no recomputation)."""
        if self._item_dist is not None and "item_distances" not in overrides:
            overrides["item_distances"] = self._item_dist
        overrides.setdefault("ground_truth_tensor", self.gt)
        overrides.setdefault("reward_range", self._reward_range)
        overrides.setdefault("users", self.users_pool)
        return super().make_sibling(num_envs, **overrides)  # type: ignore[return-value]

    def _rewards(self, users: torch.Tensor, items: torch.Tensor, state: RecState) -> torch.Tensor:
        if self.reward_fn is not None:
            return self.reward_fn(users, items, state)
        return self._gt_flat[users * self.n_items + items].to(torch.float32)

    def optimal_return(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """Best achievable return per user when nobody quits: top-``max_turn`` sum (NX) / ``max_turn`` x max (FB).

        Exact only when the quit rule never fires (e.g. the synthetic protocols, M=0 distance rule).
        """
        u = self.users_pool if users is None else users
        rows = self.gt[u].float()
        t = self.max_turn
        if self.masked:
            return rows.topk(min(t, self.n_items), dim=1).values.sum(1)
        return rows.max(1).values * t


def make_ground_truth_vec(num_envs: int = 1, **kwargs: Any) -> GroundTruthRecEnv:
    """``vector_entry_point`` of ``GroundTruthRec-*-v0``: the batched torch env."""
    kwargs.pop("max_episode_steps", None)
    return GroundTruthRecEnv(num_envs=num_envs, **kwargs)


def make_ground_truth_single(**kwargs: Any) -> SingleEnvAdapter:
    """``entry_point`` of ``GroundTruthRec-*-v0``: a numpy single env over a num_envs=1 `GroundTruthRecEnv`."""
    kwargs.pop("num_envs", None)
    kwargs["autoreset_mode"] = AutoresetMode.DISABLED
    return SingleEnvAdapter(GroundTruthRecEnv(num_envs=1, **kwargs))
