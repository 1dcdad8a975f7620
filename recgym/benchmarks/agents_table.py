"""All rec-env agents on Coat and Yahoo under the ``roler`` protocol preset, as a table.

    python -m recgym.benchmarks.agents_table --data coat yahoo --seeds 0 1 2

Protocol: ``GroundTruthRec-<D>-v0`` with ``protocol="roler"`` (NX_0, N=1, M=0, max_turn 30), the evaluation
env of every agent. Each (agent, dataset, seed) run builds the agent with ``make_agent(name, eval_env,
seed=s)``, calls ``learn`` with the agent's budget (below, times ``--scale``) and reads the agent's
evaluation curve (``agent.history``: ``--eval-episodes`` episodes per evaluation). Reported per agent and
dataset: mean +- std over seeds of the curve average (mean over the run's evaluations, DORL / ROLeR style)
and of the final evaluation, for R_cumu, R_avg and Length, and the mean wall time per run (including world-model
fits on first use; they are cached, so the first seed of a world-model agent pays for the fit).

Training envs: the A2C presets (``r3s``, ``dorl``, ``mopo``, ``mbpo``, ``roler``) train in
``InteractiveRec-<D>-v0`` with their reward preset and the roler protocol; ``gt`` trains in the ground truth
(upper reference); the SB3 agents train in ``InteractiveRec-<D>-v0`` with the ``roler`` reward preset; the
offline agents and exp_rsft train on the logs; bandits and static baselines only evaluate.

Default budgets are small, sized for a 2-core CPU (A2C presets 150,000 env steps: with the presets' exploration
defaults, ``ent_coef`` 1.0, 30,000 steps are too few to leave the random level); they are far below the papers'
(DORL: 200 epochs x 100 episodes = 600,000 steps at 30 turns), so absolute numbers are not comparable with the
published ones: the table is a reduced-budget comparison. ``--scale 4`` matches DORL's step count for A2C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

from recgym.data.registry import dataset_info

AGENTS = ("gt", "r3s", "dorl", "mopo", "mbpo", "roler", "ucb", "epsilon_greedy", "random", "popularity",
          "top_rated", "bcq", "cql", "crr", "sqn", "exp_rsft", "sb3_ppo", "sb3_sac", "sb3_td3")
DATA_IDS = {n: dataset_info(n).env_tag for n in ("coat", "yahoo", "synthetic", "kuairec", "kuairand")}
A2C = ("gt", "r3s", "dorl", "mopo", "mbpo", "roler")
OFFLINE = ("bcq", "cql", "crr", "sqn", "exp_rsft")
SB3 = ("sb3_ppo", "sb3_sac", "sb3_td3")
METRICS = ("R_cumu", "R_avg", "Length")


def plan(name: str, scale: float, eval_episodes: int) -> tuple[dict[str, Any], int]:
    """(config overrides, learn budget) of one agent at budget ``scale``."""
    n = lambda x: max(1, int(round(x * scale)))  # noqa: E731
    base: dict[str, Any] = {"progress": False, "eval_episodes": eval_episodes}
    if name in A2C:
        steps = n(150_000)
        return {**base, "num_envs": 100, "eval_every": max(1, steps // 3)}, steps
    if name in OFFLINE:
        steps = n(300)
        return {**base, "eval_every": max(1, steps // 3)}, steps
    if name in SB3:
        steps = n(6_000)
        return {**base, "reward_preset": "roler", "num_envs": 20,
                "eval_every": max(1, steps // 3)}, steps
    if name in ("ucb", "epsilon_greedy"):
        return {**base, "eval_every": 3_000}, 9_000
    return {**base, "n_evals": 3}, 0


def run_one(name: str, data: str, seed: int, scale: float, eval_episodes: int, device: str) -> dict[str, Any]:
    import gymnasium as gym
    import torch

    import recgym  # noqa: F401
    from recgym.agents import make_agent

    torch.manual_seed(seed)
    env = gym.make_vec(f"GroundTruthRec-{DATA_IDS[data]}-v0", num_envs=min(100, eval_episodes), protocol="roler",
                       device=device)
    cfg, budget = plan(name, scale, eval_episodes)
    t0 = time.perf_counter()
    agent = make_agent(name, env, seed=seed, **cfg)
    agent.learn(env, budget)
    wall = time.perf_counter() - t0
    hist = agent.history
    out: dict[str, Any] = {"agent": name, "data": data, "seed": seed, "budget": budget, "wall_s": wall,
                           "n_evals": len(hist)}
    for m in METRICS:
        vals = [h[m] for h in hist if m in h]
        out[f"{m}_curve"] = sum(vals) / len(vals) if vals else float("nan")
        out[f"{m}_final"] = vals[-1] if vals else float("nan")
    return out


def _ms(vals: list[float]) -> str:
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return "n/a"
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return f"{mean:.2f} ± {std:.2f}"


def table(rows: list[dict[str, Any]], datasets: list[str]) -> str:
    """Markdown table: one line per agent, per dataset the curve / final R_cumu, final R_avg and Length."""
    head = ["agent"]
    for d in datasets:
        head += [f"{d} R_cumu curve", f"{d} R_cumu final", f"{d} R_avg final", f"{d} Length final", f"{d} wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    for a in agents:
        cells = [a]
        for d in datasets:
            rs = [r for r in rows if r["agent"] == a and r["data"] == d]
            if not rs:
                cells += ["-"] * 5
                continue
            cells += [_ms([r["R_cumu_curve"] for r in rs]), _ms([r["R_cumu_final"] for r in rs]),
                      _ms([r["R_avg_final"] for r in rs]), _ms([r["Length_final"] for r in rs]),
                      f"{sum(r['wall_s'] for r in rs) / len(rs):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["coat", "yahoo"], choices=sorted(DATA_IDS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--agents", nargs="+", default=list(AGENTS))
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every learning budget")
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=None, help="also write the raw rows as JSON lines here")
    p.add_argument("--from-jsonl", default=None,
                   help="print the table of rows saved with --out (a later row replaces an earlier one with the "
                        "same agent, data and seed) and run nothing")
    args = p.parse_args(argv)
    if args.from_jsonl:
        latest: dict[tuple, dict[str, Any]] = {}
        with open(args.from_jsonl) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    latest[(r["agent"], r["data"], r["seed"])] = r
        rows = [r for r in latest.values() if r["data"] in args.data and r["agent"] in args.agents]
        rows.sort(key=lambda r: (args.agents.index(r["agent"]), r["seed"]))
        print(table(rows, args.data))
        return
    import torch

    torch.set_num_threads(args.threads)
    unknown = sorted(set(args.agents) - set(AGENTS))
    if unknown:
        raise SystemExit(f"unknown agent(s) {unknown}; valid: {list(AGENTS)}")
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for data in args.data:
        for name in args.agents:
            for seed in args.seeds:
                try:
                    row = run_one(name, data, seed, args.scale, args.eval_episodes, args.device)
                except Exception as exc:  # noqa: BLE001 - report the failure in the table, keep going
                    row = {"agent": name, "data": data, "seed": seed, "wall_s": float("nan"), "error": repr(exc)}
                    for m in METRICS:
                        row[f"{m}_curve"] = row[f"{m}_final"] = float("nan")
                rows.append(row)
                print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}),
                      flush=True)
                if args.out:
                    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
    print()
    print(f"roler preset (NX_0, N=1, M=0, max_turn 30); seeds {args.seeds}; scale {args.scale}; "
          f"{args.eval_episodes} episodes per evaluation; total {time.perf_counter() - t_all:.0f} s")
    print(table(rows, args.data))


if __name__ == "__main__":
    main()
