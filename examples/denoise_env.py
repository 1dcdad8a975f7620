"""The reverse chain of a pre-trained DiffRec as an env: ``DiffusionDenoise-*-v0`` in its three action modes.

One episode = one user's reverse chain x_T -> x_0 (T steps); the reward (RACS by default) comes at the last
step only. With the frozen model acting the three modes give the same x_0 (DiffRec's own inference), so the
same seed gives the same reward in each; a random guidance action shows how far a bad policy can fall.

Run: python examples/denoise_env.py                     (synthetic data: pre-trains a tiny DiffRec on first use,
                                                          cached under $RECGYM_CACHE_DIR or ~/.cache/recgym)
     python examples/denoise_env.py --dataset ML1M --num-envs 256 --device cuda   (needs the ML-1M files)
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch

import recgym  # noqa: F401  (registers the env ids)


def frozen_action(env, obs):
    """The action that reproduces the pre-trained model: x_{t-1} = mu(x_t, t) itself, or a zero offset."""
    base = env.unwrapped
    if base.action_mode == "latent":
        return base.posterior_mean(obs["x_t"], obs["t"])  # action = the next latent x_{t-1}
    return torch.zeros(base.action_space.shape, device=base.device)  # offset from mu (residual / guidance)


def run_episode(env, policy, seed: int) -> dict[str, float]:
    """Reset with ``seed`` and step until every env's chain ends; return the mean terminal metrics."""
    obs, info = env.reset(seed=seed)
    for _ in range(env.unwrapped.T):
        obs, reward, terminated, truncated, info = env.step(policy(env, obs))
    assert bool(terminated.all()), "every chain ends after exactly T steps"
    m = info["episode_metrics"]  # float32 [B] per env: reward, recall, ndcg, n_k, n_simk; topk [B, K]
    return {k: float(m[k].mean()) for k in ("reward", "recall", "ndcg")}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="Synthetic", help="env-id tag: Synthetic, ML1M, ML1MNoisy, Coat, Yahoo")
    p.add_argument("--num-envs", type=int, default=32, help="users per batch")
    p.add_argument("--reward", default="racs", help="racs, ra, racs_norm, ra_norm or ndcg")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    env_id = f"DiffusionDenoise-{args.dataset}-v0"

    results, model = {}, None
    for mode in ("latent", "residual", "guidance"):
        # model=... shares the frozen DiffRec between envs (it is also cached on disk after the first fit)
        env = gym.make_vec(env_id, num_envs=args.num_envs, action_mode=mode, reward=args.reward,
                           device=args.device, model=model, progress=False)
        model = env.unwrapped.model
        print(f"{mode:9s} action space {env.unwrapped.single_action_space}")
        results[mode] = run_episode(env, frozen_action, args.seed)
        print(f"{mode:9s} frozen model: " + "  ".join(f"{k}={v:.4f}" for k, v in results[mode].items()))

    gen = torch.Generator().manual_seed(args.seed)

    def random_guidance(env, obs):
        return (torch.rand(env.unwrapped.action_space.shape, generator=gen) * 2 - 1).to(env.unwrapped.device)

    results["guidance_random"] = run_episode(env, random_guidance, args.seed)
    print("guidance  random actions: " + "  ".join(f"{k}={v:.4f}" for k, v in results["guidance_random"].items()))
    return results


if __name__ == "__main__":
    main()
