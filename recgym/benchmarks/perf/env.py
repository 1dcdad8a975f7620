"""Env throughput: recgym's batched env against a minimal fused torch step doing the same work, in one run.

`env_throughput` measures and returns the table rows; `format_env_throughput` renders them. Both are what
``recgym perf env [--worlds coat,kuairand] [--num-envs 1,64,1024,16384] [--device auto] [--threads 1]
[--repeats 3] [--min-time 0.25]`` and the ``env_throughput`` probe of the ``throughput`` suite run.

Two synthetic worlds (the probe reads no data files):

* ``coat``: Coat-sized, 290 users x 300 items, integer ratings 1-5 (uint8), distance quit rule with N=3 and M the
  40% quantile of the item distances (on Coat's ground truth DORL's M=10 leaves 40% of item pairs closer than M);
* ``kuairand``: KuaiRand-sized, 27,285 users x 7,583 items, binary clicks at a 10% rate (uint8, 207 MB), 30
  single-tag categories, category quit rule with N=4, M=0 (the DORL paper's KuaiRand setting).

Both: NX_0 (no repeats), max_turn 30. Env ``i`` recommends ``(o_i + 13 t) mod n_items`` at step ``t`` (random
offsets ``o_i``): no item comes back within 30 steps, so the actions are legal whatever the episode boundaries.
Only the step calls are timed (after 40 warm-up steps, so episodes are out of phase), at least ``min_time``
seconds per measurement, best of ``repeats``. Columns, in env steps per second:

* ``recgym``: `recgym.envs.rec.GroundTruthRecEnv` as constructed by default (NEXT_STEP autoreset, observation
  dict, lazy ``info["action_mask"]``, ``validate_actions=True``: one read-back per step);
* ``no-validate``: the same with ``validate_actions=False`` (no read-back at all);
* ``fused``: `FusedStep`, the same dynamics written as directly as torch allows: reward gather, quit rule (one
  lookup in the same item-pair table over the last N items), no-repeat update of a dense bool
  [num_envs, n_items] mask, step count, and the reset of finished episodes (mask rows, window, step count, next
  user from a pre-drawn stream) inside the same step; no observation, no info, no checks.

The ratio columns divide by ``fused``. ``device="auto"`` measures cpu, then cuda when torch sees one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from recgym.data.base import LoggedDataset
from recgym.envs.rec import GroundTruthRecEnv, item_distance_matrix

__all__ = ["WORLDS", "FusedStep", "Timer", "World", "coat_sized", "env_throughput", "format_env_throughput",
           "kuairand_sized", "world_env"]

MAX_TURN = 30
WARMUP_STEPS = 40
ACTION_STRIDE = 13


class World:
    """A synthetic dataset plus the quit-rule setting the env and the fused step both use."""

    def __init__(self, name: str, dataset: LoggedDataset, quit_rule: str, n_win: int, threshold: float) -> None:
        self.name = name
        self.dataset = dataset
        self.quit_rule = quit_rule
        self.n_win = n_win
        self.threshold = threshold

    def protocol(self) -> dict[str, Any]:
        return {"protocol": "custom", "mode": "NX_0", "max_turn": MAX_TURN, "quit_rule": self.quit_rule,
                "num_leave_compute": self.n_win, "leave_threshold": self.threshold}


def _empty_logs() -> pd.DataFrame:
    return pd.DataFrame({"user": np.zeros(0, np.int64), "item": np.zeros(0, np.int64), "reward": np.zeros(0)})


def coat_sized(seed: int = 0, close_share: float = 0.4) -> World:
    """Coat-sized ratings (290 x 300, 1-5) with M = the ``close_share`` quantile of item distances (N=3)."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(1, 6, size=(290, 300)).astype(np.uint8)
    cats = np.zeros((300, 1), dtype=bool)
    d = item_distance_matrix(gt).float().numpy()
    m = float(np.quantile(d[~np.eye(300, dtype=bool)], close_share))
    ds = LoggedDataset(name="coat_sized", n_users=290, n_items=300, train=_empty_logs(), test=_empty_logs(),
                       ground_truth=gt, item_categories=cats, category_names=["all"], reward_kind="rating",
                       positive_threshold=4.0, quit_rule="distance")
    return World("coat", ds, "distance", 3, m)


