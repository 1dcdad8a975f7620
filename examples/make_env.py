"""Make recgym envs with gymnasium, step a random policy, and score a policy with `recgym.envs.evaluate`.

Run: python examples/make_env.py                 (synthetic data, no download, seconds on a CPU)
     python examples/make_env.py --num-envs 1024 --episodes 2000 --device cuda
     python examples/make_env.py --world-model diffusion   (R3S's own world model: slower first fit)
World models are fitted once and cached under $RECGYM_CACHE_DIR (else ~/.cache/recgym).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import recgym  # noqa: F401  (registers the GroundTruthRec-*, InteractiveRec-*, DiffusionDenoise-* ids)
from recgym.envs import evaluate


def random_policy(seed: int):
    """A policy is any callable (obs, info) -> int64 item ids [num_envs]; this one is uniform over allowed items."""
    gen = torch.Generator().manual_seed(seed)

    def act(obs, info):
        mask = info["action_mask"]  # bool [num_envs, n_items], True = allowed (NX modes: no repeats)
        noise = torch.rand(mask.shape, generator=gen).to(mask.device)
        return noise.masked_fill(~mask, -1.0).argmax(1)

    return act


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int, default=16, help="batch size of the vector env")
    p.add_argument("--episodes", type=int, default=64, help="episodes for evaluate()")
    p.add_argument("--protocol", default="roler", help="protocol: dorl, dorl_code, roler, easyrl4rec, custom")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--world-model", default="mf",
                   help="InteractiveRec world model: mf (fast), deepfm, diffusion (the r3s reward preset's own), knn")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    # 1. The single env: numpy observations, gymnasium API (check_env / SB3 compatible).
    single = gym.make("GroundTruthRec-Synthetic-v0", protocol=args.protocol)
    obs, info = single.reset(seed=args.seed)
    single.action_space.seed(args.seed)
    print("single env: obs keys", sorted(obs), "| protocol", info["protocol"])
    total, done = 0.0, False
    while not done:  # NX_0 forbids repeats: sample among the allowed items (a repeat raises a clear ValueError)
        action = single.action_space.sample(mask=info["action_mask"].astype(np.int8))
        obs, r, terminated, truncated, info = single.step(action)
        total, done = total + float(r), terminated or truncated
    print(f"single env: one random episode, return {total:.2f} over {int(obs['step'])} steps")

    # 2. The batched env: torch tensors on `device`, `num_envs` users in parallel, autoreset (NEXT_STEP).
    env = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=args.num_envs, protocol=args.protocol,
                       device=args.device)
    obs, info = env.reset(seed=args.seed)  # env i is seeded with seed + i
    act = random_policy(args.seed)
    ret = torch.zeros(args.num_envs, device=env.unwrapped.device)
    for _ in range(5):
        obs, r, terminated, truncated, info = env.step(act(obs, info))
        ret += r
    print(f"batched env: {args.num_envs} envs, mean return after 5 steps {float(ret.mean()):.3f}")

    # 3. evaluate(): the DORL / ROLeR episode metrics (R_cumu, R_avg, Length, CV, CV_turn, MCD) of a policy.
    res = evaluate(random_policy(args.seed), env, n_episodes=args.episodes, seed=args.seed)
    print("evaluate(random):", {k: round(res[k], 3) for k in ("R_cumu", "R_avg", "Length", "CV", "MCD")})

    # 4. The training env of model-based offline RL: same dynamics, reward = world model + R3S shaping.
    #    The world model is fitted on the training logs only (never the ground truth) on first use.
    ienv = gym.make_vec("InteractiveRec-Synthetic-v0", num_envs=args.num_envs, reward_preset="r3s",
                        world_model=args.world_model, device=args.device, progress=False)
    obs, info = ienv.reset(seed=args.seed)
    obs, r, *_ = ienv.step(act(obs, info))
    shaping = ienv.unwrapped.shaping
    print(f"interactive env: reward preset {shaping.reward_preset}, world model {shaping.world_model}, "
          f"lambda_u {shaping.lambda_u}, first-step mean shaped reward {float(r.mean()):.3f}")
    return res


if __name__ == "__main__":
    main()
