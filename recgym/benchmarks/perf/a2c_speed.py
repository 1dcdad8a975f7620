"""A2C end-to-end training speed and the result it reaches: env steps per second of ``agent.learn`` and the
final R_cumu, per seed, for named config variants side by side.

``recgym perf a2c [--data coat] [--agent gt] [--budget 150000] [--seeds 0,1,2] [--variant faithful]
[--variant "fast n_steps=5 lr=0.003"] [--threads 1] [--num-envs 100]`` runs `a2c_speed` and prints
`format_a2c_speed`; the ``a2c_speed`` probe (`recgym.benchmarks.probes`) runs the same function in a suite.

Setting: ``GroundTruthRec-<D>-v0`` with the ``roler`` protocol (NX_0, N=1, M=0, 30 turns), ``num_envs``
parallel training envs, 1 torch thread by default. Each run builds the agent with ``make_agent(agent, env,
seed=s, num_envs=num_envs, eval_every=budget // 3, eval_episodes=100)`` plus the variant's overrides, and times
``learn(env, budget)`` end to end: rollouts, updates and the three evaluations (as in the ``agents`` suite), not
the env or agent construction. Per run: wall seconds, process CPU seconds (the fairer clock on a shared machine:
one thread), env steps per second of each, and the final and curve-average R_cumu (100 greedy episodes per
evaluation). Variants run interleaved per seed, so that a change of machine load hits them alike.

A variant is a label plus config overrides; `VARIANTS` ships ``default`` (the agent's defaults; for ``gt`` and the
world-model methods `recgym.agents.a2c.FAST_UPDATE`) and ``faithful`` (`recgym.agents.a2c.DORL_UPDATE`, the update
of DORL's A2C learner: a 30-step rollout of the 100 envs, then one pass of Adam steps on 64-transition
minibatches, lr 1e-3).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recgym.agents.a2c import DORL_UPDATE

__all__ = ["VARIANTS", "a2c_speed", "a2c_speed_run", "format_a2c_speed", "parse_variant", "summarize"]

VARIANTS: dict[str, dict[str, Any]] = {"default": {}, "faithful": dict(DORL_UPDATE)}


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
    env = gym.make_vec(f"GroundTruthRec-{dataset_info(data).env_tag}-v0", num_envs=num_envs, protocol="roler",
                       device=device)
    a = make_agent(agent, env, seed=seed, num_envs=num_envs, eval_every=max(1, budget // 3),
                   eval_episodes=eval_episodes, progress=False, **dict(config or {}))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    a.learn(env, budget)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    curve = [h["R_cumu"] for h in a.history]
    return {"agent": agent, "data": data, "seed": seed, "budget": budget, "wall_s": wall, "cpu_s": cpu,
            "steps_per_s": budget / wall, "steps_per_cpu_s": budget / cpu, "R_cumu_final": curve[-1],
            "R_cumu_curve": float(np.mean(curve))}


def a2c_speed(variants: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
              seeds: Sequence[int] = (0,), data: str = "coat", agent: str = "gt", budget: int = 150_000,
              num_envs: int = 100, threads: int = 1, device: str = "cpu") -> list[dict[str, Any]]:
    """`a2c_speed_run` for every (seed, variant), variants interleaved per seed. ``variants``: a mapping label ->
    overrides, or a list of `parse_variant` strings; None = both `VARIANTS`. Rows carry the variant's label and
    its overrides (as ``key=value`` text)."""
    if variants is None:
        variants = VARIANTS
    elif not isinstance(variants, Mapping):
        variants = dict(parse_variant(v) for v in variants)
    rows = []
    for seed in seeds:
        for label, config in variants.items():
            row = a2c_speed_run(data, agent, budget, int(seed), config, num_envs, threads, device)
            rows.append({"variant": label, "config": " ".join(f"{k}={v}" for k, v in config.items()), **row})
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
                    "R_cumu_final": float(col["R_cumu_final"].mean()),
                    "R_cumu_final_std": float(col["R_cumu_final"].std()),
                    "R_cumu_curve": float(col["R_cumu_curve"].mean()),
                    "R_cumu_curve_std": float(col["R_cumu_curve"].std())})
    return out


def format_a2c_speed(rows: Sequence[Mapping[str, Any]]) -> str:
    """The per-run lines, then a markdown table of `summarize` (mean +- std over seeds, population std)."""
    lines = [f"{r['variant']} seed {r['seed']}: {r['steps_per_s']:,.0f} env steps/s ({r['steps_per_cpu_s']:,.0f} "
             f"per CPU s), R_cumu final {r['R_cumu_final']:.2f}, curve {r['R_cumu_curve']:.2f}" for r in rows]
    lines += ["", "| variant | overrides | env steps/s (wall) | env steps/s (CPU) | R_cumu final | R_cumu curve |",
              "|---|---|---|---|---|---|"]
    for s in summarize(rows):
        lines.append(f"| {s['variant']} | {s['config'] or '-'} | {s['steps_per_s']:,.0f} | "
                     f"{s['steps_per_cpu_s']:,.0f} | {s['R_cumu_final']:.2f} +- {s['R_cumu_final_std']:.2f} | "
                     f"{s['R_cumu_curve']:.2f} +- {s['R_cumu_curve_std']:.2f} |")
    return "\n".join(lines) + "\n"


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"label key=value ..."`` -> (label, overrides), values parsed as Python literals when they parse; a
    shipped label alone (``"faithful"``) means its `VARIANTS` entry."""
    parts = text.split()
    if not parts:
        raise ValueError("a variant needs a label, then optional key=value overrides, e.g. 'fast n_steps=5'")
    label, pairs = parts[0], parts[1:]
    if not pairs:
        return label, dict(VARIANTS.get(label, {}))
    config: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise ValueError(f"variant {label!r}: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            config[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            config[key] = raw
    return label, config
