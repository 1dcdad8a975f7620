"""A2C-`gt` on GroundTruthRec-Synthetic-v0 (roler protocol) against the optimal, random and popularity returns.

    python -m recgym.benchmarks.a2c_synthetic --budget 300000 --seeds 0 1 2 [--agent gt]
        [--set lr=0.003 --set "tracker={'user_dim': 32}" ...] [--episodes 500] [--num-envs 100] [--device cpu]

Issue 6's check: A2C-gt must reach >= 90% of the optimal R_cumu (NX_0, no quitting, 30 steps: the mean over
users of the sum of their 30 best ground-truth values, `recgym.data.synthetic.optimal_return`). Prints, per
seed, the final greedy evaluation R_cumu, its fraction of the optimum and the wall time, then mean +- std;
``--set key=value`` overrides an A2C config field (value parsed as a Python literal when possible).
"""

from __future__ import annotations

import argparse
import ast
import time

import gymnasium as gym
import numpy as np
import torch

import recgym  # noqa: F401  (registers the envs)
from recgym.agents import make_agent
from recgym.data.synthetic import optimal_return, random_return


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


class _LastScalars:
    """Keeps the last logged value of every tag (the final training losses and entropy)."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def log_scalar(self, tag: str, value: float, step: int) -> None:
        self.last[tag] = float(value)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=int, default=300_000, help="training env steps per seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--agent", default="gt")
    p.add_argument("--episodes", type=int, default=500, help="evaluation episodes")
    p.add_argument("--num-envs", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = _parse_sets(args.sets)
    env = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=args.num_envs, protocol="roler", device=args.device)
    gt = env.unwrapped.dataset.ground_truth
    opt, rnd = optimal_return(gt, 30).mean, random_return(gt, 30).mean
    pop_agent = make_agent("popularity", env, eval_episodes=args.episodes, progress=False)
    pop_agent.learn(env)
    pop = pop_agent.history[-1]["R_cumu"]
    print(f"optimal {opt:.2f}  random {rnd:.2f}  popularity {pop:.2f}  (90% of optimal: {0.9 * opt:.2f})")
    rets = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        agent = make_agent(args.agent, env, seed=seed, eval_every=0, eval_episodes=args.episodes, progress=False,
                           **overrides)
        log = _LastScalars()
        agent.learn(env, args.budget, logger=log)
        r = agent.history[-1]["R_cumu"]
        rets.append(r)
        print(f"{args.agent} seed {seed}: R_cumu {r:.2f} = {r / opt:.1%} of optimal "
              f"({time.perf_counter() - t0:.0f}s, budget {args.budget}; last train return "
              f"{log.last.get('train/return', float('nan')):.2f}, entropy {log.last.get('loss/entropy', float('nan')):.2f}, "
              f"value loss {log.last.get('loss/value', float('nan')):.4f})", flush=True)
    mean, std = float(np.mean(rets)), float(np.std(rets))
    print(f"{args.agent} mean {mean:.2f} +- {std:.2f} = {mean / opt:.1%} of optimal {opt:.2f} "
          f"(random {rnd:.2f}, popularity {pop:.2f}); overrides {overrides}")
    return {"optimal": opt, "random": rnd, "popularity": pop, "mean": mean, "std": std}


if __name__ == "__main__":
    main()
