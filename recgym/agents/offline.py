"""Offline RL baselines on logged trajectories (discrete-action versions, as in DORL): BCQ, CQL, CRR, SQN.

All four learn only from the training logs, turned into trajectories by `recgym.agents.logged` (each user's
interactions in time order when the logs have time, else a seeded random order; cut into episodes of the
env's ``max_turn``; state = the tracker over the previous items, exactly the observation layout of the env).
They never interact with the env during training; the env given to ``learn`` is only used for evaluation.
``budget`` counts gradient steps (minibatches of ``batch_size`` transitions).

- ``bcq`` (Fujimoto et al. 2019, discrete BCQ): Q network + behaviour-cloning network G; Q-learning over the
  actions with ``G(a|s) / max_a G(a|s) > threshold`` (0.6); acts the same way.
- ``cql`` (Kumar et al. 2020, the QR-DQN variant DORL runs): 20-quantile QR-DQN plus the conservative term
  ``min_q_weight * (logsumexp_a Q(s, a) - Q(s, a_logged))`` (weight 10).
- ``crr`` (Wang et al. 2020): critic trained by TD with the policy's expected next value; the actor is
  weighted behaviour cloning with weights ``min(exp(A / beta), 20)`` (``crr_mode="exp"``) or ``1[A > 0]``
  (``"binary"``), ``A = Q(s, a) - E_pi Q(s, .)``; acts greedily from the actor.
- ``sqn`` (Xin et al. 2020, SQN): a sequential encoder (GRU by default) with a supervised next-item head
  (cross-entropy) and a Q head (double Q-learning) trained jointly; recommends with the supervised head.

Targets ignore the env's action mask (the logs carry none); acting applies ``info["action_mask"]``. Rewards
are divided by the reward span (``normalize_reward``). Target networks are hard-copied every
``target_update`` steps. Each algorithm has its own config (`BCQConfig`, `CQLConfig`, `CRRConfig`,
`SQNConfig`), all extending the shared `OfflineConfig`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.a2c import mlp
from recgym.agents.base import AgentConfig, BudgetUnit, register_agent
from recgym.agents.common import (
    EvalRecorder,
    action_mask,
    check_choice,
    evaluation_env_for,
    generator,
    load_checkpoint,
    log_scalars,
    masked_logits,
    progress,
    rec_env_spec,
    require_dataset,
    save_checkpoint,
    seeded,
    to_device_obs,
)
from recgym.agents.logged import ORDERS, build_logged_transitions
from recgym.agents.trackers import TrackerConfig, make_tracker


@dataclass
class OfflineConfig(AgentConfig):
    """Settings shared by the four offline agents (each extends it with its own fields)."""

    budget_unit: ClassVar[BudgetUnit] = "gradient_steps"

    eval_every: int = 500  # gradient steps between evaluations (0 = only at the end)
    batch_size: int = 256
    lr: float = 1e-3
    gamma: float = 0.9
    hidden: tuple[int, ...] = (64, 64)
    target_update: int = 100  # gradient steps between hard target-network copies
    normalize_reward: bool = True
    order: str = "time"  # logged-trajectory order, one of logged.ORDERS
    episode_len: int = 0  # 0 = the env's max_turn
    tracker: TrackerConfig = field(default_factory=TrackerConfig)


@dataclass
class BCQConfig(OfflineConfig):
    bcq_threshold: float = 0.6  # keep actions with G(a|s) / max_a G(a|s) > threshold


@dataclass
class CQLConfig(OfflineConfig):
    n_quantiles: int = 20
    min_q_weight: float = 10.0  # weight of the conservative term


@dataclass
class CRRConfig(OfflineConfig):
    crr_beta: float = 1.0  # temperature of the advantage weights
    crr_mode: str = "exp"  # "exp" or "binary"


@dataclass
class SQNConfig(OfflineConfig):
    tracker: TrackerConfig = field(default_factory=lambda: TrackerConfig(kind="gru"))  # SQN's sequential encoder


class OfflineAgent:
    """Shared plumbing: logged transitions, minibatches, target copies, evaluation, save/load."""

    name = "offline"
    config_cls: type[OfflineConfig] = OfflineConfig

    def __init__(self, env: Any, cfg: OfflineConfig) -> None:
        self.cfg = cfg
        if not isinstance(cfg, self.config_cls):
            raise TypeError(f"{self.name}: config must be a {self.config_cls.__name__}, got {type(cfg).__name__}")
        check_choice(self.name, "order", cfg.order, ORDERS)
        if cfg.batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {cfg.batch_size}")
        self._check()
        self.spec = spec = rec_env_spec(env, self.name)
        self.dataset = require_dataset(spec, self.name)
        self.device = spec.device
        with seeded(cfg.seed):
            self.tracker = make_tracker(cfg.tracker, spec.n_users, spec.n_items, spec.history_len, spec.reward_range,
                                        spec.max_turn, self.dataset)
            self.net = nn.ModuleDict({"tracker": self.tracker, **self._heads(self.tracker.out_dim, spec.n_items)})
        self.net.to(self.device)
        self.target = copy.deepcopy(self.net).requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.gen = generator(cfg.seed, self.device)
        span = spec.reward_range[1] - spec.reward_range[0]
        self.reward_scale = 1.0 / span if (cfg.normalize_reward and span > 0) else 1.0
        self.history: list[dict[str, float]] = []
        self.grad_steps = 0
        self._data = None

    # -- to implement ---------------------------------------------------------------------------------
    def _check(self) -> None:
        """Validate the algorithm's own config fields."""

    def _heads(self, state_dim: int, n_items: int) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _loss(self, obs, act, rew, nobs, done) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def _scores(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Item scores [B, n_items] to act greedily on (before the env's mask)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------------
    def state(self, net: nn.ModuleDict, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return net["tracker"](obs)

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        obs = to_device_obs(obs, self.device)
        scores = self._scores(obs)
        return masked_logits(scores, action_mask(info, scores.shape[0], scores.shape[1], self.device)).argmax(-1)

    def transitions(self):
        if self._data is None:
            ep_len = self.cfg.episode_len or self.spec.max_turn
            self._data = build_logged_transitions(self.dataset, self.spec.history_len, ep_len, self.cfg.order,
                                                  self.cfg.seed, self.device)
        return self._data

    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        """``budget`` gradient steps on the logged transitions; evaluation every ``eval_every`` steps."""
        cfg = self.cfg
        data = self.transitions()
        target_env = evaluation_env_for(env, eval_env, cfg.eval_episodes)
        recorder = EvalRecorder(self, cfg.eval_episodes, cfg.seed)
        n = len(data)
        bar = progress(int(budget), self.name, cfg.progress)
        for k in range(int(budget)):
            idx = torch.randint(n, (min(cfg.batch_size, n),), generator=self.gen, device=self.device)
            obs, act, rew, nobs, done = data.batch(idx)
            loss, logs = self._loss(obs, act, rew * self.reward_scale, nobs, done)
            logs = {key: float(v.detach()) for key, v in logs.items()}
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
            self.opt.step()
            self.grad_steps += 1
            if self.grad_steps % cfg.target_update == 0:
                self.target.load_state_dict(self.net.state_dict())
            bar.update(1)
            if k % 50 == 0 or k == int(budget) - 1:
                log_scalars(logger, logs, self.grad_steps)
                bar.set_postfix({key.split("/")[-1]: round(v, 3) for key, v in logs.items()})
            if (cfg.eval_every > 0 and self.grad_steps % cfg.eval_every == 0) or k == int(budget) - 1:
                recorder(target_env, self.grad_steps, logger)
        bar.close()

    def save(self, path: str) -> None:
        save_checkpoint(path, {"agent": self.name, "config": self.cfg, "net": self.net.state_dict(),
                               "target": self.target.state_dict(), "opt": self.opt.state_dict(),
                               "grad_steps": self.grad_steps}, env=self.spec)

    def load(self, path: str) -> None:
        payload = load_checkpoint(path, self.name, env=self.spec)
        self.net.load_state_dict(payload["net"])
        self.target.load_state_dict(payload["target"])
        self.opt.load_state_dict(payload["opt"])
        self.grad_steps = int(payload["grad_steps"])


class BCQ(OfflineAgent):
    name = "bcq"
    config_cls = BCQConfig
    cfg: BCQConfig

    def _heads(self, state_dim, n_items):
        return {"q": mlp(state_dim, self.cfg.hidden, n_items), "g": mlp(state_dim, self.cfg.hidden, n_items)}

    def _filtered_q(self, q: torch.Tensor, g_logits: torch.Tensor) -> torch.Tensor:
        prob = torch.softmax(g_logits, -1)
        keep = prob / prob.max(-1, keepdim=True).values > self.cfg.bcq_threshold
        return torch.where(keep, q, torch.finfo(q.dtype).min)

    def _scores(self, obs):
        s = self.state(self.net, obs)
        return self._filtered_q(self.net["q"](s), self.net["g"](s))

    def _loss(self, obs, act, rew, nobs, done):
        s = self.state(self.net, obs)
        q, g = self.net["q"](s), self.net["g"](s)
        with torch.no_grad():
            ns = self.state(self.net, nobs)
            a_next = self._filtered_q(self.net["q"](ns), self.net["g"](ns)).argmax(-1, keepdim=True)
            q_next = self.target["q"](self.state(self.target, nobs))
            y = rew + self.cfg.gamma * (~done).float() * q_next.gather(1, a_next).squeeze(1)
        q_loss = F.smooth_l1_loss(q.gather(1, act.unsqueeze(1)).squeeze(1), y)
        bc_loss = F.cross_entropy(g, act) + 1e-2 * g.pow(2).mean()
        loss = q_loss + bc_loss
        return loss, {"loss/total": loss, "loss/q": q_loss, "loss/bc": bc_loss}


class CQL(OfflineAgent):
    name = "cql"
    config_cls = CQLConfig
    cfg: CQLConfig

    def _check(self) -> None:
        if self.cfg.n_quantiles < 1:
            raise ValueError(f"{self.name}: n_quantiles must be >= 1, got {self.cfg.n_quantiles}")

    def _heads(self, state_dim, n_items):
        return {"z": mlp(state_dim, self.cfg.hidden, n_items * self.cfg.n_quantiles)}

    def _quantiles(self, net, obs):
        z = net["z"](self.state(net, obs))
        return z.view(z.shape[0], self.spec.n_items, self.cfg.n_quantiles)

    def _scores(self, obs):
        return self._quantiles(self.net, obs).mean(-1)

    def _loss(self, obs, act, rew, nobs, done):
        nq = self.cfg.n_quantiles
        z = self._quantiles(self.net, obs)  # [B, A, N]
        z_a = z[torch.arange(z.shape[0], device=z.device), act]  # [B, N]
        with torch.no_grad():
            z_next = self._quantiles(self.target, nobs)
            a_next = z_next.mean(-1).argmax(-1)
            z_next_a = z_next[torch.arange(z.shape[0], device=z.device), a_next]
            target = rew.unsqueeze(1) + self.cfg.gamma * (~done).float().unsqueeze(1) * z_next_a  # [B, N]
        tau = (torch.arange(nq, device=z.device, dtype=z.dtype) + 0.5) / nq
        diff = target.unsqueeze(1) - z_a.unsqueeze(2)  # [B, N(pred), N(target)]
        huber = F.smooth_l1_loss(z_a.unsqueeze(2).expand_as(diff), target.unsqueeze(1).expand_as(diff),
                                 reduction="none")
        qr_loss = ((tau.view(1, -1, 1) - (diff.detach() < 0).float()).abs() * huber).sum(1).mean()
        q = z.mean(-1)
        cql_term = (torch.logsumexp(q, -1) - q.gather(1, act.unsqueeze(1)).squeeze(1)).mean()
        loss = qr_loss + self.cfg.min_q_weight * cql_term
        return loss, {"loss/total": loss, "loss/qr": qr_loss, "loss/cql": cql_term}


class CRR(OfflineAgent):
    name = "crr"
    config_cls = CRRConfig
    cfg: CRRConfig

    def _check(self) -> None:
        check_choice(self.name, "crr_mode", self.cfg.crr_mode, ("exp", "binary"))

    def _heads(self, state_dim, n_items):
        return {"q": mlp(state_dim, self.cfg.hidden, n_items), "pi": mlp(state_dim, self.cfg.hidden, n_items)}

    def _scores(self, obs):
        return self.net["pi"](self.state(self.net, obs))

    def _loss(self, obs, act, rew, nobs, done):
        s = self.state(self.net, obs)
        q, logits = self.net["q"](s), self.net["pi"](s)
        with torch.no_grad():
            ts = self.state(self.target, nobs)
            v_next = (torch.softmax(self.target["pi"](ts), -1) * self.target["q"](ts)).sum(-1)
            y = rew + self.cfg.gamma * (~done).float() * v_next
        q_a = q.gather(1, act.unsqueeze(1)).squeeze(1)
        q_loss = F.mse_loss(q_a, y)
        logp = torch.log_softmax(logits, -1)
        with torch.no_grad():
            adv = q_a - (logp.exp() * q).sum(-1)
            if self.cfg.crr_mode == "exp":
                weight = torch.exp(adv / self.cfg.crr_beta).clamp(max=20.0)
            else:
                weight = (adv > 0).float()
        pi_loss = -(weight * logp.gather(1, act.unsqueeze(1)).squeeze(1)).mean()
        loss = q_loss + pi_loss
        return loss, {"loss/total": loss, "loss/q": q_loss, "loss/actor": pi_loss,
                      "train/weight_mean": weight.mean()}


class SQN(OfflineAgent):
    name = "sqn"
    config_cls = SQNConfig
    cfg: SQNConfig

    def _heads(self, state_dim, n_items):
        return {"sup": nn.Linear(state_dim, n_items), "q": nn.Linear(state_dim, n_items)}

    def _scores(self, obs):
        return self.net["sup"](self.state(self.net, obs))

    def _loss(self, obs, act, rew, nobs, done):
        s = self.state(self.net, obs)
        sup, q = self.net["sup"](s), self.net["q"](s)
        with torch.no_grad():
            a_next = self.net["q"](self.state(self.net, nobs)).argmax(-1, keepdim=True)  # double Q-learning
            q_next = self.target["q"](self.state(self.target, nobs)).gather(1, a_next).squeeze(1)
            y = rew + self.cfg.gamma * (~done).float() * q_next
        q_loss = F.mse_loss(q.gather(1, act.unsqueeze(1)).squeeze(1), y)
        ce = F.cross_entropy(sup, act)
        loss = ce + q_loss
        return loss, {"loss/total": loss, "loss/supervised": ce, "loss/q": q_loss}


for _cls in (BCQ, CQL, CRR, SQN):
    register_agent(_cls.name, _cls.config_cls, _cls)
