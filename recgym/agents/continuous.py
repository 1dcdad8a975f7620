"""The training harness shared by the continuous-action agents (DAC4Rec, SAC, TD3, DDPG and their ablations).

An agent of `recgym.agents.dac4rec` outputs a continuous action that EasyRL4Rec's rule maps to an item
(`recgym.envs.item_actions.map_actions_to_items`: clip to [-1, 1], dot product with L2-normalised item
embeddings learned from the training logs, best allowed item, ``remap_eps`` random item). This module owns
everything around the update rule:

- **Interactive training** (``train_mode="interactive"``, the default), EasyRL4Rec's off-policy loop "with a
  user model" (its ``run_DDPG.py`` / ``run_TD3.py`` over ``offpolicy_trainer``, and the protocol of DAC4Rec's
  tables): ``num_envs`` parallel ``InteractiveRec-<D>-v0`` envs (the evaluation env's protocol and dataset;
  reward preset ``mbpo``: the DeepFM ensemble's predicted reward minus its minimum, no penalty, exactly
  EasyRL4Rec's ``BaseSimulatedEnv``; the real quit rule) fill a `ReplayBuffer`; every ``step_per_collect`` env
  steps the agent takes ``step_per_collect * update_per_step`` gradient steps (EasyRL4Rec: 100 and 0.125) on
  minibatches drawn from the buffer, with ``n_step`` TD returns (EasyRL4Rec: 3), once ``learning_starts`` transitions are in it (until then actions are
  uniform in [-1, 1]^k, as SB3's off-policy warm-up). ``budget`` counts env steps (summed over the parallel
  envs).
- **Offline training** (``train_mode="offline"``): the training logs as trajectories (`recgym.agents.logged`),
  ``budget * update_per_step`` gradient steps, so a budget buys as many updates in both modes.
- **Evaluation** every ``eval_every`` env steps and at the end, in the ``GroundTruthRec`` env (``eval_env``, or
  the env given to ``learn`` when the agent derived its training env from it), ``eval_episodes`` episodes,
  logged as ``eval/<metric>`` and kept in ``agent.history``. Evaluation draws from its own generator, reseeded
  per evaluation, so it never shifts the training streams.

Observed rewards in the state are min-max normalised to [0, 1] with the bounds of the env that produced them
(its observation space: the world model's reward range in training, the rating scale in evaluation), as
EasyRL4Rec's state trackers do with their train / test bounds. The agent never reads the ground-truth matrix:
item embeddings, trackers and transitions come from the training logs or the training env.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from recgym.agents.base import AgentConfig, BudgetUnit
from recgym.agents.common import RecEnvSpec, check_choice, learn_envs, log_scalars, progress
from recgym.agents.logged import ORDERS, LoggedTransitions, build_logged_transitions
from recgym.envs.derive import TrainEnvSpec, base_env, env_family
from recgym.envs.interactive import REWARD_PRESETS
from recgym.envs.item_actions import EMBEDDING_SOURCES, log_item_embeddings

TRAIN_MODES = ("interactive", "offline")

__all__ = ["TRAIN_MODES", "ContinuousConfig", "ReplayBuffer", "RewardScaler", "continuous_env_spec",
           "learn_continuous"]


@dataclass
class ContinuousConfig(AgentConfig):
    """Fields of the harness (see the module docstring); defaults follow EasyRL4Rec's off-policy runners."""

    budget_unit: ClassVar[BudgetUnit] = "env_steps"

    eval_every: int = 10_000  # env steps between evaluations (0 = only at the end)
    train_mode: str = "interactive"  # one of TRAIN_MODES
    reward_preset: str = "mbpo"  # InteractiveRec reward preset of the training env (mbpo = EasyRL4Rec's)
    train_env_kwargs: dict[str, Any] = field(default_factory=dict)  # extra kwargs of the derived InteractiveRec
    num_envs: int = 100  # parallel training envs (EasyRL4Rec: training-num 100)
    buffer_size: int = 100_000
    step_per_collect: int = 100  # env steps between update rounds
    update_per_step: float = 0.125  # gradient steps per env step (EasyRL4Rec)
    learning_starts: int = 1_000  # transitions in the buffer before the first update
    n_step: int = 3  # n-step TD returns (EasyRL4Rec's n-step 3)
    explore_noise: float = 0.1  # std of the Gaussian noise added to deterministic actors' actions
    remap_eps: float = 0.001  # probability of a random item (EasyRL4Rec's Coat runs), training and evaluation
    action_emb: str = "deepfm"  # item embeddings of the action space, from the logs (item_actions.EMBEDDING_SOURCES)
    action_dim: int = 16  # size of the train_svd embeddings (deepfm: the user model's embed_dim)
    batch_size: int = 64  # EasyRL4Rec
    normalize_reward: bool = True  # TD rewards divided by the training env's reward span
    order: str = "time"  # offline mode: logged-trajectory order, one of logged.ORDERS
    episode_len: int = 0  # offline mode: 0 = the env's max_turn


