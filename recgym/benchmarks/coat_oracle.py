"""Random policy vs "best item per user" oracle in GroundTruthRec-Coat-v0 (ROLeR preset by default).

    python -m recgym.benchmarks.coat_oracle [--dataset coat] [--preset roler] [--mode NX_0]
        [--episodes 1000] [--num-envs 100] [--seed 0] [--device cpu]

The oracle reads the ground-truth row of the episode's user and recommends the best allowed item (under
NX_0: the user's top items in order, i.e. its top-``max_turn`` sum when nobody quits); the random policy
picks uniformly among the allowed items (seeded). Both are scored with `recgym.envs.evaluate` on the same
users (same seed). A sanity check of the env and of the metric pipeline: the oracle must be far above random.
"""

from __future__ import annotations

import argparse

import torch

from recgym.envs.evaluation import evaluate
from recgym.envs.rec import GroundTruthRecEnv


def main(argv: list[str] | None = None) -> dict[str, dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="coat")
    p.add_argument("--preset", default="roler")
    p.add_argument("--mode", default=None)
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--num-envs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    env = GroundTruthRecEnv(args.dataset, num_envs=args.num_envs, protocol=args.preset, mode=args.mode,
                            device=args.device, data_dir=args.data_dir)
    gen = torch.Generator(device=env.device).manual_seed(args.seed)

    def random_policy(obs: dict, info: dict) -> torch.Tensor:
        m = info["action_mask"]
        u = torch.rand(m.shape, generator=gen, device=env.device)
        return u.masked_fill(~m, -1.0).argmax(1)

    def oracle(obs: dict, info: dict) -> torch.Tensor:
        scores = env.gt[obs["user"]].float()
        return scores.masked_fill(~info["action_mask"], float("-inf")).argmax(1)

    print(f"{args.dataset} protocol: {env.protocol}")
    out = {}
    for name, pol in (("random", random_policy), ("oracle", oracle)):
        r = evaluate(pol, env, args.episodes, seed=args.seed)
        out[name] = r
        print(f"{name:>7}: R_cumu {r['R_cumu']:.3f} +- {r['R_cumu_std']:.3f} | R_avg {r['R_avg']:.3f} | "
              f"Length {r['Length']:.2f} | CV {r['CV']:.3f} | CV_turn {r['CV_turn']:.4f} | MCD {r['MCD']:.3f}")
    if env.protocol["quitting"] is False:
        print(f"optimal (nobody quits): mean top-{env.max_turn} sum over the evaluation users = "
              f"{float(env.optimal_return().mean()):.3f}")
    return out


if __name__ == "__main__":
    main()
