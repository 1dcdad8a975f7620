"""DAC4Rec table: DAC4Rec (with / without energy guidance), DAC4Rec-A, SAC, SAC+Diffusion(+Energy), TD3,
TD3+Diffusion on GroundTruthRec envs, R_cumu / R_avg / Length (mean +- std over seeds) and wall times.

    python -m recgym.benchmarks.dac4rec_table --data coat yahoo synthetic --seeds 0 1 2

Every agent is trained offline on the dataset's training logs (`recgym.agents.dac4rec`) for ``--steps``
actor-critic gradient steps (plus ``--energy-steps`` for the energy model where guidance is on), then
evaluated once on ``--eval-episodes`` episodes of ``GroundTruthRec-<D>-v0`` under ``--preset`` (default
``easyrl4rec``: FB mode, the protocol of the paper's tables; ``--preset roler`` for ROLeR's NX_0). The
defaults (150 steps, batch 128, 40 energy steps, N = 10, GRU tracker) are sized for a small shared CPU (72
runs; 35 min wall with 2 workers on an overloaded 2-core machine); the paper trains far longer, so these are
smoke-scale numbers, not a reproduction. Runs are deterministic per seed. ``--n-study 10 100`` adds
DAC4Rec rows with those numbers of diffusion steps N. The table is printed as Markdown and, with ``--out``,
written (with every per-run result) as JSON, atomically.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from typing import Any

from recgym.data.cache import atomic_write_bytes

METHODS: dict[str, str] = {  # row label -> registered agent
    "DAC4Rec": "dac4rec",
    "DAC4Rec (no guidance)": "dac4rec_noguide",
    "DAC4Rec-A": "dac4rec_a",
    "SAC": "offline_sac",
    "SAC+Diffusion": "sac_diffusion",
    "SAC+Diffusion+Energy": "sac_diffusion_energy",
    "TD3": "offline_td3",
    "TD3+Diffusion": "td3_diffusion",
}
DATA_IDS = {"coat": "Coat", "yahoo": "Yahoo", "synthetic": "Synthetic", "kuairec": "KuaiRec",
            "kuairand": "KuaiRand", "ml1m": "ML1M"}

_ENVS: dict[str, Any] = {}


def _make_env(data: str, preset: str, eval_episodes: int, device: str) -> Any:
    import gymnasium as gym

    import recgym  # noqa: F401  (registers the env ids)

    if data.lower() not in DATA_IDS:
        raise ValueError(f"--data {data!r}: valid values {sorted(DATA_IDS)}")
    return gym.make_vec(f"GroundTruthRec-{DATA_IDS[data.lower()]}-v0", num_envs=min(eval_episodes, 100),
                        vectorization_mode="vector_entry_point", protocol=preset, device=device)


def _run(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from recgym.agents import make_agent

    torch.set_num_threads(1)
    key = f"{job['data']}|{job['preset']}"
    if key not in _ENVS:
        _ENVS[key] = _make_env(job["data"], job["preset"], job["eval_episodes"], job["device"])
    env = _ENVS[key]
    t0 = time.perf_counter()
    agent = make_agent(job["agent"], env, seed=job["seed"], progress=False, eval_episodes=job["eval_episodes"],
                       **job["config"])
    agent.learn(env, job["steps"])
    wall = time.perf_counter() - t0
    res = agent.history[-1]
    return {**{k: job[k] for k in ("label", "agent", "data", "seed", "preset", "steps")},
            "config": job["config"], "R_cumu": res["R_cumu"], "R_avg": res["R_avg"], "Length": res["Length"],
            "CV": res.get("CV"), "wall_s": wall, "self_recovery": agent.meta["self_recovery"]}


def _fmt(vals: list[float], nd: int = 2) -> str:
    if len(vals) == 1:
        return f"{vals[0]:.{nd}f}"
    return f"{statistics.fmean(vals):.{nd}f} ± {statistics.pstdev(vals):.{nd}f}"


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table: one row per (data, method), mean ± std over seeds."""
    lines = ["| data | method | R_cumu | R_avg | Length | seeds | wall s/run |", "|---|---|---|---|---|---|---|"]
    order: list[tuple[str, str]] = []
    for r in results:
        if (r["data"], r["label"]) not in order:
            order.append((r["data"], r["label"]))
    for data, label in order:
        rs = [r for r in results if r["data"] == data and r["label"] == label]
        lines.append(f"| {data} | {label} | {_fmt([r['R_cumu'] for r in rs])} | {_fmt([r['R_avg'] for r in rs], 3)} "
                     f"| {_fmt([r['Length'] for r in rs])} | {len(rs)} | {statistics.fmean(r['wall_s'] for r in rs):.1f} |")
    return "\n".join(lines)


