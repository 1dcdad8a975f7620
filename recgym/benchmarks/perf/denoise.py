"""Throughput of the DiffusionDenoise env, and the cost of DiffRec pre-training and of ReFiT fine-tuning.

`denoise_env_throughput`: for each device and batch size, full episodes (T reverse steps) with the frozen
model acting (``latent``: the action is ``env.posterior_mean``, one denoiser forward per step, as for any
policy that queries the model; ``residual`` / ``guidance``: a zero action, the env computes the mean): env
steps per second (per-user transitions), users per second (complete chains) and the peak memory; then the
DiffRec pre-training time per epoch on the same data.

`refit_cost`: seconds per ReFiT iteration next to seconds per DiffRec pre-training epoch, and the peak memory
of each phase, measured in a fresh child process per phase with the same setup (data, model, env): on cuda
``torch.cuda.max_memory_allocated``; on cpu the kernel's peak-RSS counter is reset after the setup
(``/proc/self/clear_refs``) and the phase's peak RSS (VmHWM) and its increment over the setup RSS are read.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from typing import Any


def _sync(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _devices(devices: str) -> list[str]:
    import torch

    if devices == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [d for d in devices.split(",") if d]


def bench_env(data: str, batch: int, device: str, mode: str, episodes: int, data_dir: str | None = None
              ) -> dict[str, Any]:
    """Steps/s and users/s of ``episodes`` full chains with ``batch`` users per chain."""
    import torch

    from recgym.envs.denoise import DiffusionDenoiseEnv

    env = DiffusionDenoiseEnv(data, num_envs=batch, device=device, action_mode=mode, data_dir=data_dir)
    dev = env.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    zero = torch.zeros(env.action_space.shape, device=dev)
    obs, _ = env.reset(seed=0)
    env.step(env.posterior_mean(obs["x_t"], obs["t"]) if mode == "latent" else zero)  # warm-up step
    obs, _ = env.reset(seed=1)
    _sync(dev)
    t0 = time.perf_counter()
    n_steps = 0
    for _ in range(episodes):
        for _ in range(env.T):
            obs, *_ = env.step(env.posterior_mean(obs["x_t"], obs["t"]) if mode == "latent" else zero)
            n_steps += 1
        obs, *_ = env.step(zero)  # NEXT_STEP autoreset step (not counted)
    _sync(dev)
    dt = time.perf_counter() - t0
    out = {"device": str(dev), "mode": mode, "batch": batch, "T": env.T, "seconds": dt,
           "env_steps_per_s": n_steps * batch / dt, "users_per_s": episodes * batch / dt,
           "peak_rss_mb": _peak_rss_mb()}
    if dev.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def pretrain_epoch_seconds(model: Any, splits: Any, device: str, seed: int = 0) -> float:
    """Seconds of one DiffRec pre-training epoch (AdamW, importance-sampled t) on a fresh copy of ``model``."""
    import copy

    import torch

    from recgym.recommenders import DiffRec
    from recgym.recommenders.train import _ImportanceSampler, diffusion_loss

    cfg = model.config
    m = DiffRec(model.n_items, cfg, device)
    m.denoiser = copy.deepcopy(model.denoiser).to(device).train()
    for p in m.denoiser.parameters():
        p.requires_grad_(True)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.AdamW(m.denoiser.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = _ImportanceSampler(cfg.steps, torch.device(device))
    train = torch.from_numpy(splits.train).to(device)
    _sync(device)
    t0 = time.perf_counter()
    perm = torch.randperm(train.shape[0], generator=gen, device=device)
    for lo in range(0, train.shape[0], cfg.batch_size):
        loss = diffusion_loss(m, train[perm[lo: lo + cfg.batch_size]], sampler, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t0


def denoise_env_throughput(data: str = "ml1m", batch_sizes: Sequence[int] = (16, 64, 256, 1024),
                           modes: Sequence[str] = ("latent", "residual"), episodes: int = 1, devices: str = "auto",
                           threads: int = 1, data_dir: str | None = None) -> list[dict[str, Any]]:
    """`bench_env` rows for every device x mode x batch size, then one pre-training-epoch row per device."""
    import torch

    from recgym.envs.denoise import DiffusionDenoiseEnv

    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    for d in _devices(devices):
        t0 = time.perf_counter()
        env = DiffusionDenoiseEnv(data, num_envs=1, device=d, data_dir=data_dir)  # data + base model (cached)
        ready = time.perf_counter() - t0
        for mode in modes:
            for b in batch_sizes:
                rows.append({"what": "env", **bench_env(data, int(b), d, mode, episodes, data_dir)})
        rows.append({"what": "pretrain_epoch", "device": d,
                     "seconds": pretrain_epoch_seconds(env.model, env.splits, d),
                     "setup_seconds": ready, "peak_rss_mb": _peak_rss_mb()})
    return rows


# ------------------------------------------------------------------------------------------- ReFiT cost


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter (Linux: ``echo 5 > /proc/self/clear_refs``) so VmHWM covers one phase."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    """VmHWM (peak RSS since the last reset) in MB; ``ru_maxrss`` where /proc is unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_now_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def measure_phase(phase: str, data: str, device: str, batch: int, samples_per_user: int, iterations: int,
                  threads: int) -> dict[str, float]:
    """Seconds and peak memory of one phase in this process: ``"pretrain"`` (one DiffRec epoch) or
    ``"refit"`` (``iterations`` ReFiT iterations). Run in a fresh process (`refit_cost`) for clean peaks."""
    import gc

    import torch

    from recgym.agents import make_agent
    from recgym.envs.denoise import DiffusionDenoiseEnv

    if phase not in ("pretrain", "refit"):
        raise ValueError(f"measure_phase: phase={phase!r}; valid: ['pretrain', 'refit']")
    torch.set_num_threads(threads)
    env = DiffusionDenoiseEnv(data, num_envs=batch, device=device, progress=False)
    gc.collect()
    out = {"base_rss_mb": _rss_now_mb()}
    _reset_peak_rss()
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        out["cuda_base_mb"] = torch.cuda.memory_allocated() / 2**20
    if phase == "pretrain":
        out["seconds"] = pretrain_epoch_seconds(env.model, env.splits, device)
    else:
        agent = make_agent("refit", env, seed=0, samples_per_user=samples_per_user, eval_every=0,
                           keep_best=False, progress=False)
        _sync(device)
        t0 = time.perf_counter()
        agent.learn(env, iterations)
        _sync(device)
        out["seconds"] = (time.perf_counter() - t0) / max(1, iterations)
    out["peak_rss_mb"] = _peak_rss_mb()
    if str(device).startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def refit_cost(data: str = "ml1m", device: str = "cpu", batch: int = 64, samples_per_user: int = 32,
               iterations: int = 3, threads: int = 2) -> list[dict[str, Any]]:
    """One row per phase (DiffRec pre-training epoch; ReFiT iteration), each measured in a fresh process:
    seconds, peak RSS and its increment over the setup, and on cuda the peak allocated memory."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    rows = []
    for phase in ("pretrain", "refit"):
        with ctx.Pool(1) as pool:
            r = pool.apply(measure_phase, (phase, data, device, batch, samples_per_user, iterations, threads))
        rows.append({"phase": "DiffRec pre-training epoch" if phase == "pretrain" else "ReFiT iteration",
                     "seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
                     "rss_increment_mb": r["peak_rss_mb"] - r["base_rss_mb"],
                     **({"cuda_peak_mb": r["cuda_peak_mb"]} if "cuda_peak_mb" in r else {})})
    return rows
