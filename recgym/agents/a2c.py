"""Batched A2C over item ids: DORL's policy learner, and the methods that are A2C plus a training env.

DORL ("Alleviating Matthew Effect of Offline Reinforcement Learning in Interactive Recommendation",
arXiv:2307.04571) trains tianshou's A2C in its world-model env; so do MOPO / MBPO in DORL's code, ROLeR
(arXiv:2407.13163) and R3S ("Reward Balancing Revisited: Enhancing Offline Reinforcement Learning for
Recommender Systems", arXiv:2506.22112). They differ only in the training env's reward, so each is this agent
registered with a training-env spec (`recgym.envs.derive.TrainEnvSpec`):

- ``a2c``: trains in the env given to ``learn``;
- ``gt``: ``GroundTruthRec`` (the ground truth itself, the upper reference);
- ``r3s``, ``dorl``, ``mopo``, ``mbpo``, ``roler``: ``InteractiveRec`` with ``reward_preset=<name>`` (the world
  model + reward shaping of that method; ``train_env_kwargs`` adds InteractiveRec kwargs, e.g.
  ``{"lambda_ent": 0.5}``).

``learn(env, budget, logger, eval_env)`` trains in ``env`` and evaluates in ``eval_env`` every ``eval_every``
env steps (``eval_episodes`` episodes, greedy actions when ``deterministic_eval``), logged as ``eval/<metric>``
and kept in ``agent.history``. For direct use, ``gt`` and the world-model methods may be given the evaluation
env (``GroundTruthRec-<D>-v0``) alone: they then derive their training env from it (same dataset object,
protocol and device; ``num_envs`` parallel envs) and evaluate in it (`recgym.agents.common.learn_envs`).
Plain ``a2c`` without ``eval_env`` evaluates in the matching ``GroundTruthRec`` env.

Algorithm: a state tracker (`recgym.agents.trackers`; DORL's average tracker by default) feeds an actor MLP
(hidden [64, 64]) giving a categorical distribution over items, with disallowed items (``info["action_mask"]``)
masked out, and a critic MLP. Each update collects ``n_steps`` steps from the parallel envs, computes
GAE(``gae_lambda``) advantages with gamma 0.9 once, then takes Adam steps on minibatches of ``minibatch_size``
transitions (0: the whole rollout; ``update_epochs`` passes, as tianshou's A2C) on ``policy loss + vf_coef * value
loss - ent_coef * entropy``. ``done = terminated | truncated`` is not bootstrapped: with the step in the state
(``tracker.use_step``), the 30-turn limit is part of the MDP. ``gae_lambda`` defaults to 0 (TD(0) advantages):
per-step rewards with a high-entropy policy over hundreds of items make Monte-Carlo advantages too noisy.
Rewards are divided by the env's reward span (``normalize_reward``) so the value scale does not depend on the
data set. The rollout stores *copies* of the observations and of ``info["action_mask"]``: a mask updated in place
by the env would show the end-of-rollout mask, in which the step's own action is masked (log-prob -inf, no
gradient on it).

The class defaults are DORL's update (`DORL_UPDATE`: 30-step rollouts of the 100 envs, one pass of
64-transition minibatches, lr 1e-3). Implementation choices that do not change what is learned: the rollout
acts with the actor alone and draws actions by inverse-CDF sampling (`recgym.agents.common.sample_categorical`);
the values V(s_0..s_T) come from one pass at the start of the update (with full-batch steps, the first training
pass itself); the policy loss terms have a hand-written backward (`PolicyTerms`); GAE is computed without a loop
over steps (`gae_advantages`); Adam is the fused kernel; the tracker caches each user's features within a
rollout (``tracker.frozen()``). Training scalars are logged every ``log_every`` env steps, averaged.

``gt`` and the world-model methods default to settings for the per-user ranking problem they face
(`RANKING_DEFAULTS`; a caller's config still overrides them): a user embedding (``tracker.user_dim=32``: the
user id is in the observation, and the optimal NX_0 policy -- the user's top items -- is a contextual-bandit-like
ranking), ``head="tied"`` (logits = <query, item embedding> + bias: a factorisation the per-user signal can fill
in), ``ent_coef=1.0`` (with DORL's 0.01 the policy turns deterministic early and stays at the popularity
level), and `FAST_UPDATE` (5-step rollouts, two full-batch Adam steps per rollout, lr 3e-3: a quarter of the Adam
steps of DORL's update at equal env steps, with the same or better final R_cumu; pass ``**DORL_UPDATE`` for
DORL's). The measurements behind these choices are in docs/RESULTS.md ("A2C speed" and "History of design
measurements").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode
from torch import nn

from recgym.agents.base import AgentConfig, register_agent
from recgym.agents.common import (
    MASK_PENALTY,
    EvalRecorder,
    action_mask,
    check_choice,
    generator,
    learn_envs,
    load_checkpoint,
    log_scalars,
    mask_penalty,
    masked_logits,
    progress,
    rec_env_spec,
    sample_categorical,
    save_checkpoint,
    seeded,
    to_device_obs,
)
from recgym.agents.trackers import TrackerConfig, make_tracker
from recgym.envs.derive import TrainEnvSpec, base_env

WORLD_MODEL_METHODS = ("r3s", "dorl", "mopo", "mbpo", "roler")  # A2C in InteractiveRec(reward_preset=<name>)
GT_TRAIN_ENV = TrainEnvSpec("GroundTruthRec")
# Defaults of gt and the world-model methods (see the module docstring); the same for all: they face the same
# per-user ranking problem, only with a learned reward.
LOSS_TAGS = ("loss/total", "loss/policy", "loss/entropy", "loss/value")
# DORL's A2C update (tianshou's A2C as DORL runs it; the `A2CConfig` defaults): a 30-step rollout of the parallel
# envs (100 episodes per collect), then one pass of Adam steps (lr 1e-3) over 64-transition minibatches.
DORL_UPDATE: dict[str, Any] = {"n_steps": 30, "minibatch_size": 64, "update_epochs": 1, "lr": 1e-3}
# The presets' update: a 5-step rollout, then two full-batch Adam steps (lr 3e-3) on it. A quarter of the Adam
# steps at equal env steps, each on more and fresher data; measured against DORL_UPDATE in docs/RESULTS.md ("A2C speed").
FAST_UPDATE: dict[str, Any] = {"n_steps": 5, "minibatch_size": 0, "update_epochs": 2, "lr": 3e-3}
RANKING_DEFAULTS: dict[str, Any] = {"tracker": {"user_dim": 32}, "head": "tied", "ent_coef": 1.0, **FAST_UPDATE}


@dataclass
class A2CConfig(AgentConfig):
    """A2C hyper-parameters (defaults: DORL's A2C learner, `DORL_UPDATE`; the presets use `FAST_UPDATE`)."""

    eval_every: int = 30_000  # env steps between evaluations (0 = only at the end)
    num_envs: int = 100  # parallel envs of a training env the agent derives (gt, world-model methods; DORL: 100)
    train_env_kwargs: dict[str, Any] = field(default_factory=dict)  # extra kwargs of a derived InteractiveRec env
    n_steps: int = 30  # steps per env per update
    gamma: float = 0.9
    gae_lambda: float = 0.0  # 0 = TD(0) advantages r + gamma V(s') - V(s); see the module docstring
    lr: float = 1e-3
    hidden: tuple[int, ...] = (64, 64)
    head: str = "mlp"  # "mlp" (DORL) or "tied" (logits = <query, item embedding>; see ActorCritic)
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    minibatch_size: int = 64  # gradient steps per rollout = transitions / minibatch_size (0 = one full batch)
    update_epochs: int = 1  # passes over each rollout (tianshou's repeat_per_collect)
    normalize_reward: bool = True
    log_every: int = 3_000  # env steps between training-scalar logs (averaged over the updates in between)
    # the user's logged profile in the state by default (see recgym.agents.trackers)
    tracker: TrackerConfig = field(default_factory=lambda: TrackerConfig(profile=True))
    deterministic_eval: bool = True


def mlp(inp: int, hidden: tuple[int, ...], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, h), nn.ReLU()]
        inp = h
    layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Tracker -> (item logits, state value).

    ``head="mlp"`` (DORL): the actor MLP ends in a linear layer over the items. ``head="tied"``: the actor MLP
    outputs a query ``q`` of the item-embedding size and ``logit_i = <q, e_i> + b_i`` with ``e`` the tracker's
    own item embeddings (input and output embeddings tied, as in SASRec), so what is learned about an item
    as an input (history, logged profile) transfers to it as an output.
    """

    def __init__(self, tracker: nn.Module, hidden: tuple[int, ...], n_items: int, head: str = "mlp") -> None:
        super().__init__()
        self.tracker = tracker
        self.head = head
        if head == "tied":
            self.actor = mlp(tracker.out_dim, hidden, tracker.item_emb.embedding_dim)
            self.item_bias = nn.Parameter(torch.zeros(n_items))
        else:
            self.actor = mlp(tracker.out_dim, hidden, n_items)
        self.critic = mlp(tracker.out_dim, hidden, 1)

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.tracker(obs)
        return self.logits(s), _run_mlp(self.critic, s).squeeze(-1)

    def logits(self, s: torch.Tensor) -> torch.Tensor:
        """Item logits [B, n_items] of tracker states ``s``."""
        out = _run_mlp(self.actor, s)
        if self.head == "tied":
            out = torch.addmm(self.item_bias, out, self.tracker.item_emb.weight[:-1].T)
        return out

    def policy(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The actor alone: item logits [B, n_items]."""
        return self.logits(self.tracker(obs))

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The critic alone: V(s) [B]."""
        return _run_mlp(self.critic, self.tracker(obs)).squeeze(-1)


def _run_mlp(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` for an `mlp` (Linear / ReLU layers) without the per-module call overhead."""
    for layer in net:
        x = F.linear(x, layer.weight, layer.bias) if isinstance(layer, nn.Linear) else torch.relu_(x)
    return x