def check_harness_config(name: str, cfg: ContinuousConfig) -> None:
    """ValueError naming the field for a harness setting out of range."""
    check_choice(name, "train_mode", cfg.train_mode, TRAIN_MODES)
    check_choice(name, "reward_preset", cfg.reward_preset, REWARD_PRESETS)
    check_choice(name, "action_emb", cfg.action_emb, EMBEDDING_SOURCES)
    check_choice(name, "order", cfg.order, ORDERS)
    for fname in ("num_envs", "buffer_size", "step_per_collect", "batch_size", "action_dim", "n_step"):
        if int(getattr(cfg, fname)) < 1:
            raise ValueError(f"{name}: {fname} must be >= 1, got {getattr(cfg, fname)}")
    if not cfg.update_per_step > 0:
        raise ValueError(f"{name}: update_per_step must be > 0, got {cfg.update_per_step}")
    if not 0.0 <= cfg.remap_eps <= 1.0 or cfg.explore_noise < 0 or cfg.learning_starts < 0:
        raise ValueError(f"{name}: need 0 <= remap_eps <= 1, explore_noise >= 0, learning_starts >= 0; got "
                         f"{cfg.remap_eps}, {cfg.explore_noise}, {cfg.learning_starts}")
    if not isinstance(cfg.train_env_kwargs, dict):
        raise ValueError(f"{name}: train_env_kwargs must be a dict of InteractiveRec kwargs, got {cfg.train_env_kwargs!r}")
    if "reward_preset" in cfg.train_env_kwargs:
        raise ValueError(f"{name}: set reward_preset as its own field, not in train_env_kwargs")


def obs_reward_bounds(env: Any) -> tuple[float, float]:
    """(low, high) of the ``rewards`` observation box of a rec env (its reward range, 0 included)."""
    space = getattr(env, "single_observation_space", None)
    box = space["rewards"] if isinstance(space, spaces.Dict) and "rewards" in space.spaces else None
    if box is None:
        return (0.0, 1.0)
    lo, hi = float(np.min(box.low)), float(np.max(box.high))
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) and hi > lo else (0.0, 1.0)


def continuous_env_spec(env: Any, agent: str) -> RecEnvSpec:
    """What the agent needs to know about a batched rec env; the reward range is the observation space's, so
    building an agent reads nothing of the ground truth (TypeError naming the space for a wrong env)."""
    act_space = getattr(env, "single_action_space", None)
    if not isinstance(act_space, spaces.Discrete):
        raise TypeError(f"{agent}: needs a Discrete (item id) single action space, got {act_space!r}; the "
                        "continuous action is mapped to an item inside the agent")
    obs_space = getattr(env, "single_observation_space", None)
    need = ("user", "step", "items", "rewards")
    if not isinstance(obs_space, spaces.Dict) or any(k not in obs_space.spaces for k in need):
        raise TypeError(f"{agent}: needs a Dict observation space with keys {list(need)}, got {obs_space!r}")
    inner = base_env(env)
    dataset = getattr(inner, "dataset", None)
    n_users = int(obs_space["user"].n)
    if dataset is not None:
        n_users = max(n_users, int(dataset.n_users))
    return RecEnvSpec(n_users=n_users, n_items=int(act_space.n), history_len=int(obs_space["items"].shape[0]),
                      max_turn=int(getattr(inner, "max_turn", 30)), num_envs=int(getattr(env, "num_envs", 1)),
                      device=torch.device(getattr(inner, "device", "cpu")), reward_range=obs_reward_bounds(env),
                      dataset=dataset)


def action_embeddings(dataset: Any, cfg: ContinuousConfig) -> torch.Tensor:
    """The action space's item embeddings [n_items, k], learned from the training logs (``cfg.action_emb``)."""
    return log_item_embeddings(dataset, cfg.action_emb, cfg.action_dim, seed=0, progress=cfg.progress)


