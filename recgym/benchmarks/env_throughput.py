"""Env throughput: the batched torch env vs gymnasium's SyncVectorEnv vs a plain per-user Python loop.

    python -m recgym.benchmarks.env_throughput [--device cpu] [--num-envs 1,64,1024,16384]
        [--users 27285] [--items 7583] [--steps 50] [--sync-max-envs 1024]

World: a KuaiRand-sized synthetic ground truth (default 27,285 users x 7,583 items, binary clicks with a
10% click rate, stored uint8 on the device: 207 MB), 30 random single-tag categories, the category quit rule
(N=4, M=0, the DORL paper's KuaiRand setting), NX_0 (no-repeat mask), max_turn 30, NEXT_STEP autoreset.
All three implementations step the same dynamics on the same deterministic action stream
``a = (17 * i + 13 * t) mod n_items`` (no repeat within an episode) and only the ``step`` calls are timed:

* ``batched``: `recgym.envs.rec.GroundTruthRecEnv` with ``num_envs = N`` (one tensor step for all users);
* ``sync``: ``gymnasium.vector.SyncVectorEnv`` over N numpy single envs (the registered ``gym.make`` env,
  sharing the ground-truth tensor), i.e. what you get without a batched env;
* ``loop``: a plain Python loop over users with a numpy reward lookup, list histories and the same quit
  rule -- the way the DORL and EasyRL4Rec envs step (one user at a time).

Sync and loop runs at large N take few steps (at least ``--min-slow-steps``; rates are per env step).
Prints a table of env steps per second and the ratios, then the memory line: on cuda
``torch.cuda.max_memory_allocated``; on cpu the bytes of the env's tensors at the largest N (ground truth,
categories, mask, buffers) and the process's peak-RSS growth while building and running it.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from recgym.data.base import LoggedDataset
from recgym.envs.core import SingleEnvAdapter
from recgym.envs.rec import GroundTruthRecEnv

PROTOCOL = {"protocol": "custom", "quit_rule": "category", "num_leave_compute": 4, "leave_threshold": 0.0,
            "mode": "NX_0", "max_turn": 30}


def kuairand_sized(n_users: int, n_items: int, n_cats: int = 30, seed: int = 0) -> LoggedDataset:
    """A KuaiRand-sized world: uint8 binary clicks (10% rate) and one random category per item."""
    rng = np.random.default_rng(seed)
    gt = np.empty((n_users, n_items), dtype=np.uint8)
    for s in range(0, n_users, 4096):  # chunked: no float temporaries of the full size
        e = min(n_users, s + 4096)
        gt[s:e] = rng.random((e - s, n_items), dtype=np.float32) < 0.1
    cats = np.zeros((n_items, n_cats), dtype=bool)
    cats[np.arange(n_items), rng.integers(0, n_cats, n_items)] = True
    empty = pd.DataFrame({"user": np.zeros(0, np.int64), "item": np.zeros(0, np.int64), "reward": np.zeros(0)})
    # ground_truth is kept uint8 (not the usual float32) so the host copy stays 207 MB; the env stores it as is
    return LoggedDataset(name="kuairand_sized", n_users=n_users, n_items=n_items, train=empty, test=empty,
                         ground_truth=gt, item_categories=cats, category_names=[f"c{i}" for i in range(n_cats)],
                         reward_kind="click", positive_threshold=1.0, quit_rule="category")


def _actions(n: int, t: int, n_items: int) -> np.ndarray:
    return (17 * np.arange(n, dtype=np.int64) + 13 * t) % n_items


def bench_batched(ds: LoggedDataset, n: int, steps: int, device: str, gt: torch.Tensor | None,
                  copy_mask: bool = False) -> tuple[float, Any]:
    env = GroundTruthRecEnv(ds, num_envs=n, device=device, ground_truth_tensor=gt, reward_range=(0.0, 1.0),
                            copy_mask=copy_mask, **PROTOCOL)
    acts = [torch.as_tensor(_actions(n, t, ds.n_items), device=env.device) for t in range(steps + 3)]
    env.reset(seed=0)
    for t in range(3):  # warm-up
        env.step(acts[t])
    sync = torch.cuda.synchronize if env.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for t in range(steps):
        env.step(acts[(t + 3) % len(acts)])
    sync()
    return n * steps / (time.perf_counter() - t0), env


def bench_sync(ds: LoggedDataset, n: int, steps: int, gt: torch.Tensor) -> float:
    import gymnasium as gym

    proto = GroundTruthRecEnv(ds, num_envs=1, ground_truth_tensor=gt, reward_range=(0.0, 1.0),
                              autoreset_mode="DISABLED", **PROTOCOL)
    venv = gym.vector.SyncVectorEnv([lambda: SingleEnvAdapter(proto.make_sibling(1)) for _ in range(n)])
    venv.reset(seed=0)
    venv.step(_actions(n, 0, ds.n_items))
    t0 = time.perf_counter()
    for t in range(steps):
        venv.step(_actions(n, t + 1, ds.n_items))
    rate = n * steps / (time.perf_counter() - t0)
    venv.close()
    return rate


class LoopEnvs:
    """N users stepped one at a time in Python (DORL / EasyRL4Rec style), same dynamics as the batched env."""

    def __init__(self, ds: LoggedDataset, n: int, seed: int = 0) -> None:
        self.mat = ds.ground_truth
        self.cat_lists = [list(np.flatnonzero(r)) for r in ds.item_categories]
        self.n, self.n_win, self.m, self.max_turn = n, 4, 0, 30
        self.rng = np.random.default_rng(seed)
        self.users = [int(u) for u in self.rng.integers(0, self.mat.shape[0], n)]
        self.hist: list[list[int]] = [[] for _ in range(n)]
        self.seen: list[set[int]] = [set() for _ in range(n)]

    def _leave(self, i: int, t: int, a: int) -> bool:
        if t == 0:
            return False
        counts: dict[int, int] = {}
        for x in self.hist[i][-self.n_win :]:
            for c in self.cat_lists[x]:
                counts[c] = counts.get(c, 0) + 1
        return any(counts.get(c, 0) > self.m for c in self.cat_lists[a])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rewards = np.zeros(self.n, dtype=np.float32)
        dones = np.zeros(self.n, dtype=bool)
        for i in range(self.n):
            a = int(actions[i])
            if a in self.seen[i]:
                raise ValueError("repeat")
            t = len(self.hist[i])
            done = self._leave(i, t, a) or t >= self.max_turn - 1
            rewards[i] = float(self.mat[self.users[i], a])
            self.hist[i].append(a)
            self.seen[i].add(a)
            if done:
                dones[i] = True
                self.users[i] = int(self.rng.integers(0, self.mat.shape[0]))
                self.hist[i] = []
                self.seen[i] = set()
        return rewards, dones


def bench_loop(ds: LoggedDataset, n: int, steps: int) -> float:
    envs = LoopEnvs(ds, n)
    envs.step(_actions(n, 0, ds.n_items))
    t0 = time.perf_counter()
    for t in range(steps):
        envs.step(_actions(n, t + 1, ds.n_items))
    return n * steps / (time.perf_counter() - t0)


def env_tensor_bytes(env: GroundTruthRecEnv) -> dict[str, int]:
    """Bytes of every tensor the env holds (views of a shared tensor counted once)."""
    seen: dict[int, int] = {}
    out: dict[str, int] = {}
    for name, v in vars(env).items():
        if isinstance(v, torch.Tensor):
            key = v.untyped_storage().data_ptr()
            if key in seen:
                continue
            seen[key] = v.untyped_storage().nbytes()
            out[name] = seen[key]
    return out


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (cpu, plus cuda when available)")
    p.add_argument("--num-envs", default="1,64,1024,16384")
    p.add_argument("--users", type=int, default=27285)
    p.add_argument("--items", type=int, default=7583)
    p.add_argument("--steps", type=int, default=50, help="timed steps of the batched env")
    p.add_argument("--slow-env-steps", type=int, default=4096, help="env steps (N x steps) for sync/loop runs")
    p.add_argument("--min-slow-steps", type=int, default=2)
    p.add_argument("--sync-max-envs", type=int, default=16384, help="largest N for SyncVectorEnv (memory/time)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--copy-mask", action="store_true",
                   help="measure the env's default copy_mask=True (masks stay valid); default: the live buffer")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.num_envs.split(",") if s]
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_build = time.perf_counter()
    ds = kuairand_sized(args.users, args.items)
    print(f"world: {args.users:,} users x {args.items:,} items (uint8 GT, built in {time.perf_counter() - t_build:.1f}s); "
          f"protocol {PROTOCOL}; torch threads {args.threads}")
    gt_cpu = torch.from_numpy(ds.ground_truth)
    for dev in devices:
        gt = gt_cpu.to(dev)
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        rows = []
        last_env = None
        for n in sizes:
            rate_b, env = bench_batched(ds, n, args.steps, dev, gt, copy_mask=args.copy_mask)
            slow_steps = max(args.min_slow_steps, args.slow_env_steps // n)
            rate_s = bench_sync(ds, n, slow_steps, gt_cpu) if (dev == "cpu" and n <= args.sync_max_envs) else None
            rate_l = bench_loop(ds, n, slow_steps)
            rows.append((n, rate_b, rate_s, rate_l))
            if n == max(sizes):
                last_env = env
            else:
                del env
        mask_mode = "copy_mask=True (env default)" if args.copy_mask else "copy_mask=False (live mask buffer)"
        print(f"\nenv steps per second, device={dev}, batched env with {mask_mode} (sync/loop run on cpu)")
        hdr = f"{'num_envs':>9} | {'batched':>12} | {'SyncVectorEnv':>13} | {'python loop':>11} | {'x sync':>8} | {'x loop':>8}"
        print(hdr)
        print("-" * len(hdr))
        for n, rb, rs, rl in rows:
            xs = f"{rb / rs:,.1f}" if rs else "-"
            print(f"{n:>9} | {_fmt(rb):>12} | {_fmt(rs):>13} | {_fmt(rl):>11} | {xs:>8} | {rb / rl:>8,.1f}")
        assert last_env is not None
        if dev == "cuda":
            peak = torch.cuda.max_memory_allocated()
            print(f"\nmemory (cuda): torch.cuda.max_memory_allocated = {peak / 2**20:,.0f} MiB over all runs "
                  f"(largest N = {max(sizes):,}; limit 1 GiB)")
        else:
            tb = env_tensor_bytes(last_env)
            tb["gt(shared)"] = gt.untyped_storage().nbytes()
            total = sum(v for k, v in tb.items() if k != "gt") if "gt" in tb else sum(tb.values())
            top = ", ".join(f"{k} {v / 2**20:.1f}" for k, v in sorted(tb.items(), key=lambda kv: -kv[1])[:4])
            rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
            print(f"\nmemory (cpu): env tensors at num_envs={max(sizes):,}: {total / 2**20:,.0f} MiB ({top} MiB); "
                  f"process peak-RSS growth {rss:,.0f} MiB (includes the host copy of the GT and the sync/loop runs)")
        del last_env


if __name__ == "__main__":
    main()
