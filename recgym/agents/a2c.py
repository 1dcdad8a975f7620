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
GAE(``gae_lambda``) advantages with gamma 0.9 once, then takes Adam steps (lr 1e-3) on minibatches of
``minibatch_size`` transitions (``update_epochs`` passes, as tianshou's A2C) on ``policy loss + vf_coef * value
loss - ent_coef * entropy``. ``done = terminated | truncated`` is not bootstrapped: with the step in the state
(``tracker.use_step``), the 30-turn limit is part of the MDP. ``gae_lambda`` defaults to 0 (TD(0) advantages):
per-step rewards with a high-entropy policy over hundreds of items make Monte-Carlo advantages too noisy.
Rewards are divided by the env's reward span (``normalize_reward``) so the value scale does not depend on the
data set. The rollout stores a *copy* of ``info["action_mask"]``: a mask updated in place by the env would show
the end-of-rollout mask, in which the step's own action is masked (log-prob -inf, no gradient on it).

``gt`` and the world-model methods default to settings for the per-user ranking problem they face
(`RANKING_DEFAULTS`; a caller's config still overrides them): a user embedding (``tracker.user_dim=32``: the
user id is in the observation, and the optimal NX_0 policy -- the user's top items -- is a contextual-bandit-like
ranking), ``head="tied"`` (logits = <query, item embedding> + bias: a factorisation the per-user signal can fill
in) and ``ent_coef=1.0`` (with DORL's 0.01 the policy turns deterministic early and stays at the popularity
level). The measurements behind these choices are in docs/RESULTS.md ("History of design measurements").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from recgym.agents.base import AgentConfig, register_agent
from recgym.agents.common import (
    EvalRecorder,
    action_mask,
    check_choice,
    generator,
    learn_envs,
    load_checkpoint,
    log_scalars,
    masked_logits,
    progress,
    rec_env_spec,
    reset_done,
    save_checkpoint,
    seeded,
    step_validity,
    to_device_obs,
)
from recgym.agents.trackers import TrackerConfig, make_tracker
from recgym.envs.derive import TrainEnvSpec

WORLD_MODEL_METHODS = ("r3s", "dorl", "mopo", "mbpo", "roler")  # A2C in InteractiveRec(reward_preset=<name>)
GT_TRAIN_ENV = TrainEnvSpec("GroundTruthRec")
# Defaults of gt and the world-model methods (see the module docstring); the same for all: they face the same
# per-user ranking problem, only with a learned reward.
RANKING_DEFAULTS: dict[str, Any] = {"tracker": {"user_dim": 32}, "head": "tied", "ent_coef": 1.0}


@dataclass
class A2CConfig(AgentConfig):
    """A2C hyper-parameters (defaults: DORL's A2C learner)."""

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
        logits = self.actor(s)
        if self.head == "tied":
            logits = logits @ self.tracker.item_emb.weight[:-1].T + self.item_bias
        return logits, self.critic(s).squeeze(-1)


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
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
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
        obs = to_device_obs(obs, self.device)
        logits, _ = self.net(obs)
        logits = masked_logits(logits, action_mask(info, logits.shape[0], logits.shape[1], self.device))
        if not self.training and self.cfg.deterministic_eval:
            return logits.argmax(-1)
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen).squeeze(-1)

    @torch.no_grad()
    def policy_logits(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        """The policy's item logits [B, n_items], disallowed items at -inf: what ``eval_actions="sample"``
        draws from (DORL's A2C samples at test time; `recgym.agents.eval_actions`)."""
        obs = to_device_obs(obs, self.device)
        logits, _ = self.net(obs)
        return masked_logits(logits, action_mask(info, logits.shape[0], logits.shape[1], self.device))

    # -- learning --------------------------------------------------------------------------------------
    def _envs(self, env: Any, eval_env: Any) -> tuple[Any, Any]:
        """(training env, evaluation env) of ``learn(env, ..., eval_env)``; see the module docstring."""
        cfg = self.cfg
        interactive = self.train_env is not None and self.train_env.family == "InteractiveRec"
        overrides = {"progress": cfg.progress, **cfg.train_env_kwargs} if interactive else {}
        return learn_envs(self.name, env, eval_env, self.train_env, cfg.num_envs, min(cfg.eval_episodes, 100) or 1,
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
        B = tspec.num_envs
        per_update = B * cfg.n_steps
        n_updates = max(1, -(-int(budget) // per_update))
        # A new seed stream per learn() call: repeated calls do not replay the same users.
        obs, info = train_env.reset(seed=cfg.seed + 7919 * self.learn_calls)
        self.learn_calls += 1
        prev_done = torch.zeros(B, dtype=torch.bool, device=self.device)
        ep_ret = torch.zeros(B, device=self.device)
        finished: list[torch.Tensor] = []
        next_eval = cfg.eval_every if cfg.eval_every > 0 else None
        bar = progress(n_updates * per_update, f"{self.name}", cfg.progress)
        self.training = True
        for update in range(n_updates):
            buf_obs, buf_act, buf_rew, buf_done, buf_valid, buf_mask = [], [], [], [], [], []
            for _ in range(cfg.n_steps):
                obs = to_device_obs(obs, self.device)
                # clone: the env updates its action mask in place, so a stored reference would later show
                # the end-of-rollout mask (the taken action masked: log-prob -inf, NaN loss, no gradient on it).
                mask = action_mask(info, B, tspec.n_items, self.device).clone()
                action = self.act(obs, info)
                nobs, reward, term, trunc, ninfo = train_env.step(action)
                reward = torch.as_tensor(reward, device=self.device, dtype=torch.float32)
                done = torch.as_tensor(term, device=self.device) | torch.as_tensor(trunc, device=self.device)
                valid = step_validity(train_env, prev_done)
                buf_obs.append(obs)
                buf_act.append(action)
                buf_rew.append(reward * self.reward_scale)
                buf_done.append(done & valid)
                buf_valid.append(valid)
                buf_mask.append(mask)
                ep_ret = torch.where(valid, ep_ret + reward, ep_ret)
                ended = done & valid
                if bool(ended.any()):
                    finished.append(ep_ret[ended])
                ep_ret = torch.where(ended, torch.zeros_like(ep_ret), ep_ret)
                obs, info = reset_done(train_env, nobs, ninfo, done)
                prev_done = done
            losses = self._update(buf_obs, buf_act, buf_rew, buf_done, buf_valid, buf_mask,
                                  to_device_obs(obs, self.device))
            self.env_steps += per_update
            bar.update(per_update)
            if finished:
                rets = torch.cat(finished)
                losses["train/return"] = float(rets.mean())
                losses["train/episodes"] = float(rets.numel())
                finished = []
            log_scalars(logger, losses, self.env_steps)
            bar.set_postfix({k.split("/")[-1]: round(v, 3) for k, v in losses.items()})
            last = update == n_updates - 1
            if (next_eval is not None and self.env_steps >= next_eval) or last:
                evaluate(evaluation_env, self.env_steps, logger)
                while next_eval is not None and next_eval <= self.env_steps:
                    next_eval += cfg.eval_every
            self.training = True
        bar.close()

    def _update(self, obs_l, act_l, rew_l, done_l, valid_l, mask_l, last_obs) -> dict[str, float]:
        cfg = self.cfg
        T = len(act_l)
        obs = {k: torch.cat([o[k] for o in obs_l]) for k in obs_l[0]}
        with torch.no_grad():  # advantages once per rollout (as tianshou's A2C, DORL's learner)
            _, values = self.net(obs)
            _, last_v = self.net(last_obs)
            v = values.view(T, -1)
            adv = torch.zeros_like(v)
            gae = torch.zeros_like(last_v)
            nxt = last_v
            for t in reversed(range(T)):
                nonterminal = (~done_l[t]).float()
                delta = rew_l[t] + cfg.gamma * nxt * nonterminal - v[t]
                gae = delta + cfg.gamma * cfg.gae_lambda * nonterminal * gae
                # An invalid (autoreset) step carries nothing across it.
                gae = torch.where(valid_l[t], gae, torch.zeros_like(gae))
                adv[t] = gae
                nxt = torch.where(valid_l[t], v[t], torch.zeros_like(v[t]))
            returns = (adv + v).flatten()
        keep = torch.cat(valid_l).nonzero().squeeze(1)  # drop NEXT_STEP autoreset steps
        obs = {k: x[keep] for k, x in obs.items()}
        acts, masks, returns = torch.cat(act_l)[keep], torch.cat(mask_l)[keep], returns[keep]
        advf = adv.flatten()[keep]
        advn = (advf - advf.mean()) / (advf.std(unbiased=False) + 1e-8)
        n = int(keep.numel())
        mb = n if cfg.minibatch_size <= 0 else min(cfg.minibatch_size, n)
        sums = {"loss/total": 0.0, "loss/policy": 0.0, "loss/value": 0.0, "loss/entropy": 0.0}
        steps = 0
        for _ in range(cfg.update_epochs):
            order = torch.randperm(n, generator=self.gen, device=self.device)
            for start in range(0, n, mb):
                idx = order[start:start + mb]
                logits, values = self.net({k: x[idx] for k, x in obs.items()})
                logp_all = torch.log_softmax(masked_logits(logits, masks[idx]), -1)
                logp = logp_all.gather(1, acts[idx].unsqueeze(1)).squeeze(1)
                # Masked items have log-prob -inf: zero them before p * log p (0 * -inf is NaN, also in backward).
                logp_safe = torch.where(torch.isfinite(logp_all), logp_all, torch.zeros_like(logp_all))
                ent = -(logp_all.exp() * logp_safe).sum(-1).mean()
                pg_loss = -(logp * advn[idx]).mean()
                v_loss = ((values - returns[idx]) ** 2).mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * ent
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
                self.opt.step()
                for key, val in (("loss/total", loss), ("loss/policy", pg_loss), ("loss/value", v_loss),
                                 ("loss/entropy", ent)):
                    sums[key] += float(val.detach())
                steps += 1
        return {k: val / max(steps, 1) for k, val in sums.items()}

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