class PolicyTerms(torch.autograd.Function):
    """``(log pi(a_i | s_i), H(pi(. | s_i)))`` [N] of the softmax over each row's allowed items, with a hand-written
    backward: a third of the passes over the [N, n_items] logits that autograd's chain of masked fill,
    log-softmax, gather and entropy takes (the update's largest cost).

    ``blocked`` [N, n_items] marks the disallowed items (every row must allow one). Gradients, with ``p`` the
    policy and ``log p`` taken as 0 on blocked items: ``d log pi(a) / dl_j = [j = a] - p_j`` and
    ``dH / dl_j = -p_j (log p_j + H)``. A blocked action gets log-prob -inf (a loud loss), as with autograd.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, blocked: torch.Tensor, actions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        # The mask enters as arithmetic on a 0/1 float copy (`mask_penalty`), not torch.where: on the CPU a
        # where over [N, n_items] costs ~30x an add (measured in docs/RESULTS.md, "A2C speed"). A blocked item's
        # logit drops by MASK_PENALTY, so its probability is exactly 0 and its log-prob finite (no 0 * -inf).
        blocked_f = mask_penalty(blocked, logits.dtype)
        masked = logits.add(blocked_f, alpha=-MASK_PENALTY)
        # softmax and log_softmax kernels, not exp / logsumexp: torch.exp takes a ~10x slower path when its
        # results are subnormal (logits 87-103 below the row's maximum), which trained policies produce
        p = torch.softmax(masked, -1)
        logp = torch.log_softmax(masked, -1)
        a = actions.unsqueeze(1)
        logp_a = logp.gather(1, a).squeeze(1).masked_fill_(blocked.gather(1, a).squeeze(1), float("-inf"))
        logp = logp.mul_(1.0 - blocked_f)  # log p taken as 0 on blocked items
        ent = -(p * logp).sum(-1)
        ctx.save_for_backward(p, logp, ent, actions)
        return logp_a, ent

    @staticmethod
    def backward(ctx: Any, g_a: torch.Tensor | None, g_h: torch.Tensor | None) -> tuple[Any, None, None]:
        p, logp, ent, actions = ctx.saved_tensors
        g_a = torch.zeros_like(ent) if g_a is None else g_a
        # -p * (g_a + g_h (log p + H)) row-wise, built from the [N, 1] columns without expanding a full-size
        # operand first (an expanded addcmul input takes a ~7x slower broadcast path on the CPU)
        col_a = g_a.unsqueeze(1)
        if g_h is None:
            grad = p.mul(col_a)
        else:
            grad = torch.addcmul(col_a, logp + ent.unsqueeze(1), g_h.unsqueeze(1)).mul_(p)
        grad = grad.neg_()
        grad.scatter_add_(1, actions.unsqueeze(1), col_a)
        return grad, None, None


class Rollout:
    """One rollout of T steps of B envs. The observations and masks the env hands out are copied into
    preallocated buffers (an env may update those tensors in place): [T + 1, B, ...] observations (slot T: the
    observation after the last step, for the bootstrap value) and [T, B, n_items] masks. The agent's own per-step
    tensors (actions, scaled rewards, ``done`` / ``valid`` flags, running episode returns) are fresh each step,
    kept by reference and stacked once by `finish`."""

    FIELDS = ("act", "rew", "done", "valid", "ep_ret")

    def __init__(self, T: int, obs: dict[str, torch.Tensor], n_items: int, device: torch.device) -> None:
        self.T = T
        self.obs_keys = tuple(obs)
        self.obs = {k: torch.empty((T + 1, *v.shape), dtype=v.dtype, device=device) for k, v in obs.items()}
        B = int(next(iter(obs.values())).shape[0])
        self.mask = torch.ones(T, B, n_items, dtype=torch.bool, device=device)
        self.steps: list[tuple[torch.Tensor, ...]] = []

    def store_obs(self, t: int, obs: dict[str, torch.Tensor], info: dict[str, Any] | None = None) -> torch.Tensor:
        """Copy step ``t``'s observation and (for t < T) action mask (all True when the env gives none); return
        the stored mask."""
        for k in self.obs_keys:
            self.obs[k][t].copy_(obs[k])
        if t == self.T:
            return self.mask[0]
        mask = None if info is None else info.get("action_mask")
        if mask is None:
            self.mask[t].fill_(True)
        else:
            self.mask[t].copy_(torch.as_tensor(mask))
        return self.mask[t]

    def store_step(self, *tensors: torch.Tensor) -> None:
        """Step ``len(steps)``'s (action, scaled reward, done, valid, episode return so far) [B] each."""
        self.steps.append(tensors)

    def finish(self, last_obs: dict[str, torch.Tensor]) -> None:
        """Store the observation after the last step and stack the steps into [T, B] tensors ``act``, ``rew``,
        ``done``, ``valid``, ``ep_ret``."""
        self.store_obs(self.T, last_obs)
        for name, col in zip(self.FIELDS, zip(*self.steps, strict=True), strict=True):
            setattr(self, name, torch.stack(col))
        self.steps = []

    def flat_obs(self) -> dict[str, torch.Tensor]:
        """The T + 1 observations of every env as [(T + 1) * B, ...] views (the last B rows: the bootstrap ones)."""
        return {k: x.flatten(0, 1) for k, x in self.obs.items()}

    def finished_returns(self) -> torch.Tensor:
        """The returns of the episodes that ended in this rollout."""
        return self.ep_ret[self.done]


