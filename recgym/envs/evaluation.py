"""`evaluate(policy, env, n_episodes)`: the DORL / ROLeR / EasyRL4Rec episode metrics of a policy, on device.

Episode assignment is fixed in advance so the estimate is unbiased (no preference for short episodes, which
finish first): with ``B = env.num_envs``, episode slot ``s`` is the ``(s // B)``-th episode of env ``s % B``.
The env is reset with ``derive_seed(seed, "evaluate")``, a 62-bit hash of ``seed`` (env ``i`` then follows
its own stream, that value + ``i``, see `recgym.envs.core`): the same ``seed`` gives the same users in the
same slots whatever the policy does, and two different seeds give independent users. (Resetting with ``seed``
itself would make seed ``k + 1``'s env ``i`` replay seed ``k``'s env ``i + 1``: "different seeds" would share
almost every user.) Every other evaluation stream (an agent's k-th evaluation, the runner's final one) is
`derive_seed` of the run's seed and a purpose, never the seed plus a constant.

Returned keys (floats): ``R_cumu``, ``R_avg`` (ratio of means: total reward / total steps), ``Length``,
``CV`` (distinct items over all episodes / catalogue), ``CV_turn`` (distinct / total recommendations), ``MCD``
(share of recommendations in the majority categories of the training interactions -- all logged ratings for
rating data, positives otherwise, as DORL -- `recgym.metrics`; for datasets with several category groups
(``dataset.meta["category_groups"]``, Coat) ``MCD_<group>`` per group as DORL reports them and ``MCD`` = their
mean), each with
a ``*_std`` over episodes where a per-episode value exists (``R_avg_std``: per-episode reward / length;
``CV_turn_std``, ``MCD_std``: per episode; ``CV_std``: per-episode distinct items / catalogue), plus
``n_episodes``, ``mode`` and the env's ``protocol``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from recgym import metrics
from recgym.envs.rec import RecEnv

__all__ = ["derive_seed", "evaluate", "majority_for"]

_SEED_BITS = 62  # env seeds are 62-bit (`recgym.envs.core`)


def derive_seed(seed: int, purpose: str, *index: int) -> int:
    """An env seed in ``[0, 2**62 - 2**32)`` for the stream (``seed``, ``purpose``, ``index``...), by sha256.

    Independent of every other (seed, purpose, index) combination, unlike ``seed + constant`` (env ``i`` of a
    batched env reset with ``s`` replays ``s + i``, so consecutive seeds overlap). The range leaves room for
    ``s + i`` over 2**32 envs without wrapping.
    """
    key = ":".join([str(int(seed)), str(purpose), *(str(int(i)) for i in index)])
    value = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return value % ((1 << _SEED_BITS) - (1 << 32))


def majority_for(env: RecEnv) -> np.ndarray:
    """Majority categories (DORL): all logged ratings for rating data, positives for click-like rewards."""
    ds = env.dataset
    thr = None if ds.reward_kind == "rating" else ds.positive_threshold
    return metrics.majority_categories(
        ds.train["item"].to_numpy(), ds.train["reward"].to_numpy(), ds.item_categories, thr
    )


def _policy_fn(policy: Any) -> Callable[[Any, dict[str, Any]], Any]:
    if hasattr(policy, "act") and callable(policy.act):
        return policy.act
    if callable(policy):
        return policy
    raise TypeError(f"policy must be callable(obs, info) or have .act(obs, info), got {type(policy).__name__}")


@torch.no_grad()
def evaluate(
    policy: Any,
    env: Any,
    n_episodes: int = 100,
    mode: str | None = None,
    seed: int = 0,
    majority: Any = None,
) -> dict[str, Any]:
    """Run ``n_episodes`` episodes of ``policy`` in the batched rec ``env`` and return the episode metrics.

    ``policy(obs, info) -> actions`` (int64 tensor [num_envs] on the env's device) or an object with
    ``act(obs, info)``. ``mode`` (FB / NX_0 / NX_10) temporarily switches the env's evaluation mode. The
    env is reset by this call and must be reset again before being stepped by the caller.
    """
    base = env.unwrapped if hasattr(env, "unwrapped") else env
    if not isinstance(base, RecEnv):
        raise TypeError(f"evaluate needs a batched recgym RecEnv, got {type(base).__name__}")
    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    act = _policy_fn(policy)
    n = int(n_episodes)
    old_mode, old_autoreset = base.mode, base.autoreset_mode
    if mode is not None and str(mode).upper() != old_mode:
        base.set_mode(mode)
    try:
        base.autoreset_mode = AutoresetMode.SAME_STEP
        out = _run(act, base, n, seed)
        used_mode, used_protocol = base.mode, dict(base.protocol)
    finally:
        if base.mode != old_mode:
            base.set_mode(old_mode)
        base.autoreset_mode = old_autoreset
        base._has_reset = False
        base._done = torch.zeros_like(base._done)
    items, rewards, lengths = out
    dev = base.device
    maj = majority_for(base) if majority is None else np.asarray(majority, dtype=np.int64)
    cats = base.item_categories
    res: dict[str, Any] = {}
    res["R_cumu"] = metrics.r_cumu(rewards, lengths)
    res["R_avg"] = metrics.r_avg(rewards, lengths)
    res["Length"] = metrics.length(lengths)
    res["CV"] = metrics.coverage(items, base.n_items, lengths)
    res["CV_turn"] = metrics.cv_turn(items, lengths)
    groups = base.dataset.meta.get("category_groups") if majority is None else None
    group_parts: list[tuple[torch.Tensor, Any]] = []
    if groups:
        # several feature groups (Coat): DORL reports MCD per group; "MCD" is their mean
        per = []
        for gname, cols in groups.items():
            cols_t = torch.as_tensor(list(cols), dtype=torch.int64, device=dev)
            sub = base.dataset.item_categories[:, list(cols)]
            thr = None if base.dataset.reward_kind == "rating" else base.dataset.positive_threshold
            shipped = (base.dataset.meta.get("majority_categories") or {}).get(gname)
            if shipped is not None:  # DORL's own majority sets (positions within the group's columns)
                maj_g = np.asarray(shipped, dtype=np.int64)
            else:
                maj_g = metrics.majority_categories(
                    base.dataset.train["item"].to_numpy(), base.dataset.train["reward"].to_numpy(), sub, thr
                )
            res[f"MCD_{gname}"] = metrics.mcd(items, cats[:, cols_t], maj_g, lengths)
            group_parts.append((cats[:, cols_t], maj_g))
            per.append(res[f"MCD_{gname}"])
        res["MCD"] = torch.stack([torch.as_tensor(x, dtype=torch.float64, device=dev) for x in per]).mean()
    else:
        res["MCD"] = metrics.mcd(items, cats, maj, lengths)
    # per-episode spreads
    steps = torch.arange(items.shape[1], device=dev)[None, :] < lengths[:, None]
    ret = (rewards.double() * steps).sum(1)
    ln = lengths.double()
    res["R_cumu_std"] = ret.std(unbiased=False)
    res["Length_std"] = ln.std(unbiased=False)
    res["R_avg_std"] = (ret / ln.clamp_min(1)).std(unbiased=False)
    onehot = torch.zeros((items.shape[0], base.n_items), dtype=torch.bool, device=dev)
    onehot.scatter_(1, items.clamp_min(0), steps)
    distinct = onehot.sum(1).double()
    res["CV_std"] = (distinct / base.n_items).std(unbiased=False)
    res["CV_turn_std"] = (distinct / ln.clamp_min(1)).std(unbiased=False)

    def per_episode_mcd(sub: torch.Tensor, maj_ids: Any) -> torch.Tensor:
        col = torch.zeros(sub.shape[1], dtype=torch.bool, device=dev)
        if len(maj_ids):
            col[torch.as_tensor(np.asarray(maj_ids), device=dev)] = True
        hit = (sub[items.clamp_min(0)] & col).any(-1) & steps
        return hit.sum(1).double() / ln.clamp_min(1)

    if group_parts:
        res["MCD_std"] = torch.stack([per_episode_mcd(c, m) for c, m in group_parts]).mean(0).std(unbiased=False)
    else:
        res["MCD_std"] = per_episode_mcd(cats, maj).std(unbiased=False)
    final = {k: float(v) for k, v in res.items()}
    final["n_episodes"] = n
    final["mode"] = used_mode
    final["protocol"] = used_protocol
    return final


def _run(act: Callable[[Any, dict[str, Any]], Any], env: RecEnv, n: int, seed: int):
    b, t_max, dev = env.num_envs, env.max_turn, env.device
    items = torch.full((n, t_max), -1, dtype=torch.int64, device=dev)
    rewards = torch.zeros((n, t_max), dtype=torch.float32, device=dev)
    lengths = torch.zeros(n, dtype=torch.int64, device=dev)
    cur_items = torch.full((b, t_max), -1, dtype=torch.int64, device=dev)
    cur_rew = torch.zeros((b, t_max), dtype=torch.float32, device=dev)
    ep_k = torch.zeros(b, dtype=torch.int64, device=dev)
    env_idx = torch.arange(b, device=dev)
    rows = torch.arange(b, device=dev)
    obs, info = env.reset(seed=derive_seed(seed, "evaluate"))
    n_rounds = -(-n // b)
    max_steps = n_rounds * t_max + 1
    for _ in range(max_steps):
        pos = obs["step"].clamp_max(t_max - 1)
        a = act(obs, info)
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(np.asarray(a), device=dev)
        obs, r, term, trunc, info = env.step(a)
        a = a.to(device=dev, dtype=torch.int64).reshape(b)
        cur_items[rows, pos] = a
        cur_rew[rows, pos] = r
        done = term | trunc
        slot = ep_k * b + env_idx
        store = done & (slot < n)
        if bool(store.any()):
            s = slot[store]
            items[s] = cur_items[store]
            rewards[s] = cur_rew[store]
            lengths[s] = pos[store] + 1
            cur_items[done] = -1
            cur_rew[done] = 0.0
        elif bool(done.any()):
            cur_items[done] = -1
            cur_rew[done] = 0.0
        ep_k = ep_k + done.to(torch.int64)
        if bool((ep_k * b + env_idx >= n).all()):
            break
    else:  # pragma: no cover - would mean an episode longer than max_turn
        raise RuntimeError("evaluation did not finish within n_rounds * max_turn steps")
    return items, rewards, lengths