def kuairand_sized(n_users: int = 27285, n_items: int = 7583, n_cats: int = 30, seed: int = 0) -> World:
    """KuaiRand-sized binary clicks (10% rate, uint8) and one random category per item (N=4, M=0)."""
    rng = np.random.default_rng(seed)
    gt = np.empty((n_users, n_items), dtype=np.uint8)
    for s in range(0, n_users, 4096):  # chunked: no float temporaries of the full size
        e = min(n_users, s + 4096)
        gt[s:e] = rng.random((e - s, n_items), dtype=np.float32) < 0.1
    cats = np.zeros((n_items, n_cats), dtype=bool)
    cats[np.arange(n_items), rng.integers(0, n_cats, n_items)] = True
    # ground_truth is kept uint8 (not the usual float32) so the host copy stays 207 MB; the env stores it as is
    ds = LoggedDataset(name="kuairand_sized", n_users=n_users, n_items=n_items, train=_empty_logs(),
                       test=_empty_logs(), ground_truth=gt, item_categories=cats,
                       category_names=[f"c{i}" for i in range(n_cats)], reward_kind="click", positive_threshold=1.0,
                       quit_rule="category")
    return World("kuairand", ds, "category", 4, 0.0)


def world_env(world: World, num_envs: int, device: str, **kwargs: Any) -> GroundTruthRecEnv:
    """The recgym env of ``world`` (kwargs go to `GroundTruthRecEnv`)."""
    return GroundTruthRecEnv(world.dataset, num_envs=num_envs, device=device, **world.protocol(), **kwargs)


