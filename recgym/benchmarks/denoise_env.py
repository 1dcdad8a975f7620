"""Throughput of the DiffusionDenoise env: ``python -m recgym.benchmarks.denoise_env``.

For each device (cpu; cuda when present) and batch size it runs full episodes (T reverse steps) with the
frozen model acting (``latent``: the action is ``env.posterior_mean``, so each step costs one denoiser
forward, as for any policy that queries the model; ``residual``: action 0, the env computes the mean) and
reports env steps per second (per-user transitions), users per second (complete chains) and the peak
memory; then the DiffRec pre-training time per epoch on the same data. The first env construction trains and
caches the base model if none is cached (slow on ML-1M on a CPU; the time is printed).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

import torch


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_env(data: str, batch: int, device: str, mode: str, episodes: int, data_dir: str | None = None
              ) -> dict[str, Any]:
    """Steps/s and users/s of ``episodes`` full chains with ``batch`` users per chain."""
    from recgym.envs.denoise import DiffusionDenoiseEnv

    env = DiffusionDenoiseEnv(data, num_envs=batch, device=device, action_mode=mode, data_dir=data_dir)
    dev = env.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    zero = torch.zeros(env.action_space.shape, device=dev)
    obs, _ = env.reset(seed=0)
    # warm-up: one step
    env.step(env.posterior_mean(obs["x_t"], obs["t"]) if mode == "latent" else zero)
    obs, _ = env.reset(seed=1)
    _sync(dev)
    t0 = time.perf_counter()
    n_steps = 0
    for _ in range(episodes):
        for _ in range(env.T):
            a = env.posterior_mean(obs["x_t"], obs["t"]) if mode == "latent" else zero
            obs, r, term, trunc, info = env.step(a)
            n_steps += 1
        obs, *_ = env.step(zero)  # NEXT_STEP autoreset step (not counted)
    _sync(dev)
    dt = time.perf_counter() - t0
    out = {"device": str(dev), "mode": mode, "batch": batch, "T": env.T, "seconds": dt,
           "env_steps_per_s": n_steps * batch / dt, "batched_steps_per_s": n_steps / dt,
           "users_per_s": episodes * batch / dt, "peak_rss_mb": _peak_rss_mb()}
    if dev.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def bench_pretrain_epoch(data: str, device: str, epochs: int = 2, data_dir: str | None = None) -> dict[str, Any]:
    """Seconds per DiffRec training epoch (default config for ``data``, no evaluation)."""
    from recgym.data import load_dataset
    from recgym.recommenders import DiffRec, default_config, make_splits
    from recgym.recommenders.train import _ImportanceSampler, diffusion_loss

    ds = load_dataset(data, data_dir=data_dir)
    cfg = default_config(ds.name)
    sp = make_splits(ds, cfg.valid_fraction, cfg.split_seed)
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = DiffRec(sp.n_items, cfg, dev)
    opt = torch.optim.AdamW(model.denoiser.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = _ImportanceSampler(cfg.steps, dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    train = torch.from_numpy(sp.train).to(dev)
    times = []
    for _ in range(epochs):
        _sync(dev)
        t0 = time.perf_counter()
        perm = torch.randperm(train.shape[0], generator=gen, device=dev)
        for lo in range(0, train.shape[0], cfg.batch_size):
            loss = diffusion_loss(model, train[perm[lo: lo + cfg.batch_size]], sampler, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    t1 = time.perf_counter()
    from recgym.recommenders import evaluate_diffrec

    evaluate_diffrec(model, sp, which=("valid",))
    _sync(dev)
    return {"device": str(dev), "dataset": ds.name, "users": sp.n_users, "items": sp.n_items,
            "seconds_per_epoch": min(times), "eval_seconds": time.perf_counter() - t1,
            "peak_rss_mb": _peak_rss_mb()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="ml1m", help="dataset (ml1m, ml1m_noisy, coat, yahoo, synthetic)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-sizes", default="16,64,256,1024")
    p.add_argument("--modes", default="latent,residual")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--devices", default="auto", help="comma list, or auto = cpu (+ cuda when available)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--epochs", type=int, default=2, help="pre-training epochs to time")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" \
        else args.devices.split(",")

    from recgym.envs.denoise import load_resources

    t0 = time.perf_counter()
    for d in devices:
        load_resources(args.data, torch.device(d), data_dir=args.data_dir)
    print(f"env resources (data + base model, trained if not cached) ready in {time.perf_counter() - t0:.1f}s")

    rows = []
    print(f"{'device':8} {'mode':9} {'batch':>6} {'env steps/s':>12} {'users/s':>9} {'peak RSS MB':>12}"
          f" {'peak CUDA MB':>12}")
    for d in devices:
        for mode in args.modes.split(","):
            for b in (int(x) for x in args.batch_sizes.split(",")):
                r = bench_env(args.data, b, d, mode, args.episodes, args.data_dir)
                rows.append(r)
                print(f"{r['device']:8} {mode:9} {b:>6} {r['env_steps_per_s']:>12.0f} {r['users_per_s']:>9.1f} "
                      f"{r['peak_rss_mb']:>12.0f} {r.get('peak_cuda_mb', float('nan')):>12.0f}", flush=True)
    pre = [bench_pretrain_epoch(args.data, d, args.epochs, args.data_dir) for d in devices]
    for r in pre:
        print(f"pre-training {r['dataset']} ({r['users']} users x {r['items']} items) on {r['device']}: "
              f"{r['seconds_per_epoch']:.2f} s/epoch, one validation pass {r['eval_seconds']:.1f} s")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"env": rows, "pretrain": pre, "threads": args.threads}, f, indent=1)


if __name__ == "__main__":
    main()