class RewardScaler:
    """Maps the ``rewards`` of an observation to [0, 1] with an env's reward bounds (new dict, no copy of the rest)."""

    def __init__(self, bounds: tuple[float, float]) -> None:
        self.lo = float(bounds[0])
        span = float(bounds[1]) - self.lo
        self.scale = 1.0 / span if span > 0 else 1.0

    def __call__(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        valid = obs["items"] >= 0
        r = torch.where(valid, (obs["rewards"].float() - self.lo) * self.scale, torch.zeros((), device=valid.device))
        return {**obs, "rewards": r}


def n_step_returns(idx: torch.Tensor, rew: torch.Tensor, done: torch.Tensor, n: int, gamma: float,
                   next_row: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n-step returns from rows ``idx``: (``R = sum_j gamma^j r_j``, the row of the last summed step, ``gamma^m``
    with m the number of summed rewards). A trajectory stops at a done step and where ``next_row(idx, j) ->
    (row, exists)`` has no j-th successor yet; the TD target is ``R + gamma^m * (1 - done[last]) * Q(s_last')``.
    """
    ret = rew[idx].clone()
    disc = torch.full_like(ret, float(gamma))
    last = idx.clone()
    alive = ~done[idx]
    for j in range(1, int(n)):
        row, exists = next_row(idx, j)
        ok = alive & exists
        ret = torch.where(ok, ret + disc * rew[row], ret)
        disc = torch.where(ok, disc * gamma, disc)
        last = torch.where(ok, row, last)
        alive = ok & ~done[row]
    return ret, last, disc


class ReplayBuffer:
    """A ring buffer of transitions (obs dict, continuous action, reward, next obs dict, done) on one device.

    Every `add` appends one step of the B parallel envs (B rows; the capacity is rounded up to a multiple of B),
    so row ``p``'s next step in the same env is row ``p + B`` when that row was written by the next `add`:
    `sample` uses it for n-step returns.
    """

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.capacity = int(capacity)
        self.device = device
        self.size = 0
        self.pos = 0
        self.stride = 0
        self.ticks = 0
        self._data: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.size

    def _alloc(self, obs: dict[str, torch.Tensor], act: torch.Tensor) -> dict[str, Any]:
        self.stride = int(act.shape[0])
        self.capacity = -(-self.capacity // self.stride) * self.stride

        def like(x: torch.Tensor) -> torch.Tensor:
            return torch.zeros((self.capacity, *x.shape[1:]), dtype=x.dtype, device=self.device)

        return {"obs": {k: like(v) for k, v in obs.items()}, "next_obs": {k: like(v) for k, v in obs.items()},
                "act": like(act), "rew": torch.zeros(self.capacity, device=self.device),
                "done": torch.zeros(self.capacity, dtype=torch.bool, device=self.device),
                "tick": torch.full((self.capacity,), -1, dtype=torch.int64, device=self.device)}

    def add(self, obs: dict[str, torch.Tensor], act: torch.Tensor, rew: torch.Tensor,
            next_obs: dict[str, torch.Tensor], done: torch.Tensor) -> None:
        """Append one step of the B parallel envs (overwriting the oldest when full)."""
        if self._data is None:
            self._data = self._alloc(obs, act)
        b = int(act.shape[0])
        if b != self.stride:
            raise ValueError(f"ReplayBuffer.add: got {b} transitions, this buffer holds steps of {self.stride} envs")
        idx = self.pos + torch.arange(b, device=self.device)
        d = self._data
        for k in d["obs"]:
            d["obs"][k][idx] = obs[k].to(self.device)
            d["next_obs"][k][idx] = next_obs[k].to(self.device)
        d["act"][idx] = act.detach().to(self.device)
        d["rew"][idx] = rew.float().to(self.device)
        d["done"][idx] = done.to(self.device)
        d["tick"][idx] = self.ticks
        self.ticks += 1
        self.pos = (self.pos + b) % self.capacity
        self.size = min(self.size + b, self.capacity)

    def sample(self, n: int, gen: torch.Generator, n_step: int = 1, gamma: float = 0.9
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict[str, torch.Tensor],
                          torch.Tensor, torch.Tensor]:
        """``n`` transitions drawn uniformly with replacement, with ``n_step`` returns: (obs, action, return,
        next obs of the last step, its done, discount ``gamma^m``)."""
        if self._data is None or self.size == 0:
            raise RuntimeError("ReplayBuffer.sample() on an empty buffer")
        d = self._data
        idx = torch.randint(self.size, (int(n),), generator=gen, device=self.device)

        def next_row(rows: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
            nxt = (rows + j * self.stride) % self.capacity
            return nxt, d["tick"][nxt] == d["tick"][rows] + j

        ret, last, disc = n_step_returns(idx, d["rew"], d["done"], n_step, gamma, next_row)
        return ({k: v[idx] for k, v in d["obs"].items()}, d["act"][idx], ret,
                {k: v[last] for k, v in d["next_obs"].items()}, d["done"][last], disc)


class _Evaluator:
    """Evaluates the agent in the GroundTruthRec env with that env's reward bounds and a reseeded generator."""

    def __init__(self, agent: Any, env: Any) -> None:
        from recgym.agents.common import EvalRecorder

        self.agent, self.env = agent, env
        self.recorder = EvalRecorder(agent, agent.cfg.eval_episodes, agent.cfg.seed)
        self.scaler = RewardScaler(obs_reward_bounds(env)) if env is not None else None

    def __call__(self, step: int, logger: Any) -> None:
        agent = self.agent
        old = agent.act_scaler
        agent.act_scaler = self.scaler
        agent.act_gen.manual_seed(agent.cfg.seed + 104_729 + 7 * self.recorder.calls)
        try:
            self.recorder(self.env, step, logger)
        finally:
            agent.act_scaler = old


def _interactive_envs(agent: Any, env: Any, eval_env: Any) -> tuple[Any, Any]:
    cfg = agent.cfg
    spec = TrainEnvSpec("InteractiveRec", {"reward_preset": cfg.reward_preset})
    n_eval = min(cfg.eval_episodes, 100) or 1
    if env_family(env) is None and eval_env is None:
        return env, None  # a bare env (no spec id): train in it, no evaluation env to derive
    return learn_envs(agent.name, env, eval_env, spec, cfg.num_envs, n_eval,
                      **{"progress": cfg.progress, **cfg.train_env_kwargs})


def learn_continuous(agent: Any, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
    """``agent.learn``: interactive or offline training, then evaluation (see the module docstring)."""
    if agent.cfg.train_mode == "offline":
        _learn_offline(agent, env, budget, logger, eval_env)
    else:
        _learn_interactive(agent, env, budget, logger, eval_env)


def _learn_interactive(agent: Any, env: Any, budget: int, logger: Any, eval_env: Any) -> None:
    cfg = agent.cfg
    train_env, target = _interactive_envs(agent, env, eval_env)
    tspec = continuous_env_spec(train_env, agent.name)
    if tspec.n_items != agent.spec.n_items:
        raise ValueError(f"{agent.name}: the training env has {tspec.n_items} items, the agent was built for "
                         f"{agent.spec.n_items}")
    evaluate = _Evaluator(agent, target)
    scaler = RewardScaler(tspec.reward_range)
    span = tspec.reward_range[1] - tspec.reward_range[0]
    rew_scale = 1.0 / span if (cfg.normalize_reward and span > 0) else 1.0
    if agent.buffer is None:
        agent.buffer = ReplayBuffer(cfg.buffer_size, agent.device)
    buf = agent.buffer
    buf.ticks += 1  # the env is reset below: no n-step return may run on from the previous call's last steps
    inner = base_env(train_env)
    old_mode = inner.autoreset_mode
    inner.autoreset_mode = AutoresetMode.SAME_STEP
    b = tspec.num_envs
    per_env = max(1, math.ceil(cfg.step_per_collect / b))
    per_collect = per_env * b
    n_collects = max(1, math.ceil(int(budget) / per_collect))
    next_eval = agent.env_steps + cfg.eval_every if cfg.eval_every > 0 else None
    bar = progress(n_collects * per_collect, agent.name, cfg.progress)
    obs, info = train_env.reset(seed=cfg.seed + 7919 * agent.learn_calls)
    agent.learn_calls += 1
    ep_ret = torch.zeros(b, device=agent.device)
    ep_len = torch.zeros(b, device=agent.device)
    try:
        for c in range(n_collects):
            finished: list[tuple[torch.Tensor, torch.Tensor]] = []
            for _ in range(per_env):
                o = scaler({k: torch.as_tensor(v, device=agent.device) for k, v in obs.items()})
                if len(buf) < cfg.learning_starts:  # warm-up: uniform random actions, as SB3's off-policy agents
                    a = torch.rand((b, agent.action_dim), generator=agent.explore_gen, device=agent.device) * 2 - 1
                else:
                    a = agent.explore_actions(o)
                items = agent.items_for(a, info.get("action_mask"), agent.map_gen)
                obs, r, term, trunc, info = train_env.step(items)
                r = torch.as_tensor(r, device=agent.device, dtype=torch.float32)
                done = torch.as_tensor(term, device=agent.device) | torch.as_tensor(trunc, device=agent.device)
                nxt = obs
                if bool(done.any()):
                    fin = info["final_obs"]
                    nxt = {k: torch.where(done.view(-1, *([1] * (v.dim() - 1))), fin[k], v) for k, v in obs.items()}
                buf.add(o, a, r * rew_scale, scaler(nxt), done)
                ep_ret, ep_len = ep_ret + r, ep_len + 1
                if bool(done.any()):
                    finished.append((ep_ret[done], ep_len[done]))
                    ep_ret = torch.where(done, torch.zeros_like(ep_ret), ep_ret)
                    ep_len = torch.where(done, torch.zeros_like(ep_len), ep_len)
            agent.env_steps += per_collect
            bar.update(per_collect)
            logs: dict[str, Any] = {}
            if len(buf) >= max(cfg.learning_starts, 1):
                agent.update_credit += per_collect * cfg.update_per_step
                while agent.update_credit >= 1.0:
                    logs = agent.update(*buf.sample(cfg.batch_size, agent.gen, cfg.n_step, agent.cfg.gamma))
                    agent.update_credit -= 1.0
            if finished and (c % 10 == 0 or c == n_collects - 1):
                rets = torch.cat([f[0] for f in finished])
                logs = {**logs, "train/return": rets.mean(), "train/length": torch.cat([f[1] for f in finished]).mean()}
            if logs and (c % 10 == 0 or c == n_collects - 1):
                _log_training(logger, bar, logs, agent.env_steps)
            if next_eval is not None and agent.env_steps >= next_eval and c < n_collects - 1:
                next_eval = _evaluate_due(evaluate, logger, agent.env_steps, next_eval, cfg.eval_every)
    finally:
        inner.autoreset_mode = old_mode
        inner._has_reset = False
        bar.close()
    evaluate(agent.env_steps, logger)


def _log_training(logger: Any, bar: Any, logs: dict[str, Any], step: int) -> None:
    """Log the latest training scalars at ``step`` and show them on the progress bar."""
    vals = {k: float(v) for k, v in logs.items()}
    log_scalars(logger, vals, step)
    bar.set_postfix({k.split("/")[-1]: round(v, 3) for k, v in vals.items()})


def _evaluate_due(evaluate: Any, logger: Any, step: int, next_eval: int, every: int) -> int:
    """Run the evaluation that is due at ``step``; return the next evaluation step after it."""
    evaluate(step, logger)
    while next_eval <= step:
        next_eval += every
    return next_eval


def _learn_offline(agent: Any, env: Any, budget: int, logger: Any, eval_env: Any) -> None:
    from recgym.agents.common import evaluation_env_for

    cfg = agent.cfg
    data = agent.logged_transitions()
    scaler = RewardScaler(agent.log_reward_bounds)
    span = agent.log_reward_bounds[1] - agent.log_reward_bounds[0]
    rew_scale = 1.0 / span if (cfg.normalize_reward and span > 0) else 1.0
    evaluate = _Evaluator(agent, evaluation_env_for(env, eval_env, min(cfg.eval_episodes, 100) or 1))
    n_updates = max(1, round(int(budget) * cfg.update_per_step))
    per_update = int(budget) / n_updates  # env-step equivalents per gradient step (for the curve's x axis)
    start = agent.env_steps
    next_eval = start + cfg.eval_every if cfg.eval_every > 0 else None
    bar = progress(n_updates, agent.name, cfg.progress)
    n = len(data)
    rewards = data.reward * rew_scale

    def next_row(rows: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        nxt = rows + j  # a logged episode's steps are consecutive rows; n_step_returns stops at its done
        return nxt.clamp_max(n - 1), nxt < n

    for k in range(n_updates):
        idx = torch.randint(n, (min(cfg.batch_size, n),), generator=agent.gen, device=agent.device)
        ret, last, disc = n_step_returns(idx, rewards, data.done, cfg.n_step, cfg.gamma, next_row)
        obs = {k: v[idx] for k, v in data.obs.items()}
        nobs = {k: v[last] for k, v in data.next_obs.items()}
        logs = agent.update(scaler(obs), agent.item_emb[data.action[idx]], ret, scaler(nobs), data.done[last], disc)
        agent.env_steps = start + round((k + 1) * per_update)
        bar.update(1)
        if k % 50 == 0 or k == n_updates - 1:
            _log_training(logger, bar, logs, agent.env_steps)
        if next_eval is not None and agent.env_steps >= next_eval and k < n_updates - 1:
            next_eval = _evaluate_due(evaluate, logger, agent.env_steps, next_eval, cfg.eval_every)
    bar.close()
    evaluate(agent.env_steps, logger)


def logged_data(dataset: Any, spec: RecEnvSpec, cfg: ContinuousConfig, device: torch.device) -> LoggedTransitions:
    """The training logs as transitions for offline mode (trajectories of the env's episode length)."""
    return build_logged_transitions(dataset, spec.history_len, cfg.episode_len or spec.max_turn, cfg.order,
                                    cfg.seed, device)