class FusedStep:
    """The env's dynamics in a handful of tensor ops: the yardstick of the throughput table.

    State: ``user``, ``step`` and the last ``N`` items (int64), a dense bool [num_envs, n_items] no-repeat mask.
    ``step(a)`` gathers the rewards, decides the quits with one lookup in the env's item-pair table
    (``pairs[a * (n + 1) + j]``: leave on ``a`` when ``j`` is in the window; empty slots hold -1, which lands
    on a False column), marks ``a`` in the mask, counts the step and resets the finished envs at once (mask rows,
    window, step count; the next user comes from ``user_stream``, pre-drawn). No observation, info or checks.
    """

    def __init__(self, gt_flat: torch.Tensor, n_items: int, pairs: torch.Tensor, n_win: int, max_turn: int,
                 user: torch.Tensor, user_stream: torch.Tensor) -> None:
        b = user.numel()
        dev = user.device
        self.gt, self.n, self.pairs, self.max_turn = gt_flat, n_items, pairs, max_turn
        self.user = user.clone()
        self.stream = user_stream  # int64 [P, num_envs]
        self.t = 0
        self.steps = torch.zeros(b, dtype=torch.int64, device=dev)
        self.window = torch.full((b, n_win), -1, dtype=torch.int64, device=dev)
        self.mask = torch.ones((b, n_items), dtype=torch.bool, device=dev)
        self._mask_flat = self.mask.view(-1)
        self._mask_u8 = self.mask.view(torch.uint8)
        self._rows = torch.arange(b, dtype=torch.int64, device=dev) * n_items

    def step(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards (float32) and done flags of recommending ``a`` (int64 [num_envs])."""
        reward = torch.take(self.gt, torch.add(a, self.user, alpha=self.n))
        if reward.dtype != torch.float32:
            reward = reward.float()
        quit_ = torch.take(self.pairs, torch.add(self.window, a[:, None], alpha=self.n + 1)).any(1)
        self._mask_flat.index_fill_(0, self._rows + a, False)
        self.window = torch.cat([self.window[:, 1:], a[:, None]], 1)
        self.steps += 1
        done = quit_ | (self.steps >= self.max_turn)
        self._mask_u8.bitwise_or_(done.view(torch.uint8)[:, None])
        self.window.masked_fill_(done[:, None], -1)
        self.steps.masked_fill_(done, 0)
        self.user = torch.where(done, self.stream[self.t % self.stream.shape[0]], self.user)
        self.t += 1
        return reward, done


def fused_for(env: GroundTruthRecEnv, seed: int = 0) -> FusedStep:
    """A `FusedStep` with ``env``'s ground truth, item-pair table and protocol, starting from ``env``'s users."""
    pairs = env._quit_pairs()
    if pairs is None:
        raise ValueError("the fused step needs a quit pair table (distance rule, or category rule with 0 <= M < 1)")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    pool = env.users_pool.cpu()
    stream = pool[torch.randint(0, pool.numel(), (64, env.num_envs), generator=gen)].to(env.device)
    return FusedStep(env._reward_flat, env.n_items, pairs, env._n_win, env.max_turn, env.user, stream)


def action_stream(num_envs: int, n_items: int, device: torch.device, length: int = 64, seed: int = 0
                  ) -> list[torch.Tensor]:
    """``length`` action tensors: env ``i`` recommends ``(o_i + 13 t) mod n_items`` at step ``t``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    off = torch.randint(0, n_items, (num_envs,), generator=gen)
    return [((off + ACTION_STRIDE * t) % n_items).to(device) for t in range(length)]


class Timer:
    """Times ``step`` on the cycled ``actions`` (its own action counter, so every env's stream stays legal)."""

    def __init__(self, step: Callable[[torch.Tensor], Any], actions: list[torch.Tensor], num_envs: int,
                 device: torch.device) -> None:
        self.step, self.actions, self.num_envs, self.t = step, actions, num_envs, 0
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.best = 0.0
        self.run(WARMUP_STEPS)

    def run(self, n: int) -> None:
        for _ in range(n):
            self.step(self.actions[self.t % len(self.actions)])
            self.t += 1

    def measure(self, min_time: float) -> float:
        """One measurement of at least ``min_time`` s; returns (and keeps the best of) env steps per second."""
        self.sync()
        n, t0 = 0, time.perf_counter()
        while True:
            self.run(8)
            n += 8
            self.sync()
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        rate = self.num_envs * n / dt
        self.best = max(self.best, rate)
        return rate


def _rate(x: float) -> str:
    return f"{x / 1e6:,.2f} M" if x >= 1e6 else f"{x / 1e3:,.0f} k"


def run_world(world: World, sizes: Sequence[int], device: str, min_time: float, repeats: int
              ) -> list[tuple[int, float, float, float]]:
    """One table block: (num_envs, recgym, no-validate, fused) rates for every size."""
    rows = []
    gt = None
    for n in sizes:
        env = world_env(world, n, device, ground_truth_tensor=gt)
        gt = env.gt  # shared by the next sizes
        dev = env.device
        acts = action_stream(n, env.n_items, dev)
        fast = env.make_sibling(n, validate_actions=False)
        env.reset(seed=0)
        fast.reset(seed=0)
        fused = fused_for(fast)
        timers = [Timer(f.step, acts, n, dev) for f in (env, fast, fused)]
        for _ in range(repeats):  # interleaved, so that a busy spell of a shared machine hits all three
            for timer in timers:
                timer.measure(min_time)
        rows.append((n, *(timer.best for timer in timers)))
        del env, fast, fused, timers
    return rows


WORLDS: dict[str, Callable[[], World]] = {"coat": coat_sized, "kuairand": kuairand_sized}


def env_throughput(
    worlds: Sequence[str] = ("coat", "kuairand"),
    num_envs: Sequence[int] = (1, 64, 1024, 16384),
    device: str = "auto",
    threads: int = 1,
    repeats: int = 3,
    min_time: float = 0.25,
) -> list[dict[str, Any]]:
    """Env steps per second of the env, the env without checks and the fused step: one row per (device, world,
    num_envs), best of ``repeats`` measurements of at least ``min_time`` s each, with ``threads`` torch CPU threads.

    ``worlds``: names in `WORLDS`; ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cpu, then cuda when torch sees
    one). Rates are in env steps per second; ``cuda_max_mib`` (cuda rows) is ``torch.cuda.max_memory_allocated``.
    """
    unknown = sorted(set(worlds) - set(WORLDS))
    if unknown:
        raise ValueError(f"worlds: unknown {unknown}; expected some of {sorted(WORLDS)}")
    sizes = [int(n) for n in num_envs]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"num_envs must be a non-empty list of sizes >= 1, got {list(num_envs)}")
    if int(threads) < 1 or int(repeats) < 1 or float(min_time) <= 0:
        raise ValueError(f"threads and repeats must be >= 1 and min_time > 0, got threads={threads}, "
                         f"repeats={repeats}, min_time={min_time}")
    devices = (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]) if device == "auto" else [device]
    torch.set_num_threads(int(threads))
    built = [WORLDS[w]() for w in worlds]
    rows: list[dict[str, Any]] = []
    for dev in devices:
        for world in built:
            for n, r_env, r_fast, r_fused in run_world(world, sizes, dev, float(min_time), int(repeats)):
                row: dict[str, Any] = {
                    "device": dev, "world": world.name, "num_envs": n, "recgym": r_env, "no_validate": r_fast,
                    "fused": r_fused, "recgym/fused": r_env / r_fused, "no_validate/fused": r_fast / r_fused,
                    "users": world.dataset.n_users, "items": world.dataset.n_items,
                    "quit_rule": f"{world.quit_rule} N={world.n_win} M={world.threshold:g}",
                    "threads": int(threads), "repeats": int(repeats), "min_time": float(min_time),
                }
                if dev.startswith("cuda"):
                    row["cuda_max_mib"] = torch.cuda.max_memory_allocated() / 2**20
                rows.append(row)
    return rows


