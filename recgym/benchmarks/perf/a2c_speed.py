"""A2C end-to-end training speed and the result it reaches: env steps per second of ``agent.learn`` and the
final R_cumu, per seed, for named config variants side by side.

    python -m recgym.benchmarks.perf.a2c_speed [--data coat] [--agent gt] [--budget 150000] [--seeds 0 1 2]
        [--variant faithful minibatch_size=64] [--variant default] [--threads 1] [--num-envs 100]

Setting: ``GroundTruthRec-<D>-v0`` with the ``roler`` protocol (NX_0, N=1, M=0, 30 turns), ``--num-envs``
parallel training envs, 1 torch thread by default; each run builds the agent with ``make_agent(agent, env,
seed=s, eval_every=budget // 3, eval_episodes=100)`` and times ``learn(env, budget)`` end to end: rollouts,
updates and the three evaluations (as in the agents table), not the env or agent construction. Reported per
run: wall seconds, process CPU seconds (a fairer clock on a shared machine: one thread), env steps per
second of each, and the final and curve-average greedy R_cumu (100 episodes per evaluation).

A variant is a label plus ``key=value`` config overrides (values parsed as Python literals when possible);
``faithful`` (DORL's update: 64-transition minibatches, lr 1e-3) and ``default`` (the agent's defaults) are
shipped as `VARIANTS`.
"""

from __future__ import annotations

import argparse
import ast
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# DORL's A2C update (tianshou's A2C, 64-transition minibatches, one pass, lr 1e-3) next to the agent's defaults
VARIANTS: dict[str, dict[str, Any]] = {
    "faithful": {"minibatch_size": 64, "lr": 1e-3, "update_epochs": 1},
    "default": {},
}


def a2c_speed_run(data: str = "coat", agent: str = "gt", budget: int = 150_000, seed: int = 0,
                  config: Mapping[str, Any] | None = None, num_envs: int = 100, threads: int = 1,
                  device: str = "cpu", eval_episodes: int = 100) -> dict[str, Any]:
    """One timed ``learn`` (see the module docstring); a row of the table."""
    import gymnasium as gym
    import torch

    import recgym  # noqa: F401  (registers the envs)
    from recgym.agents import make_agent
    from recgym.data.registry import dataset_info

    torch.set_num_threads(int(threads))
    env_id = f"GroundTruthRec-{dataset_info(data).env_tag}-v0"
    env = gym.make_vec(env_id, num_envs=num_envs, protocol="roler", device=device)
    a = make_agent(agent, env, seed=seed, num_envs=num_envs, eval_every=max(1, budget // 3),
                   eval_episodes=eval_episodes, progress=False, **dict(config or {}))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    a.learn(env, budget)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    curve = [h["R_cumu"] for h in a.history]
    return {"agent": agent, "data": data, "seed": seed, "budget": budget, "wall_s": wall, "cpu_s": cpu,
            "steps_per_s": budget / wall, "steps_per_cpu_s": budget / cpu, "R_cumu_final": curve[-1],
            "R_cumu_curve": float(np.mean(curve))}


def a2c_speed(variants: Mapping[str, Mapping[str, Any]] | None = None, seeds: Sequence[int] = (0,),
              **kwargs: Any) -> list[dict[str, Any]]:
    """`a2c_speed_run` for every (variant, seed), variants interleaved per seed (so that a change of machine
    load hits them alike); rows carry the variant's label and overrides."""
    variants = dict(VARIANTS if variants is None else variants)
    rows = []
    for seed in seeds:
        for label, config in variants.items():
            row = a2c_speed_run(seed=seed, config=config, **kwargs)
            rows.append({"variant": label, "config": dict(config), **row})
    return rows


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: mean env steps/s (wall and CPU) and mean +- std over seeds of the final and curve R_cumu."""
    out = []
    for label in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == label]
        col = {k: np.array([r[k] for r in rs], dtype=float)
               for k in ("steps_per_s", "steps_per_cpu_s", "R_cumu_final", "R_cumu_curve")}
        out.append({"variant": label, "config": rs[0]["config"], "seeds": len(rs),
                    "steps_per_s": float(col["steps_per_s"].mean()),
                    "steps_per_cpu_s": float(col["steps_per_cpu_s"].mean()),
                    "R_cumu_final": float(col["R_cumu_final"].mean()), "R_cumu_final_std": float(col["R_cumu_final"].std()),
                    "R_cumu_curve": float(col["R_cumu_curve"].mean()), "R_cumu_curve_std": float(col["R_cumu_curve"].std())})
    return out


def format_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of `summarize`'s rows."""
    lines = ["| variant | env steps/s (wall) | env steps/s (CPU) | R_cumu final | R_cumu curve |",
             "|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['variant']} | {s['steps_per_s']:,.0f} | {s['steps_per_cpu_s']:,.0f} | "
                     f"{s['R_cumu_final']:.2f} +- {s['R_cumu_final_std']:.2f} | "
                     f"{s['R_cumu_curve']:.2f} +- {s['R_cumu_curve_std']:.2f} |")
    return "\n".join(lines) + "\n"


def parse_variant(items: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """``["label", "key=value", ...]`` -> (label, overrides); a shipped label alone means its `VARIANTS` entry."""
    if not items:
        raise ValueError("--variant needs a label, then optional key=value overrides")
    label, pairs = items[0], items[1:]
    config: dict[str, Any] = dict(VARIANTS.get(label, {})) if not pairs else {}
    for item in pairs:
        if "=" not in item:
            raise ValueError(f"--variant {label}: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            config[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            config[key] = raw
    return label, config


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="coat")
    p.add_argument("--agent", default="gt")
    p.add_argument("--budget", type=int, default=150_000, help="training env steps per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variant", nargs="+", action="append", metavar="LABEL [KEY=VALUE ...]",
                   help="a config variant (repeatable; default: faithful and default)")
    p.add_argument("--num-envs", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    variants = dict(parse_variant(v) for v in args.variant) if args.variant else None
    rows = []
    for seed in args.seeds:
        for row in a2c_speed(variants, seeds=[seed], data=args.data, agent=args.agent, budget=args.budget,
                             num_envs=args.num_envs, threads=args.threads, device=args.device):
            rows.append(row)
            print(f"{row['variant']} seed {row['seed']}: {row['steps_per_s']:,.0f} env steps/s "
                  f"({row['steps_per_cpu_s']:,.0f} per CPU s), R_cumu final {row['R_cumu_final']:.2f}, "
                  f"curve {row['R_cumu_curve']:.2f}", flush=True)
    print(format_table(summarize(rows)), end="")
    return rows


if __name__ == "__main__":
    main()
