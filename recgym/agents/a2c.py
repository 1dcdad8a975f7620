"""Batched A2C over item ids (DORL's policy learner, REFERENCE.md section 1), and its env presets.

One state tracker (DORL's average tracker by default, see `recgym.agents.trackers`) feeds an actor MLP
(hidden [64, 64]) giving a categorical distribution over items, with disallowed items (``info["action_mask"]``)
masked out, and a critic MLP. Each update collects ``n_steps`` steps from ``num_envs`` parallel envs, computes
GAE(``gae_lambda``) advantages with gamma 0.9 once, then takes Adam steps (lr 1e-3) on minibatches of
``minibatch_size`` transitions (``update_epochs`` passes; tianshou's A2C, DORL's learner, does the same) on
``policy loss + vf_coef * value loss - ent_coef * entropy``. ``done = terminated | truncated`` is not
bootstrapped: with the step in the state (``use_step``), the 30-turn limit is part of the MDP.
``gae_lambda`` defaults to 0 (TD(0) advantages): per-step rewards with a high-entropy policy over hundreds of
items make Monte-Carlo advantages (lambda 1) so noisy that on GroundTruthRec-Synthetic A2C-gt reached 81.5
R_cumu after 60k steps with lambda 1 against 94.6 with lambda 0 (random 75, popularity 95). Rewards are
divided by the env's reward span (``normalize_reward``) so the value scale does not depend on the data set.
(Those lambda numbers were measured before the action-mask fix below; lambda 0 was kept.)

The rollout stores a *copy* of ``info["action_mask"]``: the env updates its mask in place, and stored
references all showed the end-of-rollout mask, in which the step's own action is masked. That gave a log-prob
of -inf (NaN ``loss/policy`` and ``loss/total`` on every update) and, worse, no gradient on the taken
action's logit, so the policy could not learn which item earned the advantage: A2C-gt stalled at the
popularity level (~95 R_cumu on GroundTruthRec-Synthetic-v0, 74% of the optimal 129.8).

Preset ``gt`` defaults (``PRESET_DEFAULTS``; explicit config overrides them): ``user_dim=32`` (the user id is
in the observation; with a per-user embedding the optimal NX_0 policy -- the user's top items -- is a
contextual-bandit-like ranking), ``head="tied"`` (logits = <query, item embedding> + bias: a factorisation
the per-user signal can fill in) and ``ent_coef=1.0``. Measured with ``python -m
recgym.benchmarks.a2c_synthetic --budget 600000 --seeds 0 1 2`` after the mask fix (optimal 129.8, random
75.2, popularity 95.9): with DORL's ``ent_coef=0.01`` (also 0.05, and 0.2 with lr 3e-3) the policy becomes
deterministic within ~60k steps and stays at the popularity level (94-98); with 0.2 it collapses later (111
at 300k, seed 0); with 0.5 seed 1 still collapsed (118.8 +- 3.2 over seeds 0-2, 91.5%); with 1.0 the
sampling policy keeps exploring (entropy ~5.7 of at most ln 400 = 6.0) while the greedy policy ranks each
user's items: 121.8 R_cumu over seeds 0-2 (~94% of optimal) at 600k steps, about a minute on one core each.

The world-model presets (``r3s``, ``dorl``, ``mopo``, ``mbpo``, ``roler``) take the same defaults: they face the
same per-user ranking, with a learned reward. ``r3s`` with DORL's ``ent_coef=0.01``, no user embedding and the
MLP head reached 91.95 R_cumu at 600k steps on Synthetic (seed 0, below popularity's 95.9); with these
defaults 101.2 (``python -m recgym.benchmarks.a2c_synthetic --agent r3s --budget 600000 --seeds 0``).
``env_kwargs`` passes extra kwargs to the ``InteractiveRec`` training env (e.g. ``{"lambda_ent": 0.5}``).

Where it trains (``train_env``) -- this is how the presets choose their training env:

- ``"given"`` (agent ``a2c``): trains in the env passed to ``learn``; evaluates in ``eval_env`` if given, else
  in the matching ``GroundTruthRec-<D>-v0`` (same dataset and protocol kwargs).
- ``"gt"`` (agent ``gt``): trains in a fresh ``GroundTruthRec-<D>-v0`` with the evaluation env's dataset and
  protocol kwargs: the ground truth itself, the upper reference.
- ``"interactive"`` (agents ``r3s``, ``dorl``, ``mopo``, ``mbpo``, ``roler``): trains in
  ``InteractiveRec-<D>-v0`` with ``reward_preset=env_preset`` (the world model + reward shaping of that method), the
  dataset and the protocol kwargs of the evaluation env.

For ``gt`` and the interactive presets, the env passed to ``make_agent`` / ``learn`` is the evaluation env
(``GroundTruthRec-<D>-v0``); evaluation runs there every ``eval_every`` env steps (``eval_episodes`` episodes,
greedy actions when ``deterministic_eval``), logged as ``eval/<metric>`` and kept in ``agent.history``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from recgym.agents.base import build_config, register_agent
from recgym.agents.common import (
    EvalRecorder,
    action_mask,
    check_choice,
    generator,
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
from recgym.agents.trackers import TRACKERS, TrackerConfig, make_tracker
from recgym.envs.derive import matching_env

TRAIN_ENVS = ("given", "gt", "interactive")
PRESETS = {  # agent name -> (train_env, InteractiveRec preset)
    "r3s": ("interactive", "r3s"),
    "dorl": ("interactive", "dorl"),
    "mopo": ("interactive", "mopo"),
    "mbpo": ("interactive", "mbpo"),
    "roler": ("interactive", "roler"),
    "gt": ("gt", None),
}
# Per-preset config defaults (a caller's config still overrides them); see the module docstring. The world-model
# presets share gt's: they face the same per-user ranking problem, only with a learned reward.
_RANKING_DEFAULTS: dict[str, Any] = {"user_dim": 32, "head": "tied", "ent_coef": 1.0}
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(_RANKING_DEFAULTS) for name in PRESETS}


@dataclass
class A2CConfig:
    """A2C hyper-parameters (defaults: DORL's, REFERENCE.md section 1)."""

    seed: int = 0
    train_env: str = "given"  # one of TRAIN_ENVS (see the module docstring)
    env_preset: str | None = None  # InteractiveRec preset when train_env == "interactive"
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # extra InteractiveRec kwargs (e.g. lambda_ent)
    num_envs: int = 100  # parallel training envs (DORL: 100)
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
    tracker: str = "avg"  # one of TRACKERS
    window: int = 3
    emb_dim: int = 32
    user_dim: int = 0  # > 0 adds a learned user embedding to the state
    use_step: bool = True
    profile: bool = True  # the user's logged profile in the state (see recgym.agents.trackers)
    eval_every: int = 30_000  # env steps between evaluations (0 = only at the end)
    eval_episodes: int = 100
    deterministic_eval: bool = True
    progress: bool = True


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

    def __init__(self, env: Any, config: A2CConfig, name: str = "a2c") -> None:
        self.name = name
        self.cfg = cfg = config
        check_choice(name, "train_env", cfg.train_env, TRAIN_ENVS)
        check_choice(name, "tracker", cfg.tracker, TRACKERS)
        check_choice(name, "head", cfg.head, ("mlp", "tied"))
        if not isinstance(cfg.env_kwargs, dict):
            raise ValueError(f"{name}: env_kwargs must be a dict of InteractiveRec kwargs, got {cfg.env_kwargs!r}")
        if cfg.env_kwargs and cfg.train_env != "interactive":
            raise ValueError(f"{name}: env_kwargs applies to train_env='interactive' only, got "
                             f"train_env={cfg.train_env!r}")
        if cfg.train_env == "interactive" and not cfg.env_preset:
            raise ValueError(f"{name}: train_env='interactive' needs env_preset (e.g. {sorted(PRESETS)[:5]})")
        for fname in ("num_envs", "n_steps"):
            if int(getattr(cfg, fname)) < 1:
                raise ValueError(f"{name}: {fname} must be >= 1, got {getattr(cfg, fname)}")
        self.spec = spec = rec_env_spec(env, name)
        self.device = spec.device
        tcfg = TrackerConfig(kind=cfg.tracker, window=cfg.window, emb_dim=cfg.emb_dim, user_dim=cfg.user_dim,
                             use_step=cfg.use_step, profile=cfg.profile)
        with seeded(cfg.seed):
            tracker = make_tracker(tcfg, spec.n_users, spec.n_items, spec.history_len, spec.reward_range,
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

    # -- learning --------------------------------------------------------------------------------------
    def _envs(self, env: Any, eval_env: Any) -> tuple[Any, Any]:
        cfg = self.cfg
        if cfg.train_env == "given":
            train = env
            evaluation = eval_env if eval_env is not None else matching_env(
                env, "GroundTruthRec", num_envs=min(cfg.eval_episodes, 100) or 1)
        elif cfg.train_env == "gt":
            train = matching_env(env, "GroundTruthRec", num_envs=cfg.num_envs)
            evaluation = eval_env if eval_env is not None else env
        else:
            train = matching_env(env, "InteractiveRec", num_envs=cfg.num_envs, reward_preset=cfg.env_preset,
                                      progress=cfg.progress, **cfg.env_kwargs)
            evaluation = eval_env if eval_env is not None else env
        return train, evaluation

    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        """Train for ``budget`` env steps (transitions summed over the parallel envs)."""
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
                               "opt": self.opt.state_dict(), "env_steps": self.env_steps})

    def load(self, path: str) -> None:
        payload = load_checkpoint(path, self.name)
        self.net.load_state_dict(payload["net"])
        self.opt.load_state_dict(payload["opt"])
        self.env_steps = int(payload.get("env_steps", 0))


def make_a2c(env: Any, **config: Any) -> A2CAgent:
    """Plain A2C: trains in the env given to ``learn`` (``train_env='given'``)."""
    return A2CAgent(env, build_config(A2CConfig, config, "a2c"), name="a2c")


def _preset_factory(name: str):
    train_env, preset = PRESETS[name]

    def factory(env: Any, **config: Any) -> A2CAgent:
        for fixed in ("train_env", "env_preset"):
            if fixed in config:
                raise ValueError(f"{name}: {fixed} is fixed by the preset ({train_env!r}, {preset!r}); "
                                 "use agent 'a2c' to choose it")
        cfg = build_config(A2CConfig, {**PRESET_DEFAULTS.get(name, {}), **config, "train_env": train_env,
                                       "env_preset": preset}, name)
        return A2CAgent(env, cfg, name=name)

    factory.__doc__ = f"A2C preset {name!r}: train_env={train_env!r}, env_preset={preset!r}."
    return factory


register_agent("a2c", make_a2c)
for _name in PRESETS:
    register_agent(_name, _preset_factory(_name))
