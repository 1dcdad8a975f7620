"""DAC4Rec: offline diffusion-policy actor-critic for rec envs, and its SAC / TD3 siblings.

DAC4Rec: Chen, Wang & Yao, "Energy-Guided Diffusion Sampling for Long-Term User Behavior Prediction in
Reinforcement Learning-based Recommendation" (arXiv:2510.12815).

Offline: trained only on the training logs, turned into trajectories by `recgym.agents.logged` (each user's
interactions in time order, else a seeded random order, cut into episodes of the env's ``max_turn``; the state
is a tracker over the previous items, exactly the env's observation layout). The env given to ``learn`` is only
used for evaluation. ``budget`` counts actor-critic gradient steps; the energy model then takes ``energy_steps``
more (Algorithm 1 of the paper: step 1 actor-critic, step 2 energy).

**Action space.** A continuous action ``a`` in ``[-1, 1]^k`` (k = ``action_dim``, 16) is mapped to the item
``argmax_i <e_i, a>`` among the allowed items (``info["action_mask"]``), the rule of
`recgym.envs.sb3.ContinuousItemActionWrapper`, with the same embeddings by default (``action_emb="gt_svd"``:
`svd_item_embeddings` of the env's ground-truth matrix, exactly what the wrapper builds, so the two agree item
for item). NB: those embeddings carry item-similarity knowledge from the evaluation matrix; ``"train_svd"``
takes the SVD of the (user x item) training-log matrix instead (no ground-truth knowledge). A logged action
is its item's embedding ``e_item``. ``meta["self_recovery"]`` reports the share of items ``i`` that the argmax
rule maps ``e_i`` back to (with dot products an item can be shadowed by a longer neighbour).

**Networks.** Actor and critic each own a state tracker (`recgym.agents.trackers`, GRU by default, ``sasrec``
option; with the user's logged profile, ``profile=True``): the critic's is trained by the TD loss, the actor's
by the policy loss. Twin critics ``Q1, Q2`` (MLPs on [s, a]) with Polyak-averaged targets (``tau``); TD
targets use ``min(Q1', Q2')``. The diffusion actor is `recgym.agents.diffusion_policy.DiffusionActor` (VP
schedule beta_min 0.1, beta_max 10, ``n_diffusion_steps`` N).

**Backbones** (``algo``) and actors (``actor``):

- ``dac`` (DAC4Rec): next actions for the TD target sampled from the *target* diffusion actor (eq. 20);
  policy loss ``L_d + lam * L_q`` every step. ``L_q``:
  ``q_mode="direct"``: ``-Q(s, a0_hat) / mean|Q|`` (the Diffusion-QL / TD3+BC normalisation) with
  ``a0_hat`` the *action approximation* (eq. 14, EDP: one-step estimate from the dataset action noised at a
  uniform step) when ``action_approx``, else a full reverse-chain sample with gradients through all N steps
  (the paper's DAC4Rec-A ablation); ``q_mode="awr"`` (likelihood-based): ``mean(w ||a - a0_hat||^2)``
  (eq. 19) with ``w = min(exp((Q(s, a) - V(s)) / awr_beta), 100)``, ``V(s) = Q(s, a~pi_target(s))``; without
  action approximation the weighted denoising loss ``mean(w ||eps - eps_theta||^2)`` (eq. 18 with the DDPM
  constant dropped, i.e. L_simple).
- ``td3``: target policy smoothing (noise 0.2 clipped at 0.5) on the target actor's action, actor updated
  every ``actor_every`` (2) steps. With ``actor="deterministic"``: plain TD3 (``-Q1(s, pi(s))``). With
  ``actor="diffusion"`` (TD3+Diffusion): the diffusion actor with DAC4Rec's policy loss (direct).
- ``sac``: next actions from the *current* actor; ``actor="gaussian"``: plain SAC (tanh-Gaussian, entropy
  bonus with learned temperature, target entropy -k). ``actor="diffusion"`` (SAC+Diffusion): a diffusion
  log-likelihood is intractable, so the entropy term is dropped and soft policy improvement is done in its
  likelihood form, ``pi ~ mu exp(Q / awr_beta)``, i.e. ``q_mode="awr"``; evaluation samples the policy.
- **Energy guidance** (``guidance_scale > 0``, diffusion actors only): after the actor-critic phase, the
  energy model ``f_psi(s, a_i, i)`` (on the critic's state) is trained with the CEP loss over ``energy_m`` (16)
  candidate actions sampled from the actor, ``beta = energy_beta`` (3), ``Q = min(Q1, Q2)``; acting then adds
  ``guidance_scale * grad_a f_psi`` to the score along the reverse chain (`diffusion_policy` docstring).

Registered agents (`VARIANTS` of the one class: each its own config defaults; every field can still be
overridden): ``dac4rec``,
``dac4rec_noguide``, ``dac4rec_a``, ``dac4rec_awr``, ``offline_sac``, ``offline_td3``, ``sac_diffusion``,
``sac_diffusion_energy``, ``td3_diffusion``, ``td3_diffusion_energy``. The "SAC" and "TD3" rows of the
paper's tables are ``offline_sac`` / ``offline_td3`` here (same data, trackers and critics as DAC4Rec, so the
rows differ only in the actor); the SB3 online agents are ``sb3_sac`` / ``sb3_td3``.

Rewards are divided by the reward span (``normalize_reward``); gamma 0.9 as in DORL. Acting is batched on the
device; all randomness comes from seeded ``torch.Generator``s (training and acting streams), so the same seed
gives the same agent and the same actions.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.base import AgentConfig, BudgetUnit, register_agent
from recgym.agents.common import (
    EvalRecorder,
    action_mask,
    base_env,
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
from recgym.agents.diffusion_policy import DiffusionActor, EnergyModel, cep_loss
from recgym.agents.logged import ORDERS, LoggedTransitions, build_logged_transitions
from recgym.agents.trackers import TrackerConfig, make_tracker
from recgym.nn.diffusion import mlp as mish_mlp

ALGOS = ("dac", "sac", "td3")
ACTORS = ("diffusion", "gaussian", "deterministic")
Q_MODES = ("direct", "awr")
ACTION_EMBS = ("gt_svd", "train_svd")


@dataclass
class DAC4RecConfig(AgentConfig):
    """Hyper-parameters of DAC4Rec and of its SAC / TD3 siblings (see the module docstring)."""

    budget_unit: ClassVar[BudgetUnit] = "gradient_steps"

    algo: str = "dac"  # one of ALGOS (critic backbone)
    actor: str = "diffusion"  # one of ACTORS
    action_approx: bool = True  # one-step a0 estimate (EDP) instead of backprop through the chain
    q_mode: str = "direct"  # one of Q_MODES: backprop Q ("direct") or AWR-weighted likelihood ("awr")
    lam: float = 1.0  # weight of L_q in L_d + lam * L_q
    awr_beta: float = 1.0  # AWR temperature: w = exp(A / awr_beta)
    n_diffusion_steps: int = 10  # N (paper: 100; see the benchmark for N=10 vs 100)
    beta_min: float = 0.1
    beta_max: float = 10.0
    guidance_scale: float = 1.0  # energy guidance scale (0 = off, no energy model trained)
    energy_m: int = 16  # candidate actions per state in the CEP loss
    energy_beta: float = 3.0
    energy_steps: int = -1  # energy-model gradient steps after the actor-critic phase (-1 = budget // 4)
    energy_batch: int = 64  # states per energy step (each with energy_m candidates)
    action_emb: str = "gt_svd"  # one of ACTION_EMBS (item embeddings of the action space)
    action_dim: int = 16
    batch_size: int = 256
    lr: float = 3e-4
    gamma: float = 0.9
    tau: float = 0.005  # Polyak rate of the target networks
    hidden: tuple[int, ...] = (128, 128)
    actor_every: int = 1  # actor update every k critic updates (TD3: 2)
    policy_noise: float = 0.2  # td3 target smoothing
    noise_clip: float = 0.5
    init_alpha: float = 0.2  # sac temperature (learned)
    grad_clip: float = 10.0
    normalize_reward: bool = True
    order: str = "time"  # logged-trajectory order, one of logged.ORDERS
    episode_len: int = 0  # 0 = the env's max_turn
    # GRU over the history, with the user's logged profile (recgym.agents.trackers); one per actor and critic
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
        u = mean + std * noise
        a = torch.tanh(u)
        logp = (-0.5 * noise.pow(2) - std.log() - 0.5 * np.log(2 * np.pi)).sum(-1)
        logp = logp - torch.log1p(-a.pow(2) + 1e-6).sum(-1)
        return a, logp


class DeterministicActor(nn.Module):
    """tanh(MLP(s)) (TD3)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mish_mlp(state_dim, hidden, action_dim)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(s))


