"""ReFiT and its siblings on ML-1M clean: the DiffRec-protocol table, time per iteration and peak memory.

``python -m recgym.benchmarks.refit_table --seeds 0 1 2`` prints test Recall@10/20 and NDCG@10/20 (mean +- std over
seeds) of: the pre-trained DiffRec, ReFiT (RACS and ``ra`` rewards), DDPO, RWFT, SB3 SAC / TD3 on the
``guidance`` action mode, next to EASE (lambda tuned on valid) and MostPop; then ReFiT's time per iteration
next to the time of one DiffRec pre-training epoch, and ReFiT's peak memory over the pre-training peak.

Protocol. The pre-trained model is the cached DiffRec checkpoint of the env (`fit_or_load_diffrec` with the
default config; if that exact config is not cached, the newest cached ML-1M checkpoint with the same dataset
fingerprint is used and named in the output; with none, it is trained). Each fine-tuner runs ``--iterations``
iterations on ``DiffusionDenoise-ML1M`` (batch ``--batch`` users, ``--samples-per-user`` chains each), model
selection on validation between the pre-trained weights and the end of training (``keep_best``), then test.
``--eval-users N`` evaluates every method (baselines included) on the same fixed random subset of N users, to
fit a small CPU budget; 0 = all users (the real protocol). Memory: on cuda, ``torch.cuda.max_memory_allocated``
of one pre-training epoch vs ReFiT iterations in the same process (peak reset in between); on cpu each is run
in a fresh subprocess with the same setup (data, model, env), the kernel's peak-RSS counter is reset after the
setup (``/proc/self/clear_refs``) and the phase's peak RSS (VmHWM) is compared, as well as its increment over
the RSS after setup (what the training step itself adds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

METRICS = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20")
FINETUNERS = ("refit_racs", "refit_ra", "ddpo", "rwft")
SB3 = ("sb3_sac", "sb3_td3")


def _m(d: dict[str, Any], name: str) -> float:
    for k, v in d.items():
        if k.lower() == name.lower():
            return float(v)
    raise KeyError(name)


def load_model(device: str, log: Any = print) -> tuple[Any, Any, str]:
    """(DiffRec, dataset, where-it-came-from) for ML-1M clean, from the cache when possible."""
    from recgym.data import load_dataset
    from recgym.data.paths import cache_dir
    from recgym.recommenders import DiffRec, checkpoint_path, default_config, fit_or_load_diffrec, make_splits

    ds = load_dataset("ml1m")
    cfg = default_config("ml1m")
    splits = make_splits(ds, cfg.valid_fraction, cfg.split_seed)
    path = checkpoint_path(splits, cfg)
    if path.is_file():
        model, _ = fit_or_load_diffrec(splits, cfg, device, progress=False)
        return model, ds, str(path)
    cands = sorted((cache_dir() / "diffrec").glob(f"{splits.name}-{splits.fingerprint}-*.pt"),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for cand in cands:
        try:
            return DiffRec.load(cand, device, expect_fingerprint=splits.fingerprint), ds, f"{cand} (non-default config)"
        except Exception as e:  # noqa: BLE001 - try the next one
            log(f"skipping unusable checkpoint {cand}: {e}")
    log("no cached ML-1M DiffRec: pre-training with the default config (long on a CPU)")
    model, _ = fit_or_load_diffrec(splits, cfg, device, progress=True)
    return model, ds, str(path)


def subset_splits(splits: Any, n: int, seed: int = 0) -> Any:
    """The same splits restricted to ``n`` random users (all when n <= 0)."""
    from recgym.recommenders import DiffRecSplits

    if n <= 0 or n >= splits.n_users:
        return splits
    idx = np.sort(np.random.default_rng(seed).choice(splits.n_users, size=n, replace=False))
    return DiffRecSplits(splits.name, splits.train[idx], splits.valid[idx], splits.test[idx],
                         splits.fingerprint, dict(splits.meta, eval_subset=n))


def pretrain_epoch(model: Any, splits: Any, device: str, seed: int = 0) -> float:
    """Seconds of one DiffRec pre-training epoch (AdamW, batch 400, importance-sampled t) on a model copy."""
    import copy

    from recgym.recommenders import DiffRec
    from recgym.recommenders.train import _ImportanceSampler, diffusion_loss

    net = copy.deepcopy(model.denoiser).to(device).train()
    for p in net.parameters():
        p.requires_grad_(True)
    m = DiffRec(model.n_items, model.config, device)
    m.denoiser = net
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=model.config.lr, weight_decay=model.config.weight_decay)
    sampler = _ImportanceSampler(model.config.steps, torch.device(device))
    train = torch.from_numpy(splits.train).to(device)
    _sync(device)
    t0 = time.perf_counter()
    perm = torch.randperm(train.shape[0], generator=gen, device=device)
    for lo in range(0, train.shape[0], model.config.batch_size):
        loss = diffusion_loss(m, train[perm[lo: lo + model.config.batch_size]], sampler, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t0


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def make_env(model: Any, ds: Any, device: str, batch: int, **kw: Any) -> Any:
    from recgym.envs.denoise import DiffusionDenoiseEnv

    return DiffusionDenoiseEnv(ds, num_envs=batch, device=device, model=model, progress=False, **kw)


def finetuner(kind: str, env: Any, args: argparse.Namespace, seed: int) -> Any:
    from recgym.agents import make_agent

    name = "refit" if kind.startswith("refit") else kind
    return make_agent(name, env, seed=seed, samples_per_user=args.samples_per_user, eval_every=0,
                      keep_best=False, progress=False, device=None)


def measure_memory(which: str, args: argparse.Namespace) -> dict[str, float]:
    """Peak memory of one pre-training epoch or of ``args.mem_iterations`` ReFiT iterations (this process)."""
    torch.set_num_threads(args.threads)
    device = args.device
    model, ds, _ = load_model(device, log=lambda s: None)
    from recgym.recommenders import make_splits

    splits = make_splits(ds, model.config.valid_fraction, model.config.split_seed)
    env = make_env(model, ds, device, args.batch)  # built in both runs so that the setup is the same
    import gc

    gc.collect()
    base_rss = _rss_now_mb()
    _reset_peak_rss()
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated() / 2**20
    if which == "pretrain":
        pretrain_epoch(model, splits, device)
    else:
        agent = finetuner("refit_racs", env, args, 0)
        agent.learn(env, args.mem_iterations)
    out = {"peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base_rss}
    if str(device).startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["cuda_base_mb"] = base_cuda
    return out


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


def _memory_subprocess(which: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, "-m", "recgym.benchmarks.refit_table", "--measure-memory", which, "--device", args.device,
           "--batch", str(args.batch), "--samples-per-user", str(args.samples_per_user),
           "--mem-iterations", str(args.mem_iterations), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=200, help="fine-tuning iterations (paper: 200)")
    ap.add_argument("--batch", type=int, default=64, help="users per iteration (paper: 64)")
    ap.add_argument("--samples-per-user", type=int, default=32)
    ap.add_argument("--sb3-steps", type=int, default=64 * 40 * 20, help="env transitions for SAC / TD3")
    ap.add_argument("--guidance-scale", type=float, default=0.1, help="action_scale of the guidance env")
    ap.add_argument("--eval-users", type=int, default=0, help="evaluate on N random users (0: all)")
    ap.add_argument("--methods", default="pretrained,refit_racs,refit_ra,ddpo,rwft,sb3_sac,sb3_td3,ease,mostpop")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mem-iterations", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--measure-memory", choices=("pretrain", "refit"), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure_memory:
        print(json.dumps(measure_memory(args.measure_memory, args)))
        return {}
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    device = args.device
    t_start = time.perf_counter()
    model, ds, source = load_model(device)
    from recgym.recommenders import EASE, MostPop, evaluate_diffrec, evaluate_scores, make_splits

    splits = make_splits(ds, model.config.valid_fraction, model.config.split_seed)
    ev_splits = subset_splits(splits, args.eval_users)
    print(f"model: {source}; eval users: {ev_splits.n_users}/{splits.n_users}; device {device}", flush=True)
    results: dict[str, list[dict[str, float]]] = {}
    timing: dict[str, Any] = {}

    pre = evaluate_diffrec(model, ev_splits)
    results["pretrained DiffRec"] = [pre["test"] | {"valid_Recall@20": _m(pre["valid"], "Recall@20")}]
    pre_valid = _m(pre["valid"], "Recall@20")
    print(f"pre-trained: test {pre['test']}", flush=True)

    for kind in [m for m in methods if m in FINETUNERS]:
        reward = "ra" if kind == "refit_ra" else "racs"
        env = make_env(model, ds, device, args.batch, reward=reward)
        rows = []
        for seed in args.seeds:
            agent = finetuner(kind, env, args, seed)
            agent.bridge.eval_splits = ev_splits
            # model selection between the pre-trained weights (already evaluated) and the end of training
            agent.best_valid = pre_valid
            agent.best_state = {k: v.detach().clone() for k, v in agent.policy.state_dict().items()}
            _sync(device)
            t0 = time.perf_counter()
            agent.learn(env, args.iterations)
            _sync(device)
            dt = time.perf_counter() - t0
            agent._validate(None)
            agent.policy.load_state_dict(agent.best_state)
            test = agent.evaluate(("test",))["test"]
            rows.append(test | {"valid_Recall@20": agent.best_valid, "best_iteration": agent.best_iteration,
                                "sec_per_iteration": dt / max(1, args.iterations)})
            print(f"{kind} seed {seed}: {dt / max(1, args.iterations):.2f}s/it, best it {agent.best_iteration}, "
                  f"test {test}", flush=True)
        results[kind] = rows
        timing[f"{kind}_sec_per_iteration"] = float(np.mean([r["sec_per_iteration"] for r in rows]))

    for name in [m for m in methods if m in SB3]:
        from recgym.agents import make_agent

        env = make_env(model, ds, device, args.batch, action_mode="guidance", action_scale=args.guidance_scale)
        rows = []
        for seed in args.seeds:
            agent = make_agent(name, env, seed=seed, progress=False, learning_starts=min(1000, args.sb3_steps // 2))
            t0 = time.perf_counter()
            agent.learn(env, args.sb3_steps)
            dt = time.perf_counter() - t0
            ev = evaluate_scores(lambda x, u, a=agent: a.scores(x), ev_splits, (10, 20), device,
                                 model.config.eval_batch_size)
            rows.append(ev["test"] | {"valid_Recall@20": _m(ev["valid"], "Recall@20"), "train_seconds": dt})
            print(f"{name} seed {seed}: {dt:.1f}s, test {ev['test']}", flush=True)
        results[f"{name} (guidance)"] = rows

    if "ease" in methods:
        # fitted on the full training matrix, lambda chosen on validation Recall@20 of the evaluated users
        best = None
        for lam in (50, 100, 200, 500, 1000, 2000):
            m = EASE(lam).fit(splits.train, device)
            r = _m(evaluate_scores(m.score, ev_splits, (10, 20), device, which=("valid",))["valid"], "Recall@20")
            if best is None or r > best[0]:
                best = (r, m)
        ev = evaluate_scores(best[1].score, ev_splits, (10, 20), device)
        results[f"EASE (lambda {best[1].lam:g})"] = [ev["test"] | {"valid_Recall@20": _m(ev["valid"], "Recall@20")}]
    if "mostpop" in methods:
        pop = MostPop().fit(splits.train, device)
        ev = evaluate_scores(pop.score, ev_splits, (10, 20), device)
        results["MostPop"] = [ev["test"] | {"valid_Recall@20": _m(ev["valid"], "Recall@20")}]

    timing["pretrain_sec_per_epoch"] = pretrain_epoch(model, splits, device)
    memory: dict[str, Any] = {}
    if not args.no_memory:
        if str(device).startswith("cuda"):
            memory["pretrain"] = measure_memory("pretrain", args)
            memory["refit"] = measure_memory("refit", args)
        else:
            memory["pretrain"] = _memory_subprocess("pretrain", args)
            memory["refit"] = _memory_subprocess("refit", args)
    report = {"source": source, "eval_users": ev_splits.n_users, "seeds": args.seeds, "args": vars(args),
              "results": results, "timing": timing, "memory": memory,
              "total_seconds": time.perf_counter() - t_start}
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1, default=str)
        os.replace(tmp, args.json)
    return report


def print_report(report: dict[str, Any]) -> None:
    """Markdown table (mean +- std over seeds), timing and memory lines."""
    print(f"\nML-1M clean, DiffRec protocol, test split, {report['eval_users']} users, seeds {report['seeds']}")
    print("| method | " + " | ".join(METRICS) + " | valid R@20 | n |")
    print("|---|" + "---|" * (len(METRICS) + 2))
    for name, rows in report["results"].items():
        cells = []
        for m in (*METRICS, "valid_Recall@20"):
            vals = np.array([_m(r, m) for r in rows])
            cells.append(f"{vals.mean():.4f}" + (f" +- {vals.std():.4f}" if len(vals) > 1 else ""))
        print(f"| {name} | " + " | ".join(cells) + f" | {len(rows)} |")
    t = report["timing"]
    if "refit_racs_sec_per_iteration" in t:
        ratio = t["pretrain_sec_per_epoch"] / t["refit_racs_sec_per_iteration"]
        print(f"\nReFiT: {t['refit_racs_sec_per_iteration']:.2f} s/iteration; DiffRec pre-training: "
              f"{t['pretrain_sec_per_epoch']:.2f} s/epoch (x{ratio:.1f})")
    mem = report["memory"]
    if mem:
        p, r = mem["pretrain"], mem["refit"]
        if "cuda_peak_mb" in p:
            print(f"peak cuda memory: pre-training {p['cuda_peak_mb']:.1f} MB, ReFiT {r['cuda_peak_mb']:.1f} MB "
                  f"({100 * (r['cuda_peak_mb'] / p['cuda_peak_mb'] - 1):+.1f}%)")
        print(f"peak RSS: pre-training {p['peak_rss_mb']:.0f} MB, ReFiT {r['peak_rss_mb']:.0f} MB "
              f"({100 * (r['peak_rss_mb'] / p['peak_rss_mb'] - 1):+.1f}%); over the loaded RSS: pre-training "
              f"+{p['peak_rss_mb'] - p['base_rss_mb']:.0f} MB, ReFiT +{r['peak_rss_mb'] - r['base_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