def gae_advantages(rew: torch.Tensor, value: torch.Tensor, last_value: torch.Tensor, done: torch.Tensor,
                   valid: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """GAE(lambda) advantages [T, B] of a rollout, without a Python loop over its steps.

    ``A_t = valid_t * (delta_t + gamma * lam * (1 - done_t) * A_{t+1})`` with ``delta_t = r_t + gamma * (1 -
    done_t) * V(s_{t+1}) - V(s_t)``, ``V(s_T) = last_value``; an invalid step (a NEXT_STEP autoreset) carries
    nothing across it. The recursion is a lower-triangular linear map, ``A = M delta'``, built with a cumulative
    product: O(T^2 B) work, negligible for rollouts of tens of steps.
    """
    T = rew.shape[0]
    nonterminal = (~done).to(rew.dtype)
    v_next = torch.cat([value[1:] * valid[1:], last_value.unsqueeze(0)])
    vf = valid.to(rew.dtype)
    delta = (rew + gamma * v_next * nonterminal - value) * vf
    if lam == 0:
        return delta
    coef = gamma * lam * nonterminal * vf  # A_t = delta_t + coef_t * A_{t+1}
    before = torch.ones(T, T, dtype=torch.bool, device=rew.device).tril(-1)[..., None]  # [t, k, 1]: k < t
    # P[t, k] = prod_{t <= j <= k} coef_j; M[t, k] = prod_{t <= j < k} coef_j for k >= t, else 0
    prod = coef.unsqueeze(0).expand(T, T, -1).masked_fill(before, 1.0).cumprod(1)
    M = torch.cat([torch.ones_like(prod[:, :1]), prod[:, :-1]], 1).masked_fill(before, 0.0)
    return torch.einsum("tkb,kb->tb", M, delta)


class A2CAgent:
    """Batched A2C over a categorical item policy (see the module docstring)."""

    name = "a2c"

    def __init__(self, env: Any, config: A2CConfig, name: str = "a2c", train_env: TrainEnvSpec | None = None
                 ) -> None:
        self.name = name
        self.cfg = cfg = config
        self.train_env = train_env  # where it trains (None: the env given to learn); see the module docstring
        check_choice(name, "head", cfg.head, ("mlp", "tied"))
        if not isinstance(cfg.train_env_kwargs, dict):
            raise ValueError(f"{name}: train_env_kwargs must be a dict of InteractiveRec kwargs, got "
                             f"{cfg.train_env_kwargs!r}")
        if cfg.train_env_kwargs and (train_env is None or train_env.family != "InteractiveRec"):
            raise ValueError(f"{name}: train_env_kwargs applies to the agents that train in InteractiveRec "
                             f"({', '.join(WORLD_MODEL_METHODS)}), not to {name!r}")
        fixed = sorted(set(cfg.train_env_kwargs) & set(train_env.kwargs if train_env is not None else ()))
        if fixed:
            raise ValueError(f"{name}: train_env_kwargs cannot change {fixed}: {train_env.kwargs} defines this agent")
        for fname in ("num_envs", "n_steps"):
            if int(getattr(cfg, fname)) < 1:
                raise ValueError(f"{name}: {fname} must be >= 1, got {getattr(cfg, fname)}")
        self.spec = spec = rec_env_spec(env, name)
        self.device = spec.device
        with seeded(cfg.seed):
            tracker = make_tracker(cfg.tracker, spec.n_users, spec.n_items, spec.history_len, spec.reward_range,
                                   spec.max_turn, spec.dataset)
            self.net = ActorCritic(tracker, tuple(cfg.hidden), spec.n_items, cfg.head).to(self.device)
        # fused: one kernel for the whole parameter list instead of a dozen small ops per parameter
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr,
                                    fused=self.device.type in ("cpu", "cuda"))
        self.gen = generator(cfg.seed, self.device)
        self.training = True
        self.history: list[dict[str, float]] = []
        self.env_steps = 0
        self.learn_calls = 0
        span = spec.reward_range[1] - spec.reward_range[0]
        self.reward_scale = 1.0 / span if (cfg.normalize_reward and span > 0) else 1.0

    # -- acting ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        """Item ids [B]: sampled while training, argmax when evaluating with ``deterministic_eval``."""
        logits = self.policy_logits(obs, info)
        if not self.training and self.cfg.deterministic_eval:
            return logits.argmax(-1)
        return sample_categorical(logits, self.gen)

    @torch.no_grad()
    def policy_logits(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        """The policy's item logits [B, n_items], disallowed items at -inf: what ``eval_actions="sample"``
        draws from (DORL's A2C samples at test time; `recgym.agents.eval_actions`)."""
        logits = self.net.policy(to_device_obs(obs, self.device))
        return masked_logits(logits, action_mask(info, logits.shape[0], logits.shape[1], self.device))

    # -- learning --------------------------------------------------------------------------------------
    def _envs(self, env: Any, eval_env: Any) -> tuple[Any, Any]:
        """(training env, evaluation env) of ``learn(env, ..., eval_env)``; see the module docstring."""
        cfg = self.cfg
        interactive = self.train_env is not None and self.train_env.family == "InteractiveRec"
        spec = self.train_env
        if interactive and cfg.train_env_kwargs:  # part of where it trains: a given training env must match it
            spec = TrainEnvSpec(spec.family, {**spec.kwargs, **cfg.train_env_kwargs})
        overrides = {"progress": cfg.progress} if interactive else {}
        return learn_envs(self.name, env, eval_env, spec, cfg.num_envs, min(cfg.eval_episodes, 100) or 1,
                          **overrides)

    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        """Train in ``env`` for ``budget`` env steps (transitions summed over the parallel envs); evaluate in
        ``eval_env`` (see the module docstring for the envs ``gt`` and the world-model methods derive)."""
        cfg = self.cfg
        train_env, evaluation_env = self._envs(env, eval_env)
        tspec = rec_env_spec(train_env, self.name)
        if tspec.n_items != self.spec.n_items:
            raise ValueError(f"{self.name}: training env has {tspec.n_items} items, agent was built for "
                             f"{self.spec.n_items}")
        evaluate = EvalRecorder(self, cfg.eval_episodes, cfg.seed)
        B, T = tspec.num_envs, cfg.n_steps
        per_update = B * T
        n_updates = max(1, -(-int(budget) // per_update))
        autoreset = base_env(train_env).metadata.get("autoreset_mode")
        next_step_reset = autoreset == AutoresetMode.NEXT_STEP
        own_reset = autoreset == AutoresetMode.DISABLED
        # A new seed stream per learn() call: repeated calls do not replay the same users.
        obs, info = train_env.reset(seed=cfg.seed + 7919 * self.learn_calls)
        self.learn_calls += 1
        roll: Rollout | None = None
        prev_done = torch.zeros(B, dtype=torch.bool, device=self.device)
        valid = torch.ones(B, dtype=torch.bool, device=self.device)
        ep_ret = torch.zeros(B, device=self.device)
        next_eval = cfg.eval_every if cfg.eval_every > 0 else None
        next_log = max(cfg.log_every, 1)
        stats: list[torch.Tensor] = []
        finished: list[torch.Tensor] = []
        bar = progress(n_updates * per_update, f"{self.name}", cfg.progress)
        self.training = True
        for update in range(n_updates):
            with torch.no_grad(), self.net.tracker.frozen():  # no parameter changes within a rollout
                for t in range(T):
                    obs = to_device_obs(obs, self.device)
                    if roll is None:
                        roll = Rollout(T, obs, tspec.n_items, self.device)
                    # The rollout keeps copies: the env may update its observation and mask tensors in place.
                    mask = roll.store_obs(t, obs, info)
                    # (a row with nothing allowed samples any item: only an ended env, whose action is ignored)
                    action = sample_categorical(self.net.policy(obs), self.gen, mask)
                    obs, reward, term, trunc, info = train_env.step(action)
                    reward = torch.as_tensor(reward, device=self.device, dtype=torch.float32)
                    done = torch.as_tensor(term, device=self.device) | torch.as_tensor(trunc, device=self.device)
                    if next_step_reset:  # the step after an episode's end only resets it (no transition)
                        valid = ~prev_done
                        done = done & valid
                    ep_ret = ep_ret + torch.where(valid, reward, 0.0)
                    roll.store_step(action, reward * self.reward_scale, done, valid, ep_ret)
                    ep_ret = ep_ret.masked_fill(done, 0.0)
                    if own_reset and bool(done.any()):
                        obs, info = train_env.reset(options={"reset_mask": done})
                    prev_done = done
            assert roll is not None
            roll.finish(to_device_obs(obs, self.device))
            stats.append(self._update(roll))
            finished.append(roll.finished_returns())
            self.env_steps += per_update
            bar.update(per_update)
            last = update == n_updates - 1
            if self.env_steps >= next_log or last:  # training scalars: averaged over the updates since the last log
                losses = dict(zip(LOSS_TAGS, torch.stack(stats).mean(0).tolist(), strict=True))
                rets = torch.cat(finished)
                if rets.numel():
                    losses["train/return"] = float(rets.mean())
                    losses["train/episodes"] = float(rets.numel())
                log_scalars(logger, losses, self.env_steps)
                bar.set_postfix({k.split("/")[-1]: round(v, 3) for k, v in losses.items()})
                stats, finished = [], []
                while next_log <= self.env_steps:
                    next_log += max(cfg.log_every, 1)
            if (next_eval is not None and self.env_steps >= next_eval) or last:
                evaluate(evaluation_env, self.env_steps, logger)
                while next_eval is not None and next_eval <= self.env_steps:
                    next_eval += cfg.eval_every
            self.training = True
        bar.close()

    def _update(self, roll: Rollout) -> torch.Tensor:
        """The Adam steps of one rollout; returns the `LOSS_TAGS` averaged over them.

        The values V(s_0..s_T) for the advantages come from one forward pass at the start of the update (with
        the parameters the rollout acted with): with full-batch steps, that pass is the first training pass
        itself (its values, detached, give the advantages; its first T * B rows the losses); with minibatches, a
        separate pass without gradient.
        """
        cfg = self.cfg
        T, B = roll.act.shape
        n = T * B
        mb = n if cfg.minibatch_size <= 0 else min(cfg.minibatch_size, n)
        full = mb == n  # full-batch steps: the first training pass also gives the values
        obs_all = roll.flat_obs()
        if full:
            s = self.net.tracker(obs_all)
            values_all = _run_mlp(self.net.critic, s).squeeze(-1)
            v = values_all.detach().view(T + 1, B)
        else:
            with torch.no_grad():
                v = self.net.value(obs_all).view(T + 1, B)
        with torch.no_grad():  # advantages once per rollout (as tianshou's A2C, DORL's learner)
            adv = gae_advantages(roll.rew, v[:T], v[T], roll.done, roll.valid, cfg.gamma, cfg.gae_lambda)
            returns = (adv + v[:T]).flatten()
        data = {k: x[:n] for k, x in obs_all.items()}
        data["mask"], data["act"] = roll.mask.flatten(0, 1), roll.act.flatten()
        # NEXT_STEP autoreset steps (not transitions) stay in the batch with weight 0: cheaper than dropping rows
        w = roll.valid.flatten().to(returns.dtype)
        adv = adv.flatten()
        n_valid = w.sum().clamp(min=1.0)
        mean = (adv * w).sum() / n_valid
        std = (((adv - mean) * w).square().sum() / n_valid).sqrt()
        data["ret"], data["adv"], data["w"] = returns, (adv - mean) / (std + 1e-8) * w, w
        # blocked[i, a]: item a may not be chosen at step i. A row with nothing allowed is left open (as in act);
        # the action sampled in such a row is itself disallowed, so the sampled actions tell the rows apart.
        data["blocked"] = ~data.pop("mask")
        row_ok = ~data["blocked"].gather(1, data["act"].unsqueeze(1))
        if not bool(row_ok.all()):
            data["blocked"] &= row_ok
        stats: list[torch.Tensor] = []
        params = list(self.net.parameters())
        coef = torch.tensor([-1.0, -cfg.ent_coef, cfg.vf_coef], device=self.device)
        sign = torch.tensor([-1.0, 1.0, 1.0], device=self.device)  # logged: policy loss, entropy, value loss
        for epoch in range(cfg.update_epochs):
            if mb < n:  # shuffle once per pass; the minibatches are then slices (views)
                order = torch.randperm(n, generator=self.gen, device=self.device)
                shuffled = {k: x[order] for k, x in data.items()}
            else:
                shuffled = data
            for start in range(0, n, mb):
                batch = shuffled if mb == n else {k: x[start:start + mb] for k, x in shuffled.items()}
                if full and epoch == 0:  # the training pass started above
                    logits, values = self.net.logits(s[:n]), values_all[:n]
                else:
                    logits, values = self.net({k: batch[k] for k in roll.obs_keys})
                logp, ent = PolicyTerms.apply(logits, batch["blocked"], batch["act"])
                # [policy gain, entropy, value loss] averaged over the real transitions of the minibatch (weight w;
                # the advantages are 0 on the others), then loss = -gain - ent_coef * entropy + vf_coef * value loss
                terms = torch.stack([logp * batch["adv"], ent, (values - batch["ret"]).square()])
                means = (terms @ batch["w"]) / batch["w"].sum().clamp(min=1.0)
                loss = means @ coef
                for param in params:  # (what zero_grad(set_to_none=True) does, without its overhead)
                    param.grad = None
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
                self.opt.step()
                stats.append(torch.cat([loss.detach().view(1), means.detach() * sign]))
        return torch.stack(stats).mean(0)  # LOSS_TAGS, averaged over the Adam steps

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        save_checkpoint(path, {"agent": self.name, "config": self.cfg, "net": self.net.state_dict(),
                               "opt": self.opt.state_dict(), "env_steps": self.env_steps}, env=self.spec)

    def load(self, path: str) -> None:
        payload = load_checkpoint(path, self.name, env=self.spec)
        self.net.load_state_dict(payload["net"])
        self.opt.load_state_dict(payload["opt"])
        self.env_steps = int(payload.get("env_steps", 0))


def _factory(name: str, train_env: TrainEnvSpec | None):
    def factory(env: Any, config: A2CConfig) -> A2CAgent:
        return A2CAgent(env, config, name=name, train_env=train_env)

    where = "the env given to learn" if train_env is None else f"{train_env.family} {train_env.kwargs or ''}"
    factory.__doc__ = f"A2C agent {name!r}: trains in {where.strip()}."
    return factory


register_agent("a2c", A2CConfig, _factory("a2c", None))
register_agent("gt", A2CConfig, _factory("gt", GT_TRAIN_ENV), train_env=GT_TRAIN_ENV, defaults=RANKING_DEFAULTS)
for _name in WORLD_MODEL_METHODS:
    _spec = TrainEnvSpec("InteractiveRec", {"reward_preset": _name})
    register_agent(_name, A2CConfig, _factory(_name, _spec), train_env=_spec, defaults=RANKING_DEFAULTS)