def _write_json(path: str, payload: Any) -> None:
    atomic_write_bytes(path, json.dumps(payload, indent=1).encode())


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", nargs="+", default=["coat", "yahoo", "synthetic"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="*", default=list(METHODS), help=f"row labels, from {list(METHODS)}")
    p.add_argument("--preset", default="easyrl4rec", help="GroundTruthRec protocol preset (easyrl4rec, roler, dorl)")
    p.add_argument("--steps", type=int, default=150, help="actor-critic gradient steps per run")
    p.add_argument("--energy-steps", type=int, default=40, help="energy-model steps (guided methods)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-diffusion", type=int, default=10, help="diffusion steps N")
    p.add_argument("--guidance-scale", type=float, default=1.0)
    p.add_argument("--tracker", default="gru", help="gru (paper Table 1), sasrec (Table 2) or avg")
    p.add_argument("--n-study", nargs="*", type=int, default=[], help="extra DAC4Rec rows with these N")
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="JSON file for the table and every run")
    a = p.parse_args(argv)
    unknown = [m for m in a.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; valid: {list(METHODS)}")
    base = {"batch_size": a.batch_size, "lr": a.lr, "tracker": {"kind": a.tracker}, "energy_steps": a.energy_steps}
    jobs: list[dict[str, Any]] = []
    for data in a.data:
        rows = [(m, METHODS[m], {}) for m in a.methods]
        rows += [(f"DAC4Rec (N={n})", "dac4rec", {"n_diffusion_steps": n}) for n in a.n_study]
        for label, agent, extra in rows:
            cfg = dict(base)
            if "diffusion" in agent or agent.startswith("dac4rec"):
                cfg["n_diffusion_steps"] = a.n_diffusion
            if agent in ("dac4rec", "dac4rec_a", "sac_diffusion_energy"):
                cfg["guidance_scale"] = a.guidance_scale
            cfg.update(extra)
            for seed in a.seeds:
                jobs.append({"label": label, "agent": agent, "data": data, "seed": seed, "preset": a.preset,
                             "steps": a.steps, "config": cfg, "eval_episodes": a.eval_episodes, "device": a.device})
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    if a.workers <= 1:
        for job in jobs:
            results.append(_run(job))
            r = results[-1]
            print(f"{r['data']:9s} {r['label']:24s} seed {r['seed']}: R_cumu {r['R_cumu']:.2f} R_avg {r['R_avg']:.3f} "
                  f"Length {r['Length']:.2f} ({r['wall_s']:.1f}s)", flush=True)
    else:
        with mp.get_context("fork").Pool(a.workers) as pool:
            for r in pool.imap(_run, jobs):
                results.append(r)
                print(f"{r['data']:9s} {r['label']:24s} seed {r['seed']}: R_cumu {r['R_cumu']:.2f} "
                      f"R_avg {r['R_avg']:.3f} Length {r['Length']:.2f} ({r['wall_s']:.1f}s)", flush=True)
    total = time.perf_counter() - t0
    md = table(results)
    print(f"\npreset {a.preset}, {a.steps} actor-critic steps (+{a.energy_steps} energy steps where guided), batch "
          f"{a.batch_size}, lr {a.lr}, N={a.n_diffusion}, tracker {a.tracker}, {a.eval_episodes} eval episodes; "
          f"total wall {total:.0f}s with {a.workers} workers\n")
    print(md)
    if a.out:
        _write_json(a.out, {"args": vars(a), "total_wall_s": total, "table": md, "runs": results})
    return results


if __name__ == "__main__":
    main()
