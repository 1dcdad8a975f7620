"""Throughput of the DiffusionDenoise env, and the cost of DiffRec pre-training and of ReFiT fine-tuning.

`denoise_env_throughput`: for each device and batch size, full episodes (T reverse steps) with the frozen
model acting (``latent``: the action is ``env.posterior_mean``, one denoiser forward per step, as for any
policy that queries the model; ``residual`` / ``guidance``: a zero action, the env computes the mean): env
steps per second (per-user transitions), users per second (complete chains) and the peak memory; then the
DiffRec pre-training time per epoch on the same data.

`refit_cost`: ReFiT fine-tuning to its best validation point against DiffRec pre-training to convergence, same
data, same machine, in the same units: wall seconds (validations included), work (user rows seen vs
user-episodes sampled), seconds per unit of work, and the peak memory of each phase, measured in a fresh child
process per phase: on cuda ``torch.cuda.max_memory_allocated``; on cpu the kernel's peak-RSS counter is reset
after the setup (``/proc/self/clear_refs``) and the phase's peak RSS (VmHWM) and its increment over the setup
RSS are read.
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


def measure_phase(phase: str, data: str, device: str, batch: int, iterations: int, eval_every: int,
                  threads: int, agent: str = "refit", pretrain_config: dict[str, Any] | None = None,
                  agent_config: dict[str, Any] | None = None) -> dict[str, float]:
    """Wall time, work and peak memory of one phase in this process (run it in a fresh process, `refit_cost`):

    - ``"pretrain"``: DiffRec trained from scratch on the dataset's splits with its default config (plus
      ``pretrain_config``) until early stopping, validations included: ``seconds`` (to convergence),
      ``best`` (best epoch), ``work`` (user rows seen: epochs x users), ``seconds_per_unit`` (training seconds
      per user row);
    - ``"refit"``: the cached pre-trained model in a ``batch``-user env, ``agent`` (``refit`` by default) for
      ``iterations`` with validation on all users every ``eval_every``: ``seconds`` (to the best validation
      point), ``seconds_total``, ``best`` (best iteration), ``work`` (user-episodes sampled until the best),
      ``seconds_per_unit`` (update seconds per user-episode).

    Both: ``peak_rss_mb`` / ``base_rss_mb`` (the kernel's peak RSS of the phase, reset after the setup, and the
    RSS after the setup), on cuda ``cuda_peak_mb``.
    """
    import gc

    import torch

    if phase not in ("pretrain", "refit"):
        raise ValueError(f"measure_phase: phase={phase!r}; valid: ['pretrain', 'refit']")
    torch.set_num_threads(threads)
    if phase == "pretrain":
        from recgym import recommenders as dr
        from recgym.data import load_dataset

        ds = load_dataset(data)
        cfg = dr.DiffRecConfig.from_dict({**dr.default_config(ds.name).to_dict(), **(pretrain_config or {})})
        splits = dr.make_splits(ds, cfg.valid_fraction, cfg.split_seed)
    else:
        from recgym.agents import make_agent
        from recgym.envs.denoise import DiffusionDenoiseEnv

        env = DiffusionDenoiseEnv(data, num_envs=batch, device=device, progress=False)
        ft = make_agent(agent, env, seed=0, eval_every=eval_every, keep_best=True, progress=False,
                        **(agent_config or {}))
    gc.collect()
    out: dict[str, float] = {"base_rss_mb": _rss_now_mb()}
    _reset_peak_rss()
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        out["cuda_base_mb"] = torch.cuda.memory_allocated() / 2**20
    _sync(device)
    t0 = time.perf_counter()
    if phase == "pretrain":
        _, res = dr.train_diffrec(splits, cfg, device)
        _sync(device)
        out.update(seconds=time.perf_counter() - t0, best=float(res.best_epoch),
                   work=float(res.epochs_run * splits.n_users),
                   seconds_per_unit=res.train_seconds / max(1, res.epochs_run * splits.n_users))
    else:
        ft.learn(env, iterations)
        _sync(device)
        rep = ft.final_report("valid")
        out.update(seconds=ft.best_seconds, seconds_total=ft.seconds, best=float(ft.best_iteration),
                   work=rep["user_episodes_to_best"], seconds_per_unit=rep["seconds_per_user_episode"])
    out["peak_rss_mb"] = _peak_rss_mb()
    if str(device).startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def refit_cost(data: str = "ml1m", device: str = "cpu", batch: int = 64, iterations: int = 200,
               eval_every: int = 20, threads: int = 2, agent: str = "refit",
               pretrain_config: dict[str, Any] | None = None,
               agent_config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The cost of fine-tuning against the cost of pre-training, in the same units, on the same data and machine:
    one row per phase, each measured in a fresh process (`measure_phase`): wall seconds to the result
    (pre-training: to convergence; fine-tuning: to its best validation point, validations included), the work
    done (user rows seen in pre-training; user-episodes sampled in fine-tuning), seconds per unit of work, the
    peak RSS and its increment over the setup (and on cuda the peak allocated memory); the fine-tuning row also
    gives its wall time and peak memory relative to pre-training."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    runs = {}
    for phase in ("pretrain", "refit"):
        with ctx.Pool(1) as pool:
            runs[phase] = pool.apply(measure_phase, (phase, data, device, batch, iterations, eval_every, threads,
                                                     agent, pretrain_config, agent_config))
    rows = []
    for phase, r in runs.items():
        row = {"phase": "DiffRec pre-training to convergence" if phase == "pretrain"
               else f"{agent} fine-tuning to its best validation point",
               "seconds": r["seconds"], "best": r["best"], "work": r["work"],
               "work_unit": "user rows" if phase == "pretrain" else "user-episodes",
               "seconds_per_unit": r["seconds_per_unit"], "peak_rss_mb": r["peak_rss_mb"],
               "rss_increment_mb": r["peak_rss_mb"] - r["base_rss_mb"],
               **({"cuda_peak_mb": r["cuda_peak_mb"]} if "cuda_peak_mb" in r else {})}
        if phase == "refit":
            p = runs["pretrain"]
            row["seconds_total"] = r["seconds_total"]
            row["seconds_vs_pretrain"] = r["seconds"] / p["seconds"]
            row["peak_rss_vs_pretrain"] = r["peak_rss_mb"] / p["peak_rss_mb"] - 1.0
            if "cuda_peak_mb" in r:
                row["cuda_peak_vs_pretrain"] = r["cuda_peak_mb"] / p["cuda_peak_mb"] - 1.0
        rows.append(row)
    return rows


def refit_gradient_snr(data: str = "ml1m", agents: Sequence[str] = ("refit", "refit_lastep"), iterations: int = 16,
                       batch: int = 64, device: str = "cpu", threads: int = 1,
                       env_kwargs: dict[str, Any] | None = None,
                       configs: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Is there a gradient to follow? ``iterations`` policy-gradient estimates of each chain fine-tuner at the
    pre-trained weights (each from one iteration's batch of ``batch`` users; lr 0, no clipping, so the weights
    never move), and how much of them is signal:

    - ``cos_halves``: cosine between the means of the first and the second half of the estimates (0 for pure
      noise, 1 for a noise-free direction);
    - ``snr_per_iteration``: ``(|mean g|^2 - tr S / n) / tr S`` with ``tr S`` the estimates' total variance, an
      unbiased estimate of |E g|^2 / tr Var g for one iteration's gradient (<= 0: no detectable signal).

    ``configs`` adds config overrides per agent; ``env_kwargs`` go to the env (e.g. its DiffRec ``config``).
    """
    import torch

    from recgym.agents import make_agent
    from recgym.envs.denoise import DiffusionDenoiseEnv

    if iterations < 4:
        raise ValueError(f"refit_gradient_snr: iterations={iterations}; need at least 4 (two halves of 2)")
    torch.set_num_threads(threads)
    env = DiffusionDenoiseEnv(data, num_envs=batch, device=device, progress=False, **(env_kwargs or {}))
    rows = []
    for name in agents:
        agent = make_agent(name, env, seed=0, eval_every=0, keep_best=False, progress=False, max_grad_norm=None,
                           **(configs or {}).get(name, {}))
        for group in agent.optimizer.param_groups:
            group["lr"] = 0.0
        agent.bridge.seed(0)
        grads = []
        t0 = time.perf_counter()
        for _ in range(iterations):
            users, x_start, ctx = agent._sample_users()
            agent._update(x_start, ctx, users)
            grads.append(torch.cat([p.grad.flatten() for p in agent.policy.parameters()]).double())
        dt = (time.perf_counter() - t0) / iterations
        g = torch.stack(grads)
        half = iterations // 2
        cos = torch.nn.functional.cosine_similarity(g[:half].mean(0), g[half: 2 * half].mean(0), dim=0)
        mean = g.mean(0)
        tr = float((g - mean).pow(2).sum(1).sum() / (iterations - 1))
        snr = (float(mean.pow(2).sum()) - tr / iterations) / tr
        rows.append({"agent": name, "data": data, "iterations": iterations, "users_per_iteration": batch,
                     "cos_halves": float(cos), "snr_per_iteration": snr, "seconds_per_iteration": dt})
    return rows