def format_env_throughput(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of `env_throughput` as one plain-text table per device, and a line per world saying what it is."""
    lines: list[str] = []
    for dev in dict.fromkeys(r["device"] for r in rows):
        block = [r for r in rows if r["device"] == dev]
        r0 = block[0]
        lines.append(f"env steps per second, device {dev}, torch threads {r0['threads']}, best of {r0['repeats']} "
                     f"(>= {r0['min_time']:g} s each); NX_0, max_turn {MAX_TURN}")
        hdr = (f"{'world':<9} {'num_envs':>8} | {'recgym':>9} | {'no-validate':>11} | {'fused':>9} | "
               f"{'recgym/fused':>12} | {'no-val/fused':>12}")
        lines += [hdr, "-" * len(hdr)]
        for r in block:
            lines.append(f"{r['world']:<9} {r['num_envs']:>8,} | {_rate(r['recgym']):>9} | "
                         f"{_rate(r['no_validate']):>11} | {_rate(r['fused']):>9} | {r['recgym/fused']:>11.2f}x | "
                         f"{r['no_validate/fused']:>11.2f}x")
        if "cuda_max_mib" in block[-1]:
            lines.append(f"{dev}: torch.cuda.max_memory_allocated {block[-1]['cuda_max_mib']:,.0f} MiB")
        lines.append("")
    for world in dict.fromkeys(r["world"] for r in rows):
        r = next(r for r in rows if r["world"] == world)
        lines.append(f"{world}: {r['users']:,} users x {r['items']:,} items, quit rule {r['quit_rule']}")
    return "\n".join(lines) + "\n"