class TwinCritic(nn.Module):
    """Tracker + Q1, Q2 on [s, a]."""

    def __init__(self, tracker: nn.Module, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.tracker = tracker
        self.q1 = mish_mlp(tracker.out_dim + action_dim, hidden, 1)
        self.q2 = mish_mlp(tracker.out_dim + action_dim, hidden, 1)

    def q(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([s, a], -1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def q_min(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        q1, q2 = self.q(s, a)
        return torch.minimum(q1, q2)


def train_matrix_embeddings(dataset: Any, n_items: int, k: int) -> torch.Tensor:
    """SVD item embeddings of the (user x item) training-log reward matrix (0 = unobserved)."""
    from recgym.envs.sb3 import svd_item_embeddings

    df = dataset.train
    n_users = int(max(int(df["user"].max()) + 1, getattr(dataset, "n_users", 0) or 0))
    mat = np.zeros((n_users, n_items), dtype=np.float32)
    mat[df["user"].to_numpy(np.int64), df["item"].to_numpy(np.int64)] = df["reward"].to_numpy(np.float32)
    return svd_item_embeddings(mat, k)


def items_for_actions(actions: torch.Tensor, item_emb: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``argmax_i <e_i, a>`` over the allowed items (``mask`` True = allowed), as the SB3 continuous wrapper."""
    scores = actions @ item_emb.T
    if mask is not None:
        scores = masked_logits(scores, mask)
    return scores.argmax(-1)


class DAC4RecAgent:
    """Offline actor-critic with a diffusion (or Gaussian / deterministic) actor; see the module docstring."""

    def __init__(self, env: Any, cfg: DAC4RecConfig, name: str = "dac4rec",
                 item_embeddings: torch.Tensor | np.ndarray | None = None) -> None:
        self.name = name
        self.cfg = cfg
        check_choice(name, "algo", cfg.algo, ALGOS)
        check_choice(name, "actor", cfg.actor, ACTORS)
        check_choice(name, "q_mode", cfg.q_mode, Q_MODES)
        check_choice(name, "action_emb", cfg.action_emb, ACTION_EMBS)
        check_choice(name, "order", cfg.order, ORDERS)
        for fname in ("n_diffusion_steps", "energy_m", "energy_batch", "action_dim", "batch_size", "actor_every"):
            if int(getattr(cfg, fname)) < 1:
                raise ValueError(f"{name}: {fname} must be >= 1, got {getattr(cfg, fname)}")
        if cfg.guidance_scale < 0:
            raise ValueError(f"{name}: guidance_scale must be >= 0 (0 = off), got {cfg.guidance_scale}")
        if cfg.guidance_scale > 0 and cfg.actor != "diffusion":
            raise ValueError(f"{name}: energy guidance (guidance_scale={cfg.guidance_scale}) needs actor='diffusion', "
                             f"got actor={cfg.actor!r}")
        if cfg.awr_beta <= 0 or not 0 < cfg.tau <= 1:
            raise ValueError(f"{name}: need awr_beta > 0 and 0 < tau <= 1, got {cfg.awr_beta}, {cfg.tau}")
        self.spec = spec = rec_env_spec(env, name)
        self.dataset = require_dataset(spec, name)
        self.device = dev = spec.device
        self.item_emb = self._item_embeddings(env, item_embeddings).to(dev)
        k = int(self.item_emb.shape[1])
        self.action_dim = k
        tcfg = cfg.tracker
        hidden = tuple(int(h) for h in cfg.hidden)

        def tracker() -> nn.Module:
            return make_tracker(tcfg, spec.n_users, spec.n_items, spec.history_len, spec.reward_range,
                                spec.max_turn, self.dataset)

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
            self.critic = TwinCritic(tracker(), k, hidden).to(dev)
            self.energy = EnergyModel(self.critic.tracker.out_dim, k, hidden).to(dev) if cfg.guidance_scale > 0 \
                else None
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)
        self.energy_opt = torch.optim.Adam(self.energy.parameters(), lr=cfg.lr) if self.energy is not None else None
        self.log_alpha = torch.tensor(float(np.log(cfg.init_alpha)), device=dev, requires_grad=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr)
        self.gen = generator(cfg.seed, dev)
        self.act_gen = generator(cfg.seed + 7919, dev)
        span = spec.reward_range[1] - spec.reward_range[0]
        self.reward_scale = 1.0 / span if (cfg.normalize_reward and span > 0) else 1.0
        self.history: list[dict[str, float]] = []
        self.grad_steps = 0
        self.energy_grad_steps = 0
        self.training = True
        recovered = items_for_actions(self.item_emb, self.item_emb, None)
        self.meta = {"self_recovery": float((recovered == torch.arange(spec.n_items, device=dev)).float().mean()),
                     "action_dim": k, "action_emb": cfg.action_emb if item_embeddings is None else "given"}
        self._data: LoggedTransitions | None = None

    # -- setup --------------------------------------------------------------------------------------------
    def _item_embeddings(self, env: Any, given: Any) -> torch.Tensor:
        n_items = self.spec.n_items
        if given is not None:
            emb = torch.as_tensor(np.asarray(given) if not isinstance(given, torch.Tensor) else given).float()
            if emb.dim() != 2 or emb.shape[0] != n_items:
                raise ValueError(f"{self.name}: item_embeddings must be [n_items={n_items}, k], got {tuple(emb.shape)}")
            return emb
        if self.cfg.action_emb == "train_svd":
            return train_matrix_embeddings(self.dataset, n_items, self.cfg.action_dim)
        from recgym.envs.sb3 import svd_item_embeddings

        gt = getattr(base_env(env), "gt", None)
        if gt is None:
            raise ValueError(f"{self.name}: action_emb='gt_svd' needs an env with a ground-truth matrix (`gt`); "
                             "use action_emb='train_svd' or pass item_embeddings")
        return svd_item_embeddings(gt.float().cpu(), self.cfg.action_dim)

    def transitions(self) -> LoggedTransitions:
        if self._data is None:
            ep_len = self.cfg.episode_len or self.spec.max_turn
            self._data = build_logged_transitions(self.dataset, self.spec.history_len, ep_len, self.cfg.order,
                                                  self.cfg.seed, self.device)
        return self._data

    # -- policy -------------------------------------------------------------------------------------------
    def _guide(self, s_critic: torch.Tensor):
        energy = self.energy

        def guide(a: torch.Tensor, i: torch.Tensor, _s: torch.Tensor) -> torch.Tensor:
            return energy.grad_a(a, i, s_critic)

        return guide

    def policy_action(self, obs: dict[str, torch.Tensor], gen: torch.Generator | None = None,
                      guidance_scale: float | None = None) -> torch.Tensor:
        """Continuous actions [B, k] for a batch of observations (greedy for Gaussian; guided when enabled).

        Diffusion noise comes from ``gen`` (default: the agent's seeded acting generator).
        """
        gen = self.act_gen if gen is None else gen
        obs = to_device_obs(obs, self.device)
        s = self.actor["tracker"](obs)
        pi = self.actor["pi"]
        if isinstance(pi, DiffusionActor):
            scale = self.cfg.guidance_scale if guidance_scale is None else float(guidance_scale)
            guide = None
            if scale > 0 and self.energy is not None and self.energy_grad_steps > 0:
                guide = self._guide(self.critic.tracker(obs))
            return pi.sample(s, gen, guide=guide, scale=scale)
        if isinstance(pi, GaussianActor):
            return pi(s, deterministic=True)[0]
        return pi(s)

    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        """Item ids int64 [B]: the policy's action mapped to the nearest allowed item (dot product)."""
        obs = to_device_obs(obs, self.device)
        a = self.policy_action(obs, self.act_gen)
        mask = action_mask(info, a.shape[0], self.spec.n_items, self.device)
        return items_for_actions(a, self.item_emb, mask)

    # -- training -----------------------------------------------------------------------------------------
    def _next_action(self, nobs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Next actions for the TD target and their log-probs (0 unless SAC with a Gaussian actor)."""
        cfg = self.cfg
        zero = torch.zeros(nobs["step"].shape[0], device=self.device)
        if cfg.algo == "sac":
            s = self.actor["tracker"](nobs)
            pi = self.actor["pi"]
            if isinstance(pi, GaussianActor):
                return pi(s, self.gen)
            if isinstance(pi, DiffusionActor):
                return pi.sample(s, self.gen), zero
            return pi(s), zero
        s = self.actor_target["tracker"](nobs)
        pi = self.actor_target["pi"]
        if isinstance(pi, DiffusionActor):
            a = pi.sample(s, self.gen)
        elif isinstance(pi, GaussianActor):
            a = pi(s, self.gen)[0]
        else:
            a = pi(s)
        if cfg.algo == "td3":
            noise = (torch.randn(a.shape, generator=self.gen, device=self.device) * cfg.policy_noise)
            a = (a + noise.clamp(-cfg.noise_clip, cfg.noise_clip)).clamp(-1.0, 1.0)
        return a, zero

    def _critic_step(self, obs, act, rew, nobs, done) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        with torch.no_grad():
            a_next, logp_next = self._next_action(nobs)
            q_next = self.critic_target.q_min(self.critic_target.tracker(nobs), a_next)
            if cfg.algo == "sac" and cfg.actor == "gaussian":
                q_next = q_next - self.log_alpha.exp() * logp_next
            y = rew + cfg.gamma * (~done).float() * q_next
        q1, q2 = self.critic.q(self.critic.tracker(obs), act)
        loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.critic_opt.step()
        return {"loss/critic": loss.detach(), "train/q_mean": q1.detach().mean()}

    def _actor_step(self, obs, act) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        with torch.no_grad():
            s_c = self.critic.tracker(obs)
        s = self.actor["tracker"](obs)
        pi = self.actor["pi"]
        logs: dict[str, torch.Tensor] = {}
        if isinstance(pi, DiffusionActor):
            err, a0_hat, _ = pi.denoise_terms(act, s, self.gen)
            l_d = err.mean()
            if cfg.q_mode == "direct":
                a_q = a0_hat if cfg.action_approx else pi.sample(s, self.gen, grad=True)
                q = self.critic.q_min(s_c, a_q)
                l_q = -q.mean() / q.abs().mean().detach().clamp_min(1e-6)
            else:
                with torch.no_grad():
                    a_pi = self.actor_target["pi"].sample(self.actor_target["tracker"](obs), self.gen)
                    adv = self.critic.q_min(s_c, act) - self.critic.q_min(s_c, a_pi)
                    w = torch.exp(adv / cfg.awr_beta).clamp(max=100.0)
                if cfg.action_approx:
                    l_q = (w * (act - a0_hat).pow(2).sum(-1)).mean()
                else:
                    l_q = (w * err).mean()
                logs["train/awr_weight"] = w.mean()
            loss = l_d + cfg.lam * l_q
            logs.update({"loss/diffusion": l_d.detach(), "loss/q_term": l_q.detach()})
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

    def _energy_step(self, obs) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        pi = self.actor["pi"]
        assert self.energy is not None and self.energy_opt is not None and isinstance(pi, DiffusionActor)
        m = cfg.energy_m
        with torch.no_grad():
            s_c = self.critic.tracker(obs)
            s_a = self.actor["tracker"](obs)
            b = s_c.shape[0]
            cand = pi.sample(s_a.repeat_interleave(m, 0), self.gen).view(b, m, -1)
            q = self.critic.q_min(s_c.repeat_interleave(m, 0), cand.reshape(b * m, -1)).view(b, m)
        loss = cep_loss(self.energy, pi.sched, s_c, cand, q, cfg.energy_beta, self.gen)
        self.energy_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.energy.parameters(), cfg.grad_clip)
        self.energy_opt.step()
        return {"loss/energy": loss.detach()}

    @staticmethod
    def _log(logs: dict[str, torch.Tensor], step: int, logger: Any, bar: Any) -> None:
        """Logs are kept as device tensors and read (one sync) only every 50 steps."""
        values = {k: float(v) for k, v in logs.items()}
        log_scalars(logger, values, step)
        bar.set_postfix({k.split("/")[-1]: round(v, 3) for k, v in values.items()})

    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        """``budget`` actor-critic gradient steps on the logs, then the energy phase; evaluate at the end."""
        cfg = self.cfg
        data = self.transitions()
        target_env = evaluation_env_for(env, eval_env, cfg.eval_episodes)
        recorder = EvalRecorder(self, cfg.eval_episodes, cfg.seed)
        n = len(data)
        budget = int(budget)
        e_steps = (budget // 4 if cfg.energy_steps < 0 else int(cfg.energy_steps)) if self.energy is not None else 0
        bar = progress(budget + e_steps, self.name, cfg.progress)
        for k in range(budget):
            idx = torch.randint(n, (min(cfg.batch_size, n),), generator=self.gen, device=self.device)
            obs, item, rew, nobs, done = data.batch(idx)
            act = self.item_emb[item]
            logs = self._critic_step(obs, act, rew * self.reward_scale, nobs, done)
            if (self.grad_steps + 1) % cfg.actor_every == 0:
                logs.update(self._actor_step(obs, act))
                self._polyak()
            self.grad_steps += 1
            bar.update(1)
            if k % 50 == 0 or k == budget - 1:
                self._log(logs, self.grad_steps, logger, bar)
            if cfg.eval_every > 0 and self.grad_steps % cfg.eval_every == 0 and k < budget - 1:
                recorder(target_env, self.grad_steps, logger)
        for k in range(e_steps):
            idx = torch.randint(n, (min(cfg.energy_batch, n),), generator=self.gen, device=self.device)
            logs = self._energy_step(data.batch(idx)[0])
            self.energy_grad_steps += 1
            bar.update(1)
            if k % 50 == 0 or k == e_steps - 1:
                self._log(logs, self.grad_steps + self.energy_grad_steps, logger, bar)
        bar.close()
        if budget + e_steps > 0:
            recorder(target_env, self.grad_steps, logger)

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        payload = {"agent": self.name, "config": self.cfg, "actor": self.actor.state_dict(),
                   "critic": self.critic.state_dict(), "actor_target": self.actor_target.state_dict(),
                   "critic_target": self.critic_target.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                   "critic_opt": self.critic_opt.state_dict(), "log_alpha": self.log_alpha.detach().cpu(),
                   "item_emb": self.item_emb.cpu(), "grad_steps": self.grad_steps,
                   "energy_grad_steps": self.energy_grad_steps}
        if self.energy is not None:
            payload["energy"] = self.energy.state_dict()
            payload["energy_opt"] = self.energy_opt.state_dict()
        save_checkpoint(path, payload, env=self.spec)

    def load(self, path: str | os.PathLike[str]) -> None:
        payload = load_checkpoint(path, self.name, env=self.spec)
        saved = payload.get("config", {})
        saved_tracker = saved.get("tracker") or {}
        checks = [(name, getattr(self.cfg, name), saved.get(name))
                  for name in ("algo", "actor", "n_diffusion_steps", "action_dim", "hidden")]
        checks += [(f"tracker.{name}", getattr(self.cfg.tracker, name), saved_tracker.get(name))
                   for name in ("kind", "emb_dim")]
        for name, have, got in checks:
            if got is not None and (tuple(got) if isinstance(got, list) else got) != have:
                raise ValueError(f"{self.name}: checkpoint {os.fspath(path)!r} has {name}={got!r}, this agent {have!r}")
        if tuple(payload["item_emb"].shape) != tuple(self.item_emb.shape):
            raise ValueError(f"{self.name}: checkpoint item embeddings {tuple(payload['item_emb'].shape)} do not "
                             f"match the env's {tuple(self.item_emb.shape)}")
        self.actor.load_state_dict(payload["actor"])
        self.critic.load_state_dict(payload["critic"])
        self.actor_target.load_state_dict(payload["actor_target"])
        self.critic_target.load_state_dict(payload["critic_target"])
        self.actor_opt.load_state_dict(payload["actor_opt"])
        self.critic_opt.load_state_dict(payload["critic_opt"])
        with torch.no_grad():
            self.log_alpha.copy_(payload["log_alpha"].to(self.device))
        self.item_emb = payload["item_emb"].to(self.device)
        self.grad_steps = int(payload["grad_steps"])
        self.energy_grad_steps = int(payload["energy_grad_steps"])
        if self.energy is not None:
            if "energy" not in payload:
                raise ValueError(f"{self.name}: checkpoint {os.fspath(path)!r} has no energy model")
            self.energy.load_state_dict(payload["energy"])
            self.energy_opt.load_state_dict(payload["energy_opt"])


# agent name -> its config defaults (variants of DAC4RecAgent; a caller's overrides win)
VARIANTS: dict[str, dict[str, Any]] = {
    "dac4rec": {"algo": "dac", "actor": "diffusion", "action_approx": True, "guidance_scale": 1.0},
    "dac4rec_noguide": {"algo": "dac", "actor": "diffusion", "action_approx": True, "guidance_scale": 0.0},
    "dac4rec_a": {"algo": "dac", "actor": "diffusion", "action_approx": False, "guidance_scale": 1.0},
    "dac4rec_awr": {"algo": "dac", "actor": "diffusion", "q_mode": "awr", "guidance_scale": 1.0},
    "offline_sac": {"algo": "sac", "actor": "gaussian", "guidance_scale": 0.0},
    "offline_td3": {"algo": "td3", "actor": "deterministic", "actor_every": 2, "guidance_scale": 0.0},
    "sac_diffusion": {"algo": "sac", "actor": "diffusion", "q_mode": "awr", "guidance_scale": 0.0},
    "sac_diffusion_energy": {"algo": "sac", "actor": "diffusion", "q_mode": "awr", "guidance_scale": 1.0},
    "td3_diffusion": {"algo": "td3", "actor": "diffusion", "actor_every": 2, "guidance_scale": 0.0},
    "td3_diffusion_energy": {"algo": "td3", "actor": "diffusion", "actor_every": 2, "guidance_scale": 1.0},
}


def _factory(name: str):
    def factory(env: Any, config: DAC4RecConfig) -> DAC4RecAgent:
        return DAC4RecAgent(env, config, name=name)

    factory.__doc__ = f"{name}: variant {VARIANTS[name]} of DAC4RecAgent (see recgym.agents.dac4rec)."
    return factory


for _name, _defaults in VARIANTS.items():
    register_agent(_name, DAC4RecConfig, _factory(_name), defaults=_defaults)
