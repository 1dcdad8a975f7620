"""DAC4Rec, and the SAC / TD3 / DDPG agents it is compared with, on continuous item actions.

DAC4Rec: Chen, Wang & Yao, "Energy-Guided Diffusion Sampling for Long-Term User Behavior Prediction in
Reinforcement Learning-based Recommendation" (arXiv:2510.12815). Training, evaluation and the action -> item
mapping are the shared harness of `recgym.agents.continuous` (by default: interaction with the DeepFM user
model of ``InteractiveRec-<D>-v0`` as in EasyRL4Rec and the paper's tables, a replay buffer, evaluation in
``GroundTruthRec-<D>-v0``; ``train_mode="offline"`` trains on the logs only). ``budget`` counts env steps.

**Networks.** Actor and critic each own a state tracker (`recgym.agents.trackers`, GRU by default as in the
paper's Table 1, ``sasrec`` for Table 2; with the user's logged profile): the critic's is trained by the TD
loss, the actor's by the policy loss. Twin critics ``Q1, Q2`` (MLPs on [s, a]) with Polyak-averaged targets
(``tau``). The diffusion actor is `recgym.agents.diffusion_policy.DiffusionActor` (VP schedule beta_min 0.1,
beta_max 10, ``n_diffusion_steps`` N = 100, the paper's choice: its study of N = 20, 50, 100, 200 found 100
best).

**Backbones** (``algo``) and actors (``actor``):

- ``dac`` (DAC4Rec): TD target ``r + gamma * min(Q1', Q2')(s', a')`` (as an n-step return, `recgym.agents.
  continuous`) with ``a'`` sampled from the *target* diffusion actor (eq. 20); policy loss ``L_d + lam * L_q`` every step. ``q_mode="direct"``: ``L_q = -Q(s,
  a0_hat) / mean|Q|`` (the Diffusion-QL / TD3+BC normalisation) with ``a0_hat`` the *action approximation*
  (eq. 14) of the batch action, bounded (`DiffusionActor.approx_action`: noised at a step among the first
  ``approx_frac`` of the chain, clipped to [-1, 1]) when ``action_approx``, else a full reverse-chain sample
  with gradients through all N steps (DAC4Rec-A); ``q_mode="awr"`` (likelihood-based, eq. 19): ``mean(w ||a -
  a0_hat||^2)`` with ``w = min(exp((Q(s, a) - V(s)) / awr_beta), 100)``, ``V(s) = Q(s, a ~ pi_target(s))``
  (without action approximation: the weighted denoising loss, eq. 18 with the DDPM constant dropped).
- ``td3``: target policy smoothing (noise 0.2 clipped at 0.5), actor every ``actor_every`` (2) updates;
  ``actor="deterministic"``: ``-Q1(s, pi(s))``; ``actor="diffusion"`` (TD3+Diffusion): DAC4Rec's policy loss.
- ``ddpg``: one critic (``Q1``) and its target, ``-Q1(s, pi(s))`` every update.
- ``sac``: next actions from the current actor; ``actor="gaussian"``: SAC (tanh-Gaussian, learned temperature,
  target entropy -k); ``actor="diffusion"`` (SAC+Diffusion): a diffusion likelihood is intractable, so the
  entropy term is dropped and soft policy improvement takes its likelihood form ``pi ~ mu exp(Q / awr_beta)``
  (``q_mode="awr"``).

**Acting.** Exploration: Gaussian actors sample, deterministic ones add N(0, ``explore_noise``), diffusion
actors draw one (guided) sample. Evaluation: Gaussian actors take the mean; deterministic ones their output;
diffusion actors draw ``eval_samples`` (guided) actions per state and keep the one with the highest ``min(Q1,
Q2)`` (the paper's section 3.3: "By sampling multiple actions and selecting the one with the highest Q").
**Energy guidance** (``guidance_scale > 0``, diffusion actors): the energy model ``f_psi(s, a_i, i)`` (on the
critic's state) is trained with the CEP loss over ``energy_m`` (16) candidate actions sampled from the actor,
``beta = energy_beta`` (3), ``Q = min(Q1, Q2)``, one step every ``energy_every`` actor-critic updates, alongside
them rather than after (Algorithm 1 trains it after, on a fixed data set; interactive training evaluates while
it learns, and the energy must follow the critic it approximates); sampling adds ``guidance_scale * grad_a
f_psi`` to the score.

Registered agents (`VARIANTS`, one config class with per-agent defaults; every field can be overridden):
``dac4rec``, ``dac4rec_noguide`` (DAC4Rec-E), ``dac4rec_a``, ``dac4rec_awr``, ``sac``, ``td3``, ``ddpg``,
``sac_diffusion``, ``sac_diffusion_energy``, ``td3_diffusion``, ``td3_diffusion_energy``, and
``offline_sac`` / ``offline_td3`` (``sac`` / ``td3`` with ``train_mode="offline"``). All randomness comes from
seeded ``torch.Generator``s, so the same seed gives the same agent and the same actions.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.base import register_agent
from recgym.agents.common import (
    action_mask,
    check_choice,
    generator,
    load_checkpoint,
    require_dataset,
    save_checkpoint,
    seeded,
    to_device_obs,
)
from recgym.agents.continuous import (
    ContinuousConfig,
    ReplayBuffer,
    RewardScaler,
    action_embeddings,
    check_harness_config,
    continuous_env_spec,
    learn_continuous,
    logged_data,
)
from recgym.agents.diffusion_policy import DiffusionActor, EnergyModel, cep_loss
from recgym.agents.logged import LoggedTransitions
from recgym.agents.trackers import TrackerConfig, make_tracker
from recgym.envs.item_actions import map_actions_to_items, normalise_rows
from recgym.nn.diffusion import mlp as mish_mlp

ALGOS = ("dac", "sac", "td3", "ddpg")
ACTORS = ("diffusion", "gaussian", "deterministic")
Q_MODES = ("direct", "awr")


@dataclass
class DAC4RecConfig(ContinuousConfig):
    """Hyper-parameters of DAC4Rec and of its SAC / TD3 / DDPG siblings (see the module docstring)."""

    algo: str = "dac"  # one of ALGOS (critic backbone)
    actor: str = "diffusion"  # one of ACTORS
    action_approx: bool = True  # one-step a0 estimate (eq. 14) instead of backprop through the chain
    approx_frac: float = 0.1  # the estimate's noise step is drawn from the first approx_frac of the N steps
    q_mode: str = "direct"  # one of Q_MODES: backprop Q ("direct") or AWR-weighted likelihood ("awr")
    lam: float = 1.0  # weight of L_q in L_d + lam * L_q
    awr_beta: float = 1.0  # AWR temperature: w = exp(A / awr_beta)
    n_diffusion_steps: int = 100  # N (the paper's choice)
    beta_min: float = 0.1
    beta_max: float = 10.0
    guidance_scale: float = 1.0  # energy guidance scale (0 = off, no energy model)
    energy_m: int = 16  # candidate actions per state in the CEP loss
    energy_beta: float = 3.0
    energy_every: int = 4  # one energy-model step every k actor-critic updates
    energy_batch: int = 64  # states per energy step (each with energy_m candidates)
    eval_samples: int = 16  # diffusion actors: sampled actions per state at evaluation, the best Q kept
    lr: float = 1e-3  # EasyRL4Rec: critic 1e-3
    gamma: float = 0.9
    tau: float = 0.005  # Polyak rate of the target networks
    hidden: tuple[int, ...] = (64, 64)  # EasyRL4Rec
    actor_every: int = 1  # actor update every k critic updates (TD3: 2)
    policy_noise: float = 0.2  # td3 target smoothing
    noise_clip: float = 0.5
    init_alpha: float = 0.2  # sac temperature (learned)
    grad_clip: float = 10.0
    # GRU over the history, with the user's logged profile (recgym.agents.trackers); one per actor and critic
    critic_window: int = 10  # Q sees the action's similarity to the last k items (0 = off; see TwinCritic)
    tracker_from_actions: bool = True  # trackers' item embeddings start as the action embeddings (emb_dim = k)
    tracker: TrackerConfig = field(default_factory=lambda: TrackerConfig(kind="gru", profile=True))


class GaussianActor(nn.Module):
    """tanh-squashed Gaussian policy (SAC)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mish_mlp(state_dim, hidden, 2 * action_dim)

    def forward(self, s: torch.Tensor, gen: torch.Generator | None = None, deterministic: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(s).chunk(2, -1)
        if deterministic:
            return torch.tanh(mean), torch.zeros(s.shape[0], device=s.device)
        std = log_std.clamp(-5.0, 2.0).exp()
        noise = torch.randn(mean.shape, generator=gen, device=s.device)
        a = torch.tanh(mean + std * noise)
        logp = (-0.5 * noise.pow(2) - std.log() - 0.5 * np.log(2 * np.pi)).sum(-1)
        return a, logp - torch.log1p(-a.pow(2) + 1e-6).sum(-1)


class DeterministicActor(nn.Module):
    """tanh(MLP(s)) (TD3, DDPG)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mish_mlp(state_dim, hidden, action_dim)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(s))


class TwinCritic(nn.Module):
    """Tracker + Q1, Q2 on [s, a].

    With ``item_emb`` (the action space's embeddings, [n_items, k]) and ``window`` > 0 the state also carries the
    embeddings of the last ``window`` items, and each Q head sees the action's dot products with them: how close
    the action's item is to the ones just recommended, which is what the quit rule punishes.
    """

    def __init__(self, tracker: nn.Module, action_dim: int, hidden: tuple[int, ...],
                 item_emb: torch.Tensor | None = None, window: int = 0) -> None:
        super().__init__()
        self.tracker = tracker
        self.window = int(window) if item_emb is not None else 0
        if self.window:
            pad = torch.zeros(1, item_emb.shape[1], dtype=item_emb.dtype, device=item_emb.device)
            self.register_buffer("hist_emb", torch.cat([item_emb, pad]))  # row n_items: padding (no item)
        self.k = int(action_dim)
        self.state_dim = tracker.out_dim + self.window * self.k
        inp = tracker.out_dim + action_dim + self.window
        self.q1 = mish_mlp(inp, hidden, 1)
        self.q2 = mish_mlp(inp, hidden, 1)

    def state(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        s = self.tracker(obs)
        if not self.window:
            return s
        items = obs["items"][:, -self.window:].long()
        items = torch.where(items >= 0, items, torch.full_like(items, self.hist_emb.shape[0] - 1))
        return torch.cat([s, self.hist_emb[items].flatten(1)], -1)

    def q(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.window:
            s, hist = s[:, : -self.window * self.k], s[:, -self.window * self.k:].view(-1, self.window, self.k)
            sims = (hist @ a.clamp(-1.0, 1.0).unsqueeze(-1)).squeeze(-1)
            x = torch.cat([s, sims, a], -1)
        else:
            x = torch.cat([s, a], -1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def q_min(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        q1, q2 = self.q(s, a)
        return torch.minimum(q1, q2)


def items_for_actions(actions: torch.Tensor, item_emb: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The item each action maps to (no random remap): `recgym.envs.item_actions.map_actions_to_items`."""
    return map_actions_to_items(actions, item_emb, mask)


class DAC4RecAgent:
    """Actor-critic with a diffusion (or Gaussian / deterministic) actor; see the module docstring."""

    def __init__(self, env: Any, cfg: DAC4RecConfig, name: str = "dac4rec",
                 item_embeddings: torch.Tensor | np.ndarray | None = None) -> None:
        self.name, self.cfg = name, cfg
        check_harness_config(name, cfg)
        check_choice(name, "algo", cfg.algo, ALGOS)
        check_choice(name, "actor", cfg.actor, ACTORS)
        check_choice(name, "q_mode", cfg.q_mode, Q_MODES)
        for fname in ("n_diffusion_steps", "energy_m", "energy_batch", "actor_every", "eval_samples"):
            if int(getattr(cfg, fname)) < 1:
                raise ValueError(f"{name}: {fname} must be >= 1, got {getattr(cfg, fname)}")
        if cfg.guidance_scale < 0:
            raise ValueError(f"{name}: guidance_scale must be >= 0 (0 = off), got {cfg.guidance_scale}")
        if cfg.guidance_scale > 0 and cfg.actor != "diffusion":
            raise ValueError(f"{name}: energy guidance (guidance_scale={cfg.guidance_scale}) needs actor='diffusion', "
                             f"got actor={cfg.actor!r}")
        if cfg.awr_beta <= 0 or not 0 < cfg.tau <= 1 or not 0 < cfg.approx_frac <= 1:
            raise ValueError(f"{name}: need awr_beta > 0, 0 < tau <= 1, 0 < approx_frac <= 1; got {cfg.awr_beta}, "
                             f"{cfg.tau}, {cfg.approx_frac}")
        self.spec = spec = continuous_env_spec(env, name)
        self.dataset = require_dataset(spec, name)
        self.device = dev = spec.device
        if item_embeddings is None:
            emb, emb_src = action_embeddings(self.dataset, cfg), cfg.action_emb
        else:
            emb, emb_src = normalise_rows(item_embeddings), "given"
        if emb.shape[0] != spec.n_items:
            raise ValueError(f"{name}: item_embeddings must be [n_items={spec.n_items}, k], got {tuple(emb.shape)}")
        self.item_emb = emb.to(dev)
        self.action_dim = k = int(emb.shape[1])
        rewards = self.dataset.train["reward"].to_numpy(np.float64)
        self.log_reward_bounds = (min(0.0, float(rewards.min())), max(0.0, float(rewards.max()))) if len(rewards) \
            else (0.0, 1.0)
        hidden = tuple(int(h) for h in cfg.hidden)

        tcfg = dataclasses.replace(cfg.tracker, emb_dim=k) if cfg.tracker_from_actions else cfg.tracker

        def tracker() -> nn.Module:
            t = make_tracker(tcfg, spec.n_users, spec.n_items, spec.history_len, self.log_reward_bounds,
                             spec.max_turn, self.dataset)
            if cfg.tracker_from_actions:  # EasyRL4Rec: states and actions in the user model's embedding space
                with torch.no_grad():
                    t.item_emb.weight[: spec.n_items] = self.item_emb.to(t.item_emb.weight.device)
            # Observed rewards arrive already in [0, 1] (RewardScaler, with the bounds of the env that produced
            # them); the log bounds above only normalise the logged profile's weights.
            t.r_lo.fill_(0.0)
            t.r_scale.fill_(1.0)
            return t

        with seeded(cfg.seed):
            a_tr = tracker()
            sd = a_tr.out_dim
            if cfg.actor == "diffusion":
                pi: nn.Module = DiffusionActor(sd, k, cfg.n_diffusion_steps, hidden, cfg.beta_min, cfg.beta_max)
            elif cfg.actor == "gaussian":
                pi = GaussianActor(sd, k, hidden)
            else:
                pi = DeterministicActor(sd, k, hidden)
            self.actor = nn.ModuleDict({"tracker": a_tr, "pi": pi}).to(dev)
            window = min(max(int(cfg.critic_window), 0), spec.history_len)
            self.critic = TwinCritic(tracker(), k, hidden, self.item_emb, window).to(dev)
            self.energy = (EnergyModel(self.critic.state_dim, k, hidden).to(dev) if cfg.guidance_scale > 0
                           else None)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)
        self.energy_opt = torch.optim.Adam(self.energy.parameters(), lr=cfg.lr) if self.energy is not None else None
        self.log_alpha = torch.tensor(float(np.log(cfg.init_alpha)), device=dev, requires_grad=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr)
        self.gen = generator(cfg.seed, dev)  # updates and minibatches
        self.explore_gen = generator(cfg.seed + 31, dev)  # exploration while collecting
        self.map_gen = generator(cfg.seed + 61, dev)  # remap_eps coins while collecting
        self.act_gen = generator(cfg.seed + 7919, dev)  # act(): reseeded by every evaluation
        self.act_scaler: RewardScaler | None = None  # set to the evaluation env's bounds while evaluating
        self._default_scaler = RewardScaler(spec.reward_range)
        self.history: list[dict[str, float]] = []
        self.env_steps = self.grad_steps = self.energy_grad_steps = self.learn_calls = 0
        self.update_credit = 0.0
        self.buffer: ReplayBuffer | None = None
        self.training = True
        recovered = items_for_actions(self.item_emb, self.item_emb, None)
        self.meta = {"self_recovery": float((recovered == torch.arange(spec.n_items, device=dev)).float().mean()),
                     "action_dim": k, "action_emb": emb_src}
        self._data: LoggedTransitions | None = None

    # -- data ---------------------------------------------------------------------------------------------
    def logged_transitions(self) -> LoggedTransitions:
        """The training logs as transitions (offline mode), built once."""
        if self._data is None:
            self._data = logged_data(self.dataset, self.spec, self.cfg, self.device)
        return self._data

    # -- policy -------------------------------------------------------------------------------------------
    def _guide(self, obs: dict[str, torch.Tensor], scale: float | None):
        scale = self.cfg.guidance_scale if scale is None else float(scale)
        if scale <= 0 or self.energy is None or self.energy_grad_steps == 0:
            return None, 0.0
        s_critic = self.critic.state(obs)
        energy = self.energy

        def guide(a: torch.Tensor, i: torch.Tensor, _s: torch.Tensor) -> torch.Tensor:
            return energy.grad_a(a, i, s_critic.repeat_interleave(a.shape[0] // s_critic.shape[0], 0))

        return guide, scale

    @torch.no_grad()
    def policy_action(self, obs: dict[str, torch.Tensor], gen: torch.Generator | None = None,
                      guidance_scale: float | None = None, explore: bool = False) -> torch.Tensor:
        """Continuous actions [B, k] for normalised observations: exploring (training) or evaluation actions."""
        gen = self.act_gen if gen is None else gen
        s = self.actor["tracker"](obs)
        pi = self.actor["pi"]
        if isinstance(pi, DiffusionActor):
            guide, scale = self._guide(obs, guidance_scale)
            n = 1 if explore else int(self.cfg.eval_samples)
            cand = pi.sample(s.repeat_interleave(n, 0), gen, guide=guide, scale=scale)
            if n == 1:
                return cand
            b = s.shape[0]
            q = self.critic.q_min(self.critic.state(obs).repeat_interleave(n, 0), cand).view(b, n)
            return cand.view(b, n, -1)[torch.arange(b, device=s.device), q.argmax(1)]
        if isinstance(pi, GaussianActor):
            return pi(s, gen, deterministic=not explore)[0]
        a = pi(s)
        if explore and self.cfg.explore_noise > 0:
            a = (a + self.cfg.explore_noise * torch.randn(a.shape, generator=gen, device=a.device)).clamp(-1.0, 1.0)
        return a

    def explore_actions(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Exploring actions [B, k] for the collector (normalised observations)."""
        return self.policy_action(obs, self.explore_gen, explore=True)

    def items_for(self, actions: torch.Tensor, mask: Any, gen: torch.Generator) -> torch.Tensor:
        """Items for continuous actions: EasyRL4Rec's mapping with this agent's embeddings and ``remap_eps``."""
        m = None if mask is None else torch.as_tensor(mask, device=self.device).bool()
        return map_actions_to_items(actions, self.item_emb, m, self.cfg.remap_eps, gen)

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        """Item ids int64 [B]: the evaluation action mapped to an allowed item (``remap_eps`` random ones)."""
        obs = to_device_obs(obs, self.device)
        scaler = self.act_scaler or self._default_scaler
        a = self.policy_action(scaler(obs), self.act_gen)
        mask = action_mask(info, a.shape[0], self.spec.n_items, self.device)
        return self.items_for(a, mask, self.act_gen)

    # -- updates ------------------------------------------------------------------------------------------
    def _next_action(self, nobs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Next actions for the TD target and their log-probs (0 unless SAC with a Gaussian actor)."""
        cfg = self.cfg
        zero = torch.zeros(nobs["step"].shape[0], device=self.device)
        net = self.actor if cfg.algo == "sac" else self.actor_target
        s, pi = net["tracker"](nobs), net["pi"]
        if isinstance(pi, GaussianActor):
            a, logp = pi(s, self.gen)
            return a, (logp if cfg.algo == "sac" else zero)
        a = pi.sample(s, self.gen) if isinstance(pi, DiffusionActor) else pi(s)
        if cfg.algo == "td3":
            noise = torch.randn(a.shape, generator=self.gen, device=self.device) * cfg.policy_noise
            a = (a + noise.clamp(-cfg.noise_clip, cfg.noise_clip)).clamp(-1.0, 1.0)
        return a, zero

    def _critic_step(self, obs, act, rew, nobs, done, discount) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        with torch.no_grad():
            a_next, logp_next = self._next_action(nobs)
            s_next = self.critic_target.state(nobs)
            if cfg.algo == "ddpg":
                q_next = self.critic_target.q(s_next, a_next)[0]
            else:
                q_next = self.critic_target.q_min(s_next, a_next)
            if cfg.algo == "sac" and cfg.actor == "gaussian":
                q_next = q_next - self.log_alpha.exp() * logp_next
            y = rew + discount * (~done).float() * q_next
        q1, q2 = self.critic.q(self.critic.state(obs), act)
        loss = F.mse_loss(q1, y) + (0.0 if cfg.algo == "ddpg" else F.mse_loss(q2, y))
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.critic_opt.step()
        return {"loss/critic": loss.detach(), "train/q_mean": q1.detach().mean()}

    def _diffusion_policy_loss(self, pi: DiffusionActor, s, s_c, obs, act, logs) -> torch.Tensor:
        cfg = self.cfg
        err, _, _ = pi.denoise_terms(act, s, self.gen)
        l_d = err.mean()
        max_step = max(1, math.ceil(cfg.approx_frac * pi.n_steps))
        a_hat = pi.approx_action(act, s, self.gen, max_step) if cfg.action_approx else None
        if cfg.q_mode == "direct":
            a_q = a_hat if a_hat is not None else pi.sample(s, self.gen, grad=True)
            q = self.critic.q_min(s_c, a_q)
            l_q = -q.mean() / q.abs().mean().detach().clamp_min(1e-6)
        else:
            with torch.no_grad():
                a_pi = self.actor_target["pi"].sample(self.actor_target["tracker"](obs), self.gen)
                adv = self.critic.q_min(s_c, act) - self.critic.q_min(s_c, a_pi)
                w = torch.exp(adv / cfg.awr_beta).clamp(max=100.0)
            l_q = (w * (act - a_hat).pow(2).sum(-1)).mean() if a_hat is not None else (w * err).mean()
            logs["train/awr_weight"] = w.mean()
        logs.update({"loss/diffusion": l_d.detach(), "loss/q_term": l_q.detach()})
        return l_d + cfg.lam * l_q

    def _actor_step(self, obs, act) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        with torch.no_grad():
            s_c = self.critic.state(obs)
        s = self.actor["tracker"](obs)
        pi = self.actor["pi"]
        logs: dict[str, torch.Tensor] = {}
        if isinstance(pi, DiffusionActor):
            loss = self._diffusion_policy_loss(pi, s, s_c, obs, act, logs)
        elif isinstance(pi, GaussianActor):
            a, logp = pi(s, self.gen)
            alpha = self.log_alpha.exp().detach()
            loss = (alpha * logp - self.critic.q_min(s_c, a)).mean()
            alpha_loss = -(self.log_alpha * (logp.detach() - self.action_dim)).mean()  # target entropy -k
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
            logs["train/alpha"] = alpha
        else:
            loss = -self.critic.q(s_c, pi(s))[0].mean()
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
        self.actor_opt.step()
        logs["loss/actor"] = loss.detach()
        return logs

    @torch.no_grad()
    def _polyak(self) -> None:
        tau = self.cfg.tau
        for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            for p, tp in zip(net.parameters(), tgt.parameters(), strict=True):
                tp.lerp_(p, tau)

    def _energy_step(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        pi = self.actor["pi"]
        assert self.energy is not None and self.energy_opt is not None and isinstance(pi, DiffusionActor)
        m = cfg.energy_m
        obs = {key: v[: cfg.energy_batch] for key, v in obs.items()}
        with torch.no_grad():
            s_c = self.critic.state(obs)
            b = s_c.shape[0]
            cand = pi.sample(self.actor["tracker"](obs).repeat_interleave(m, 0), self.gen).view(b, m, -1)
            q = self.critic.q_min(s_c.repeat_interleave(m, 0), cand.reshape(b * m, -1)).view(b, m)
        loss = cep_loss(self.energy, pi.sched, s_c, cand, q, cfg.energy_beta, self.gen)
        self.energy_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.energy.parameters(), cfg.grad_clip)
        self.energy_opt.step()
        self.energy_grad_steps += 1
        return {"loss/energy": loss.detach()}

    def update(self, obs, act, rew, nobs, done, discount: torch.Tensor | float | None = None
               ) -> dict[str, torch.Tensor]:
        """One actor-critic update on a minibatch (normalised observations, actions in [-1, 1], scaled rewards;
        ``rew`` may be an n-step return whose bootstrap is discounted by ``discount``, default ``gamma``)."""
        discount = self.cfg.gamma if discount is None else discount
        logs = self._critic_step(obs, act, rew, nobs, done, discount)
        self.grad_steps += 1
        if self.grad_steps % self.cfg.actor_every == 0:
            logs.update(self._actor_step(obs, act))
            self._polyak()
        if self.energy is not None and self.grad_steps % max(1, self.cfg.energy_every) == 0:
            logs.update(self._energy_step(obs))
        return logs

    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        """``budget`` env steps of training (`recgym.agents.continuous`), with evaluations."""
        self.training = True
        learn_continuous(self, env, budget, logger, eval_env)

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        payload = {"agent": self.name, "config": self.cfg, "actor": self.actor.state_dict(),
                   "critic": self.critic.state_dict(), "actor_target": self.actor_target.state_dict(),
                   "critic_target": self.critic_target.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                   "critic_opt": self.critic_opt.state_dict(), "log_alpha": self.log_alpha.detach().cpu(),
                   "item_emb": self.item_emb.cpu(), "counters": [self.env_steps, self.grad_steps,
                                                                 self.energy_grad_steps, self.update_credit]}
        if self.energy is not None:
            payload["energy"] = self.energy.state_dict()
            payload["energy_opt"] = self.energy_opt.state_dict()
        save_checkpoint(path, payload, env=self.spec)

    def load(self, path: str | os.PathLike[str]) -> None:
        payload = load_checkpoint(path, self.name, env=self.spec)
        saved = payload.get("config", {})
        saved_tracker = saved.get("tracker") or {}
        checks = [(n, getattr(self.cfg, n), saved.get(n)) for n in ("algo", "actor", "n_diffusion_steps", "hidden")]
        checks += [(f"tracker.{n}", getattr(self.cfg.tracker, n), saved_tracker.get(n)) for n in ("kind", "emb_dim")]
        for n, have, got in checks:
            if got is not None and (tuple(got) if isinstance(got, list) else got) != have:
                raise ValueError(f"{self.name}: checkpoint {os.fspath(path)!r} has {n}={got!r}, this agent {have!r}")
        if tuple(payload["item_emb"].shape) != tuple(self.item_emb.shape):
            raise ValueError(f"{self.name}: checkpoint item embeddings {tuple(payload['item_emb'].shape)} do not "
                             f"match this agent's {tuple(self.item_emb.shape)}")
        if self.energy is not None and "energy" not in payload:
            raise ValueError(f"{self.name}: checkpoint {os.fspath(path)!r} has no energy model")
        for key in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, key).load_state_dict(payload[key])
        with torch.no_grad():
            self.log_alpha.copy_(payload["log_alpha"].to(self.device))
        self.item_emb = payload["item_emb"].to(self.device)
        env_steps, grad_steps, energy_steps, credit = payload["counters"]
        self.env_steps, self.grad_steps, self.energy_grad_steps = int(env_steps), int(grad_steps), int(energy_steps)
        self.update_credit = float(credit)
        if self.energy is not None:
            self.energy.load_state_dict(payload["energy"])
            self.energy_opt.load_state_dict(payload["energy_opt"])


_DIFF_TD3 = {"algo": "td3", "actor": "diffusion", "actor_every": 2}
# agent name -> its config defaults (variants of DAC4RecAgent; a caller's overrides win)
VARIANTS: dict[str, dict[str, Any]] = {
    "dac4rec": {"algo": "dac", "actor": "diffusion", "action_approx": True, "guidance_scale": 1.0},
    "dac4rec_noguide": {"algo": "dac", "actor": "diffusion", "action_approx": True, "guidance_scale": 0.0},
    "dac4rec_a": {"algo": "dac", "actor": "diffusion", "action_approx": False, "guidance_scale": 1.0},
    "dac4rec_awr": {"algo": "dac", "actor": "diffusion", "q_mode": "awr", "guidance_scale": 1.0},
    "sac": {"algo": "sac", "actor": "gaussian", "guidance_scale": 0.0},
    "td3": {"algo": "td3", "actor": "deterministic", "actor_every": 2, "guidance_scale": 0.0},
    "ddpg": {"algo": "ddpg", "actor": "deterministic", "guidance_scale": 0.0},
    "offline_sac": {"algo": "sac", "actor": "gaussian", "guidance_scale": 0.0, "train_mode": "offline"},
    "offline_td3": {"algo": "td3", "actor": "deterministic", "actor_every": 2, "guidance_scale": 0.0,
                    "train_mode": "offline"},
    "sac_diffusion": {"algo": "sac", "actor": "diffusion", "q_mode": "awr", "guidance_scale": 0.0},
    "sac_diffusion_energy": {"algo": "sac", "actor": "diffusion", "q_mode": "awr", "guidance_scale": 1.0},
    "td3_diffusion": {**_DIFF_TD3, "guidance_scale": 0.0},
    "td3_diffusion_energy": {**_DIFF_TD3, "guidance_scale": 1.0},
}


def _factory(name: str):
    def factory(env: Any, config: DAC4RecConfig) -> DAC4RecAgent:
        return DAC4RecAgent(env, config, name=name)

    factory.__doc__ = f"{name}: variant {VARIANTS[name]} of DAC4RecAgent (see recgym.agents.dac4rec)."
    return factory


for _name, _defaults in VARIANTS.items():
    register_agent(_name, DAC4RecConfig, _factory(_name), defaults=_defaults)
