"""Interactive-recommendation dynamics (`RecEnv`) and the ground-truth evaluation env (`GroundTruthRecEnv`).

One episode = one user drawn uniformly from the evaluation users (the ground-truth users, or a fixed
``users=`` list). Action = one item id (int64 tensor [num_envs]). The protocol follows DORL / ROLeR /
EasyRL4Rec (DORL arXiv:2307.04571, ROLeR arXiv:2407.13163, EasyRL4Rec arXiv:2402.15164):

* **Reward**: a pluggable *reward source*. `GroundTruthRecEnv` looks the (user, item) entry up in the
  complete ground-truth matrix; `recgym.envs.interactive.InteractiveRecEnv` plugs in a world model plus
  shaping. Either override `RecEnv._rewards` in a subclass or pass ``reward_fn(users, items, state) ->
  float32 [B]`` (``state`` is a `RecState` snapshot taken *before* the transition).
* **Quit rule** (window N = ``num_leave_compute``, threshold M = ``leave_threshold``), checked on the new
  item against a window of the items of the episode *before* it (``quit_window``: the last N items, or the
  original code's slice ``seq[t - N : t]``; see `recgym.envs.protocol`); step 0 never quits.

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
  ValueError naming the env, the item and the step (unless ``validate_actions=False``, see below);
  ``invalid_action="terminate"`` gives reward 0, ends the episode (``terminated=True``) and sets
  ``info["invalid_action"]`` (for learners that cannot mask).
* **Protocols** (``protocol=``) fix N, M, the window, the mode and max_turn per dataset; see
  `recgym.envs.protocol`. Explicit ``num_leave_compute`` / ``leave_threshold`` / ``mode`` / ``max_turn`` /
  ``quit_rule`` / ``quit_window`` kwargs override the protocol; ``protocol="custom"`` starts from N=1, M=0, NX_0, max_turn=30. The effective values are in
  ``env.protocol``, in the ``info["protocol"]`` returned by ``reset`` and in ``env.spec.kwargs``.

Observation (batched): dict of tensors ``user`` int64 [B], ``step`` int64 [B] (steps taken in the episode),
``items`` int64 [B, W] (last W recommended item ids, most recent last, -1 padded), ``rewards`` float32 [B, W]
(their rewards, 0 padded); W = ``history_len`` (default 10). ``info["action_mask"]``: bool [B, n_items],
True = allowed (all True in FB; then a broadcast view, no memory). In NX modes the env keeps, per env, a bit
set of the items recommended in the episode (n_items / 8 bytes) and builds the mask from it only when
``info["action_mask"]`` is read (`recgym.envs.core.InfoDict`): an agent that never reads it costs nothing, and
a mask read later is the mask of its own step (built from that step's bit sets, which are replaced, never
written, once handed out). By default (``copy_mask=True``) every mask is a new tensor, never written again, so
agents may store masks in rollouts. ``copy_mask=False`` builds every mask into one buffer of the env, which the
next mask built overwrites: it saves an allocation, but a stored mask then silently changes (this once gave A2C
-inf log-probs for its own actions); use it only when masks are consumed before the next one is read.
Observation tensors are never written after being returned.

``validate_actions`` (default True): ids out of range, and repeats in NX modes with ``invalid_action="raise"``,
raise a ValueError; the checks of a step cost one read-back of a device value (`BatchedEnv.defer_check`).
``validate_actions=False`` skips them and reads nothing back: the caller vouches for its actions (an id out of
range is clamped into range, a repeat is stepped as a new item).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from recgym.data.base import LoggedDataset
from recgym.envs.core import BatchedEnv, Lazy, SingleEnvAdapter, as_action_tensor, check_action_range
from recgym.envs.matrices import (  # compact_matrix and item_distance_matrix re-exported
    byte_masks,
    cached_distances,
    close_pair_share,
    compact_matrix,
    item_distance_matrix,
    mask_from_bits,
    quit_pair_table,
    window_keep_table,
)
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


_MAX_PAIR_TABLE = 1 << 28  # bytes of a quit pair table (16,383 items)
_FLOAT_COPY_MAX = 1 << 23  # entries of a ground truth that GroundTruthRecEnv also keeps as float32 (32 MB)


class _Actions(NamedTuple):
    """What `RecEnv._validate_actions` hands to `RecEnv._step_envs`."""

    a: torch.Tensor  # int64 [B], clamped to [0, n_items)
    repeat: torch.Tensor | None  # bool [B]: a was recommended before in the episode (NX modes, when needed)
    where: torch.Tensor | None  # int64 [B]: flat index of a's bit-set word (NX modes)
    word: torch.Tensor | None  # int64 [B]: that word
    bit: torch.Tensor | None  # int64 [B]: a's bit in it


class RecState(NamedTuple):
    """Snapshot of the batched state handed to reward sources (taken before the transition)."""

    user: torch.Tensor  # int64 [B]
    step: torch.Tensor  # int64 [B], steps already taken in the episode
    items: torch.Tensor  # int64 [B, K], last K items (most recent last, -1 padded)
    rewards: torch.Tensor  # float32 [B, K]
    active: torch.Tensor  # bool [B], envs actually stepping now


class RecEnv(BatchedEnv):
    """Batched recommendation dynamics with a pluggable reward source (see the module docstring)."""

    reset_every_step = True

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
        quit_window: str | None = None,
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
        self._mask_buf: torch.Tensor | None = None  # the one mask buffer of copy_mask=False
        self._pairs: tuple[tuple, torch.Tensor | None] | None = None  # (key, quit pair table), built on first use
        self._protocol_name = protocol
        self._explicit = {
            "mode": mode,
            "max_turn": max_turn,
            "num_leave_compute": num_leave_compute,
            "leave_threshold": leave_threshold,
            "quit_rule": quit_rule,
            "quit_window": quit_window,
        }
        base = resolve_protocol(protocol, dataset.name, dataset.quit_rule, **self._explicit)
        self._base_protocol = base

        # evaluation users
        n_pool_max = dataset.n_gt_users if dataset.n_gt_users > 0 else dataset.n_users
        if users is None:
            pool = np.arange(n_pool_max, dtype=np.int64)
        else:  # a 1-D int64 tensor (a sibling's pool) is shared as is
            shared = isinstance(users, torch.Tensor) and users.dtype == torch.int64 and users.dim() == 1
            pool = users if shared else np.asarray(users, dtype=np.int64).reshape(-1)
            if len(pool) == 0:
                raise ValueError("users must be a non-empty list of user ids")
            lo_u, hi_u = int(pool.min()), int(pool.max())
            if lo_u < 0 or hi_u >= n_pool_max:
                raise ValueError(f"users must be ids in [0, {n_pool_max}) (the evaluation users), got min {lo_u} "
                                 f"max {hi_u}")
        self.n_user_space = int(max(dataset.n_users, n_pool_max))

        max_turn_space = max(base.max_turn, 10)
        lo = float(min(0.0, reward_range[0]))
        hi = float(max(0.0, reward_range[1]))
        w = self.history_len
        obs_space = spaces.Dict({
            "user": spaces.Discrete(self.n_user_space),
            "step": spaces.Discrete(max_turn_space + 1),
            "items": spaces.Box(-1, self.n_items - 1, shape=(w,), dtype=np.int64),
            "rewards": spaces.Box(lo, hi, shape=(w,), dtype=np.float32),
        })
        super().__init__(num_envs, obs_space, spaces.Discrete(self.n_items), device=device,
                         autoreset_mode=autoreset_mode)
        dev = self.device
        self.users_pool = torch.as_tensor(pool, device=dev)
        self.item_categories = torch.as_tensor(np.asarray(dataset.item_categories, dtype=bool), device=dev)
        self._distance_source = distance_source
        self._item_dist: torch.Tensor | None = item_distances
        self._pool_is_range = bool(torch.equal(self.users_pool.cpu(), torch.arange(self.users_pool.numel())))
        # no-repeat bit set: item i is bit i % 64 of word i // 64 of the env's row of _words words
        self._words = -(-self.n_items // 64)
        items = torch.arange(self.n_items, dtype=torch.int64, device=dev)
        self._item_word = items >> 6
        self._item_bit = torch.ones_like(items) << (items & 63)
        self._row_words = torch.arange(self.num_envs, dtype=torch.int64, device=dev) * self._words
        self._batch_shape = torch.Size([self.num_envs])
        self._byte_masks = byte_masks(dev)  # int64 [256], see _mask_from
        self._set_protocol(base)
        self._alloc_state()

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
        self._n_win = n_win = int(p["num_leave_compute"]) if p["quitting"] else 0
        self._k = max(self.history_len, n_win)
        self._win_keep = window_keep_table(n_win, p["quit_window"], self.device)  # None: all slots count
        if p["quitting"] and p["quit_rule"] == "distance" and self._item_dist is None:
            src = self._distance_source
            if src is None:
                src = self.dataset.quit_distance_source()
            if src is None:
                raise ValueError(f"{self.dataset.name}: distance quit rule needs a ground-truth matrix")
            self._item_dist = cached_distances(src, self.device)
        if p["quitting"] and p["quit_rule"] == "distance" and self._item_dist is not None:
            # share of item pairs closer than M: near 1 means nearly every episode ends at step 2
            close = close_pair_share(self._item_dist, p["leave_threshold"])
            p["close_pair_share"] = round(close, 4)
            if close > 0.9:
                p["note"] = (f"{close:.0%} of item pairs are closer than leave_threshold={p['leave_threshold']}: "
                             "nearly every episode ends at its second step with this ground truth")
        self._pairs_checked = False  # the next _quit_pairs() checks that the table fits the protocol
        # FB: every item allowed, a broadcast view (no memory); NX masks are built from the bit sets on demand
        self._all_true = torch.ones((1, self.n_items), dtype=torch.bool, device=self.device).expand(
            self.num_envs, self.n_items
        )

    def _alloc_state(self) -> None:
        """The per-env state at its reset values (a full ``reset`` draws the users)."""
        b, dev = self.num_envs, self.device
        self.user = torch.zeros(b, dtype=torch.int64, device=dev)
        self.step_count = torch.zeros(b, dtype=torch.int64, device=dev)
        self.buf_items = torch.full((b, self._k), -1, dtype=torch.int64, device=dev)
        self.buf_rewards = torch.zeros((b, self._k), dtype=torch.float32, device=dev)
        # NX modes: the items recommended in the episode, a bit set (flat int64 [B * words])
        self._bits = torch.zeros(b * self._words if self.masked else 0, dtype=torch.int64, device=dev)
        # True while step_count, buf_items, buf_rewards and _bits were made by this step's _step_envs and not
        # handed out yet (in an observation or a mask): only then does the autoreset write them in place
        self._fresh = False

    def set_mode(self, mode: str) -> None:
        """Switch the evaluation mode (FB / NX_0 / NX_10); takes effect at the next full ``reset``."""
        new = resolve_protocol(self._protocol_name, self.dataset.name, self.dataset.quit_rule, **{**self._explicit,
                               "mode": mode})
        self._base_protocol = new
        self._set_protocol(new)
        self._alloc_state()
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
            "quit_window": p.quit_window,
            "history_len": self.history_len,
        }

    # -- reward source ---------------------------------------------------------------------------------------
    def _rewards(self, users: torch.Tensor, items: torch.Tensor, state: RecState) -> torch.Tensor:
        """float32 [B] rewards of recommending ``items`` to ``users``; override or pass ``reward_fn``."""
        if self.reward_fn is None:
            raise NotImplementedError(f"{type(self).__name__} needs a reward source: override _rewards or pass reward_fn")
        return self.reward_fn(users, items, state)

    # -- hooks -----------------------------------------------------------------------------------------------
    def _validate_actions(self, actions: Any, active: torch.Tensor) -> _Actions:
        if (type(actions) is torch.Tensor and actions.dtype == torch.int64 and actions.shape == self._batch_shape
                and actions.device == self.device):
            raw = actions  # the common case, without the general conversion's checks
        else:
            raw = as_action_tensor(actions, num_envs=self.num_envs, device=self.device, kind="int")
        word_of = None
        if self._readback_ok and (self.masked or self.validate_actions):
            # cpu: index_select checks its indices itself, so a batch of ids in range needs no clamp; an IndexError
            # sends any other batch (e.g. with ignored garbage actions of ended envs) to the clamped path
            try:
                word_of = torch.index_select(self._item_word, 0, raw)
            except IndexError:
                pass
        clamped = word_of is None
        # inactive envs' actions are ignored and may hold anything: never index with them unclamped
        a = raw.clamp(0, self.n_items - 1) if clamped else raw
        word = bit = where = repeat = None
        if self.masked:
            where = (torch.index_select(self._item_word, 0, a) if word_of is None else word_of) + self._row_words
            word = torch.index_select(self._bits, 0, where)
            bit = torch.index_select(self._item_bit, 0, a)
            if self.invalid_action == "terminate":
                repeat = (word & bit) != 0
        if self.validate_actions:
            # nonzero where the action was out of range (clamped) or, in NX modes, repeats an item
            bad = a ^ raw if clamped else None
            if self.masked and self.invalid_action == "raise":
                bad = word & bit if bad is None else bad | (word & bit)
            if bad is not None:
                self.defer_check(bad * active, functools.partial(self._action_error, raw, active, word, bit))
        return _Actions(a, repeat, where, word, bit)

    def _action_error(self, raw: torch.Tensor, active: torch.Tensor, word: torch.Tensor | None,
                      bit: torch.Tensor | None) -> Exception:
        check_action_range(raw, 0, self.n_items, active)  # raises the range error, if that is the error
        assert word is not None and bit is not None
        i = int(torch.nonzero(((word & bit) != 0) & active)[0, 0])
        return ValueError(
            f"actions[{i}] = {int(raw[i])} repeats an item already recommended in this episode "
            f"(mode {self.mode}, step {int(self.step_count[i])}); expected an item with "
            "info['action_mask'] True (or pass invalid_action='terminate')"
        )

    def _reset_envs(self, mask: torch.Tensor) -> None:
        idx = self.episode_randint(int(self.users_pool.numel()), purpose=1)
        self.user = torch.where(mask, idx if self._pool_is_range else self.users_pool[idx], self.user)
        steps, items, rewards = self.step_count, self.buf_items, self.buf_rewards
        bits = self._bits.view(self.num_envs, self._words) if self.masked else None
        if not self._fresh:  # handed out (in an observation or a mask): copy, never write
            steps, items, rewards = steps.clone(), items.clone(), rewards.clone()
            bits = None if bits is None else bits.clone()
            self.step_count, self.buf_items, self.buf_rewards = steps, items, rewards
            if bits is not None:
                self._bits = bits.view(-1)
            self._fresh = True
        if self._readback_ok:
            # rows by index: work in proportion to the resets (broadcast masked fills of narrow rows are slow)
            rows = mask.nonzero(as_tuple=True)[0]
            steps.index_fill_(0, rows, 0)
            items.index_fill_(0, rows, -1)
            rewards.index_fill_(0, rows, 0.0)
            if bits is not None:
                bits.index_fill_(0, rows, 0)
        else:  # no read-back on accelerators
            m2 = mask[:, None]
            steps.masked_fill_(mask, 0)
            items.masked_fill_(m2, -1)
            rewards.masked_fill_(m2, 0.0)
            if bits is not None:
                bits.masked_fill_(m2, 0)

    def _quit_pairs(self) -> torch.Tensor | None:
        """The env's `quit_pair_table`, built once (shared with siblings); None without quitting, where a pair
        table cannot decide (category rule with M >= 1 or M < 0: counts matter) or would exceed 256 MB."""
        p, n, m = self.protocol, self.n_items, self.protocol["leave_threshold"]
        key = (p["quit_rule"], m, n, str(self.device))
        if self._pairs is None or self._pairs[0] != key:
            fits = p["quitting"] and n * (n + 1) <= _MAX_PAIR_TABLE and (p["quit_rule"] == "distance" or 0 <= m < 1)
            table = quit_pair_table(p["quit_rule"], m, self._item_dist, self.item_categories) if fits else None
            self._pairs = (key, table)
        self._pairs_checked = True
        return self._pairs[1]

    def _quit(self, a: torch.Tensor, a1: torch.Tensor) -> torch.Tensor:
        """bool [B]: does the user leave on item ``a`` (``a1``: the same as [B, 1]) given the quit window?"""
        n = self._n_win
        window = self.buf_items if n == self._k else self.buf_items[:, self._k - n :]
        # published window early in an episode: only the slots of seq[t - N : t] count (one gather, no read-back)
        keep = None if self._win_keep is None else torch.index_select(self._win_keep, 0,
                                                                      self.step_count.clamp_max(n))
        pairs = self._pairs[1] if self._pairs_checked else self._quit_pairs()  # type: ignore[index]
        if pairs is not None:
            # empty slots hold -1: index a*(n+1) - 1 is the False column n of row a - 1 (of the last row for a = 0)
            hit = torch.take(pairs, torch.add(window, a1, alpha=self.n_items + 1))
            return (hit if keep is None else hit & keep).any(1)
        valid = window >= 0 if keep is None else (window >= 0) & keep
        w = window.clamp_min(0)
        if self.protocol["quit_rule"] == "distance":
            assert self._item_dist is not None
            d = self._item_dist[a1, w]
            hit = (d.float() < self.protocol["leave_threshold"]) & valid
            return hit.any(1) & (self.step_count > 0)
        cats_w = self.item_categories[w] & valid[:, :, None]  # [B, N, C]
        counts = cats_w.sum(1)  # [B, C]
        quit_ = ((counts > self.protocol["leave_threshold"]) & self.item_categories[a]).any(1)
        return quit_ & (self.step_count > 0)

    def _step_envs(
        self, actions: _Actions, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        # inactive (ended) envs are stepped too, on their clamped ignored actions: core resets them right after
        a, repeat = actions.a, actions.repeat
        info: dict[str, Any] = {}
        step = self.step_count
        state = RecState(self.user, step, self.buf_items, self.buf_rewards, active)
        reward = self._rewards(self.user, a, state)
        if reward.dtype != torch.float32:
            reward = reward.to(torch.float32)
        a1 = a[:, None]
        quit_ = self._quit(a, a1) if self._n_win > 0 else None
        if self.masked and self.invalid_action == "terminate":
            assert repeat is not None
            invalid = repeat & active
            info["invalid_action"] = invalid
            reward = reward.masked_fill(invalid, 0.0)
            quit_ = invalid if quit_ is None else quit_ | invalid
        new_step = step + 1
        at_end = new_step >= self.max_turn
        if quit_ is None:
            terminated = torch.zeros_like(active)
            truncated = at_end & active
        else:
            terminated = quit_ & active
            truncated = (at_end > quit_) & active  # at the end and not quitting
        reward = torch.where(active, reward, 0.0)
        self.step_count = new_step
        self.buf_items = torch.cat([self.buf_items[:, 1:], a1], 1)
        self.buf_rewards = torch.cat([self.buf_rewards[:, 1:], reward[:, None]], 1)
        if self.masked:
            # a new tensor, not written in place: masks handed out earlier are built from the old one
            self._bits = self._bits.index_put((actions.where,), actions.word | actions.bit)
        self._fresh = True
        return reward, terminated, truncated, info

    def _observe(self) -> dict[str, torch.Tensor]:
        self._fresh = False
        w, k = self.history_len, self._k
        return {
            "user": self.user,
            "step": self.step_count,
            "items": self.buf_items if k == w else self.buf_items[:, k - w :],
            "rewards": self.buf_rewards if k == w else self.buf_rewards[:, k - w :],
        }

    def _mask_from(self, bits: torch.Tensor) -> torch.Tensor:
        """bool [B, n_items] no-repeat mask of the bit sets ``bits`` (False = already recommended)."""
        b, n = self.num_envs, self.n_items
        full = mask_from_bits(bits, self._byte_masks, b)
        if self.copy_mask:
            return full if n == self._words * 64 else full[:, :n].contiguous()
        if self._mask_buf is None:
            self._mask_buf = torch.empty((b, n), dtype=torch.bool, device=self.device)
        return self._mask_buf.copy_(full[:, :n])

    def _step_info(self) -> dict[str, Any]:
        if not self.masked:
            return {"action_mask": self._all_true}
        bits = self._bits
        self._fresh = False
        return {"action_mask": Lazy(lambda: self._mask_from(bits))}

    def _reset_info(self) -> dict[str, Any]:
        return {"protocol": dict(self.protocol)}

    def make_sibling(self, num_envs: int, **overrides: Any) -> RecEnv:
        """Same env with another ``num_envs``; shares the quit pair table (built once)."""
        sib = super().make_sibling(num_envs, **overrides)
        assert isinstance(sib, RecEnv)
        if self._n_win > 0:
            self._quit_pairs()
            sib._pairs = self._pairs  # sib checks its protocol against the table's key on first use
        return sib

    @property
    def action_mask(self) -> torch.Tensor:
        """bool [num_envs, n_items], True = allowed now (built on each access in NX modes)."""
        return self._mask_from(self._bits) if self.masked else self._all_true


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
        # rewards read as float32: a float32 copy of a small matrix saves a conversion per step
        small = self.gt.numel() <= _FLOAT_COPY_MAX and self.gt.dtype != torch.float32
        self._reward_flat = self._gt_flat.float() if small else self._gt_flat
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
        r = torch.index_select(self._reward_flat, 0, torch.add(items, users, alpha=self.n_items))
        return r if r.dtype == torch.float32 else r.float()

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
