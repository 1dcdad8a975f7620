"""`check_vector_env(env)`: conformance checks for batched recgym envs (raises AssertionError on failure).

Checks, in order:
1. spaces: ``single_*`` and batched spaces exist and agree with ``num_envs``; every reset/step observation
   (converted to numpy) lies in ``observation_space``;
2. dtypes and device: observation tensors on ``env.device``; reward float32 [B], terminated / truncated bool [B];
3. bad input: stepping before reset and a wrong batch size raise;
4. determinism: the same seed and actions give identical trajectories (observations, rewards, flags);
5. NEXT_STEP autoreset: the step after an episode ends returns reward 0, both flags False and the new
   episode's first observation;
6. batched == single: env ``i`` of the batched env seeded ``s`` equals a ``num_envs=1`` sibling
   (`BatchedEnv.make_sibling`) seeded ``s + i`` fed the same actions, episode after episode (NEXT_STEP run);
7. SAME_STEP autoreset: replayed on the same actions, ``info["final_obs"]`` equals the NEXT_STEP run's last
   observation of the episode and the returned observation equals its next first observation;
8. DISABLED: nothing resets by itself, stepping an ended env raises, ``reset(options={"reset_mask": m})``
   resets exactly the envs in ``m``.

Actions are random (a seeded torch generator): uniform over allowed items (``info["action_mask"]``) for
Discrete actions, uniform in the (finite-clipped to [-1, 1]) box for Box actions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from recgym.envs.core import BatchedEnv, to_numpy_tree

__all__ = ["check_vector_env"]


def _tree_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_tree_equal(a[k], b[k]) for k in a)
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _row(x: Any, i: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x[i : i + 1]
    if isinstance(x, dict):
        return {k: _row(v, i) for k, v in x.items()}
    return x


def _check_device(x: Any, dev: torch.device, what: str) -> None:
    if isinstance(x, torch.Tensor):
        assert x.device == dev, f"{what} is on {x.device}, expected env.device {dev}"
    elif isinstance(x, dict):
        for k, v in x.items():
            _check_device(v, dev, f"{what}[{k!r}]")


def _sample_actions(env: BatchedEnv, info: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    sp = env.single_action_space
    b = env.num_envs
    if isinstance(sp, spaces.Discrete):
        mask = info.get("action_mask")
        u = torch.rand((b, int(sp.n)), generator=gen, device=env.device)
        if mask is not None:
            u = u.masked_fill(~mask, -1.0)
        return u.argmax(1) + int(sp.start)
    if isinstance(sp, spaces.Box):
        lo = torch.as_tensor(np.clip(sp.low, -1, 1), dtype=torch.float32, device=env.device)
        hi = torch.as_tensor(np.clip(sp.high, -1, 1), dtype=torch.float32, device=env.device)
        u = torch.rand((b, *sp.shape), generator=gen, device=env.device)
        return lo + (hi - lo) * u
    raise AssertionError(f"check_vector_env supports Discrete / Box single action spaces, got {sp}")


def _in_space(env: BatchedEnv, obs: Any, what: str) -> None:
    assert env.observation_space.contains(to_numpy_tree(obs)), f"{what} observation is not in observation_space"


def _rollout(env: BatchedEnv, seed: int, n_steps: int, actions: list[torch.Tensor] | None = None):
    """Run ``n_steps`` from reset(seed); returns (reset obs, info, list of (actions, step results))."""
    gen = torch.Generator(device=env.device).manual_seed(seed + 7)
    obs, info = env.reset(seed=seed)
    first = (obs, info)
    traj = []
    for t in range(n_steps):
        a = actions[t] if actions is not None else _sample_actions(env, info, gen)
        obs, r, term, trunc, info = env.step(a)
        traj.append((a, obs, r, term, trunc, info))
    return first, traj


def check_vector_env(env: Any, seed: int = 0, n_steps: int | None = None) -> None:
    """Run every check in the module docstring on the batched env ``env`` (its mode is restored after)."""
    base = env.unwrapped if hasattr(env, "unwrapped") else env
    assert isinstance(base, BatchedEnv), f"expected a recgym BatchedEnv, got {type(base).__name__}"
    b, dev = base.num_envs, base.device
    old_mode = base.autoreset_mode
    n_steps = int(n_steps if n_steps is not None else 2 * int(getattr(base, "max_turn", 15)) + 3)

    # 1-2. spaces, dtypes, device
    for name in ("single_observation_space", "single_action_space", "observation_space", "action_space"):
        assert getattr(base, name, None) is not None, f"env has no {name}"
    assert "autoreset_mode" in base.metadata and isinstance(base.metadata["autoreset_mode"], AutoresetMode)

    # 3. bad input
    fresh = base.make_sibling(b, autoreset_mode=AutoresetMode.NEXT_STEP)
    try:
        fresh.step(torch.zeros(b, dtype=torch.int64, device=dev))
    except RuntimeError as e:
        assert "reset" in str(e), f"stepping before reset raised an unclear error: {e}"
    else:
        raise AssertionError("stepping before reset did not raise")
    obs, info = fresh.reset(seed=seed)
    bad = _sample_actions(fresh, info, torch.Generator(device=dev).manual_seed(0))
    bad = torch.cat([bad, bad[:1]])
    try:
        fresh.step(bad)
    except ValueError as e:
        assert "shape" in str(e), f"wrong batch size raised an unclear error: {e}"
    else:
        raise AssertionError(f"actions of batch size {b + 1} for num_envs={b} did not raise")
    del fresh

    try:
        base.autoreset_mode = AutoresetMode.NEXT_STEP
        (obs0, info0), traj = _rollout(base, seed, n_steps)
        _check_device(obs0, dev, "reset obs")
        _in_space(base, obs0, "reset")
        for t, (_a, obs, r, term, trunc, _info) in enumerate(traj):
            _check_device(obs, dev, f"step {t} obs")
            for nm, x, dt in (("reward", r, torch.float32), ("terminated", term, torch.bool),
                              ("truncated", trunc, torch.bool)):
                assert isinstance(x, torch.Tensor), f"{nm} is {type(x).__name__}, expected a torch.Tensor"
                assert x.dtype == dt and tuple(x.shape) == (b,), f"{nm}: {x.dtype} {tuple(x.shape)}, expected {dt} ({b},)"
                assert x.device == dev, f"{nm} is on {x.device}, expected {dev}"
            _in_space(base, obs, f"step {t}")
        ended_any = any(bool((s[3] | s[4]).any()) for s in traj)

        # 4. determinism
        actions = [s[0] for s in traj]
        (obs0b, _), traj_b = _rollout(base, seed, n_steps, actions)
        assert _tree_equal(obs0, obs0b), "reset(seed) twice gave different observations"
        for t, (s1, s2) in enumerate(zip(traj, traj_b, strict=True)):
            for j, nm in ((1, "obs"), (2, "reward"), (3, "terminated"), (4, "truncated")):
                assert _tree_equal(s1[j], s2[j]), f"same seed and actions, different {nm} at step {t}"

        # 5. NEXT_STEP semantics
        for t in range(1, len(traj)):
            prev_done = traj[t - 1][3] | traj[t - 1][4]
            if bool(prev_done.any()):
                r, term, trunc = traj[t][2], traj[t][3], traj[t][4]
                assert bool((r[prev_done] == 0).all()), f"NEXT_STEP: reward != 0 on the autoreset step {t}"
                assert not bool((term | trunc)[prev_done].any()), f"NEXT_STEP: flags set on the autoreset step {t}"

        # 6. batched == single (sibling num_envs=1 seeded seed + i, DISABLED, reset when done)
        single = base.make_sibling(1, autoreset_mode=AutoresetMode.DISABLED)
        for i in range(b):
            obs_s, _ = single.reset(seed=seed + i)
            assert _tree_equal(_row(obs0, i), obs_s), f"env {i}: reset obs differs from a single env seeded {seed + i}"
            pending = False
            for t, (a, obs, r, term, trunc, _info) in enumerate(traj):
                if pending:
                    obs_s, _ = single.reset()
                    pending = False
                else:
                    obs_s, r_s, te_s, tr_s, _ = single.step(a[i : i + 1])
                    assert _tree_equal(r[i : i + 1], r_s), f"env {i} step {t}: reward {r[i]} != single {r_s[0]}"
                    assert bool(term[i] == te_s[0]) and bool(trunc[i] == tr_s[0]), f"env {i} step {t}: flags differ"
                    pending = bool(te_s[0] | tr_s[0])
                assert _tree_equal(_row(obs, i), obs_s), f"env {i} step {t}: observation differs from the single env"
        del single

        # 7. SAME_STEP on the same actions: skip the NEXT_STEP autoreset steps
        if ended_any:
            base.autoreset_mode = AutoresetMode.SAME_STEP
            obs, info = base.reset(seed=seed)
            # per env, the NEXT_STEP run's sequence of real steps
            pend = torch.zeros(b, dtype=torch.bool, device=dev)
            queues: list[list[int]] = [[] for _ in range(b)]
            for t, s in enumerate(traj):
                for i in range(b):
                    if not bool(pend[i]):
                        queues[i].append(t)
                pend = s[3] | s[4]
            n_same = min(len(q) for q in queues)
            for k in range(n_same):
                idx = [queues[i][k] for i in range(b)]
                a = torch.stack([traj[t][0][i] for i, t in enumerate(idx)])
                obs, r, term, trunc, info = base.step(a)
                for i, t in enumerate(idx):
                    assert bool(r[i] == traj[t][2][i]), f"SAME_STEP env {i}: reward differs from NEXT_STEP run"
                    assert bool(term[i] == traj[t][3][i]) and bool(trunc[i] == traj[t][4][i])
                    if bool(term[i] | trunc[i]):
                        assert bool(info["_final_obs"][i]), "SAME_STEP: _final_obs not set for an ended env"
                        assert _tree_equal(_row(info["final_obs"], i), _row(traj[t][1], i)), (
                            f"SAME_STEP env {i}: final_obs differs from the episode's last observation"
                        )
                        if t + 1 < len(traj):
                            assert _tree_equal(_row(obs, i), _row(traj[t + 1][1], i)), (
                                f"SAME_STEP env {i}: returned obs is not the next episode's first observation"
                            )

        # 8. DISABLED
        base.autoreset_mode = AutoresetMode.DISABLED
        gen = torch.Generator(device=dev).manual_seed(seed + 11)
        obs, info = base.reset(seed=seed)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        for _ in range(n_steps):
            a = _sample_actions(base, info, gen)
            obs, r, term, trunc, info = base.step(a)
            done = term | trunc
            if bool(done.any()):
                break
        if bool(done.any()):
            try:
                base.step(_sample_actions(base, info, gen))
            except RuntimeError:
                pass
            else:
                raise AssertionError("DISABLED: stepping an ended env did not raise")
            before = obs
            obs2, info = base.reset(options={"reset_mask": done})
            keep = ~done
            for k, v in (before.items() if isinstance(before, dict) else [("obs", before)]):
                v2 = obs2[k] if isinstance(obs2, dict) else obs2
                assert torch.equal(v[keep], v2[keep]), f"DISABLED: reset_mask changed obs[{k!r}] of envs not in the mask"
            assert not bool(base.done.any()), "DISABLED: envs still marked done after reset(reset_mask)"
            base.step(_sample_actions(base, info, gen))
    finally:
        base.autoreset_mode = old_mode
        base._has_reset = False
        base._done = torch.zeros_like(base._done)
