"""A state-conditioned diffusion policy over continuous actions, and a contrastive energy model to guide it.

The reusable pieces of DAC4Rec (`recgym.agents.dac4rec`; "Energy-Guided Diffusion Sampling for Long-Term User
Behavior Prediction in Reinforcement Learning-based Recommendation", arXiv:2510.12815):

- `VPSchedule`: the discrete VP schedule used by Diffusion-QL (arXiv:2208.06193) and DAC4Rec (kind ``"vp"`` of
  `recgym.nn.diffusion.NoiseSchedule`), ``alpha_i = exp(-beta_min / N - 0.5 (beta_max - beta_min) (2i - 1) /
  N^2)``, i = 1..N (beta_min 0.1, beta_max 10), ``beta_i = 1 - alpha_i``, ``alpha_bar_i = prod_{j <= i}
  alpha_j``. (DAC4Rec prints the exponent without the leading minus sign; with it, beta_i is positive, as it
  must be.) Index ``i`` in the tensors below is 0-based: ``i = 0`` is the least noisy step.
- `DiffusionActor`: epsilon-model ``eps_theta(a_i, i, s)`` (an MLP on [a_i, time embedding, s], Mish), the
  denoising loss L_d (DAC4Rec eq. 8), *action approximation* (eq. 14, as in EDP, "Efficient Diffusion Policies
  for Offline Reinforcement Learning", arXiv:2305.20081: the one-step estimate ``a0_hat = (a_i - sqrt(1 -
  abar_i) eps_theta) / sqrt(abar_i)`` of a noised dataset action; `DiffusionActor.approx_action` bounds it),
  and the reverse chain (DDPM posterior mean
  with the predicted a0 clipped to the action box, posterior variance, no noise at the last step), optionally
  with gradients through the chain and with energy guidance.
- `EnergyModel`: ``f_psi(s, a_i, i)`` trained with the contrastive energy prediction (CEP) loss of "Contrastive
  Energy Prediction for Exact Energy-Guided Diffusion Sampling in Offline Reinforcement Learning"
  (arXiv:2304.12824) over M candidate actions per state, ``-sum_m softmax(beta Q(s, a_m)) log softmax_m f(s,
  a_m^i, i)`` (`cep_loss`); guided sampling replaces the score ``-eps / sqrt(1 - abar_i)`` by ``-eps / sqrt(1 -
  abar_i) + scale * grad_a f``, i.e. ``eps <- eps - scale * sqrt(1 - abar_i) * grad_a f``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from recgym.nn.diffusion import NoiseSchedule, mlp, timestep_embedding

GuideFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# VPSchedule's buffer names (kept: they are in saved DAC4Rec state dicts) and the schedule constant each holds
_VP_BUFFERS: tuple[tuple[str, str], ...] = (
    ("betas", "betas"), ("alphas", "alphas"), ("abar", "alphas_cumprod"), ("sqrt_abar", "sqrt_alphas_cumprod"),
    ("sqrt_1m_abar", "sqrt_one_minus_alphas_cumprod"), ("post_var", "posterior_variance"),
    ("post_c0", "posterior_mean_coef1"),  # coefficient of a0_hat in the posterior mean
    ("post_ct", "posterior_mean_coef2"),  # coefficient of a_i
)


class VPSchedule(nn.Module):
    """The VP schedule (`recgym.nn.diffusion.NoiseSchedule` kind ``"vp"``) with DDPM's posterior coefficients,
    as float32 buffers (they follow ``.to(device)``)."""

    def __init__(self, n_steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> None:
        super().__init__()
        if int(n_steps) < 1:
            raise ValueError(f"n_steps (diffusion steps N) must be >= 1, got {n_steps}")
        if not 0.0 <= beta_min <= beta_max:
            raise ValueError(f"need 0 <= beta_min <= beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        self.n_steps = int(n_steps)
        sched = NoiseSchedule("vp", self.n_steps, beta_min, beta_max)
        for name, const in _VP_BUFFERS:
            self.register_buffer(name, sched.table(const, torch.float32))

    def q_sample(self, a0: torch.Tensor, i: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``a_i = sqrt(abar_i) a0 + sqrt(1 - abar_i) noise`` (i: int64 [B], broadcast over the action dims)."""
        return _col(self.sqrt_abar, i, a0) * a0 + _col(self.sqrt_1m_abar, i, a0) * noise

    def predict_a0(self, a_i: torch.Tensor, i: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Action approximation (DAC4Rec eq. 14): the a0 that ``eps`` would have been added to."""
        return (a_i - _col(self.sqrt_1m_abar, i, a_i) * eps) / _col(self.sqrt_abar, i, a_i)


def _col(table: torch.Tensor, i: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return table[i].view(-1, *([1] * (like.dim() - 1)))


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of the diffusion step (sin half first, as Diffusion-QL) followed by a small MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.Mish(), nn.Linear(2 * dim, dim))

    def forward(self, i: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(i, self.dim, sin_first=True))


class DiffusionActor(nn.Module):
    """``eps_theta(a_i, i, s)`` plus the VP schedule: a diffusion policy over actions in ``[-max_action, max_action]^k``."""

    def __init__(self, state_dim: int, action_dim: int, n_steps: int = 10, hidden: tuple[int, ...] = (128, 128),
                 beta_min: float = 0.1, beta_max: float = 10.0, max_action: float = 1.0, t_dim: int = 16) -> None:
        super().__init__()
        if state_dim < 0 or action_dim < 1:
            raise ValueError(f"need state_dim >= 0 and action_dim >= 1, got {state_dim}, {action_dim}")
        self.action_dim = int(action_dim)
        self.max_action = float(max_action)
        self.sched = VPSchedule(n_steps, beta_min, beta_max)
        self.time = TimeEmbedding(t_dim)
        self.net = mlp(action_dim + t_dim + state_dim, hidden, action_dim)

    @property
    def n_steps(self) -> int:
        return self.sched.n_steps

    def eps(self, a_i: torch.Tensor, i: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a_i, self.time(i), s], -1))

    def denoise_terms(self, a0: torch.Tensor, s: torch.Tensor, gen: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noise dataset actions at a uniform step: per-row squared eps error [B], a0_hat [B, k], step i [B]."""
        b = a0.shape[0]
        i = torch.randint(self.n_steps, (b,), generator=gen, device=a0.device)
        noise = torch.randn(a0.shape, generator=gen, device=a0.device)
        a_i = self.sched.q_sample(a0, i, noise)
        eps = self.eps(a_i, i, s)
        err = (eps - noise).pow(2).mean(-1)
        return err, self.sched.predict_a0(a_i, i, eps), i

    def approx_action(self, a0: torch.Tensor, s: torch.Tensor, gen: torch.Generator | None = None,
                      max_step: int | None = None) -> torch.Tensor:
        """Bounded action approximation: ``a0_hat`` (eq. 14) from ``a0`` noised at a step drawn uniformly from
        the first ``max_step`` steps (default all N), clipped to the action box.

        Over all N steps the estimate divides by ``sqrt(abar_i)`` (0.08 at i = N with beta_max 10), so an
        untrained epsilon model hands the critic actions of norm ~50 where the data's are ~1; small steps keep
        the estimate near the data and the clip keeps it inside the box the critic is trained on.
        """
        b = a0.shape[0]
        hi = self.n_steps if max_step is None else max(1, min(int(max_step), self.n_steps))
        i = torch.randint(hi, (b,), generator=gen, device=a0.device)
        noise = torch.randn(a0.shape, generator=gen, device=a0.device)
        a_i = self.sched.q_sample(a0, i, noise)
        a0_hat = self.sched.predict_a0(a_i, i, self.eps(a_i, i, s))
        return a0_hat.clamp(-self.max_action, self.max_action)

    def sample(self, s: torch.Tensor, gen: torch.Generator | None = None, guide: GuideFn | None = None,
               scale: float = 0.0, grad: bool = False, clip_denoised: bool = True) -> torch.Tensor:
        """Run the reverse chain from N(0, I) for each state row; ``grad=True`` keeps the autograd graph.

        ``guide(a_i, i, s) -> grad_a f`` (same shape as ``a_i``) with ``scale != 0`` adds energy guidance.
        """
        sch = self.sched
        b, dev = s.shape[0], s.device
        x = torch.randn((b, self.action_dim), generator=gen, device=dev)
        ctx = torch.enable_grad() if grad else torch.no_grad()
        with ctx:
            for k in reversed(range(self.n_steps)):
                i = torch.full((b,), k, dtype=torch.long, device=dev)
                eps = self.eps(x, i, s)
                if guide is not None and scale != 0.0:
                    eps = eps - float(scale) * sch.sqrt_1m_abar[k] * guide(x.detach(), i, s.detach())
                a0 = sch.predict_a0(x, i, eps)
                if clip_denoised:
                    a0 = a0.clamp(-self.max_action, self.max_action)
                mean = sch.post_c0[k] * a0 + sch.post_ct[k] * x
                if k > 0:
                    x = mean + sch.post_var[k].sqrt() * torch.randn((b, self.action_dim), generator=gen, device=dev)
                else:
                    x = mean
        return x.clamp(-self.max_action, self.max_action)


class EnergyModel(nn.Module):
    """``f_psi(s, a_i, i)``: the intermediate energy that guides the reverse chain towards high-Q actions."""

    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, ...] = (128, 128), t_dim: int = 16) -> None:
        super().__init__()
        self.time = TimeEmbedding(t_dim)
        self.net = mlp(action_dim + t_dim + state_dim, hidden, 1)

    def forward(self, s: torch.Tensor, a: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, self.time(i), s], -1)).squeeze(-1)

    def grad_a(self, a: torch.Tensor, i: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``grad_a f_psi(s, a, i)`` (a `GuideFn`); works inside ``torch.no_grad`` blocks."""
        with torch.enable_grad():
            a = a.detach().requires_grad_(True)
            f = self(s.detach(), a, i).sum()
            (g,) = torch.autograd.grad(f, a)
        return g


def cep_loss(energy: EnergyModel, sched: VPSchedule, s: torch.Tensor, cand: torch.Tensor, q: torch.Tensor,
             beta: float = 3.0, gen: torch.Generator | None = None) -> torch.Tensor:
    """Contrastive energy prediction: ``-sum_m softmax(beta q)_m log softmax_m f(s, a_m^i, i)``, mean over states.

    ``s`` [B, ds], ``cand`` [B, M, k] clean candidate actions, ``q`` [B, M] their values. One diffusion step per
    state (shared by its M candidates, so the softmax compares actions at the same noise level).
    """
    if cand.dim() != 3 or q.shape != cand.shape[:2] or s.shape[0] != cand.shape[0]:
        raise ValueError(f"cep_loss: need s [B, ds], cand [B, M, k], q [B, M]; got {tuple(s.shape)}, "
                         f"{tuple(cand.shape)}, {tuple(q.shape)}")
    b, m, k = cand.shape
    i = torch.randint(sched.n_steps, (b,), generator=gen, device=cand.device).repeat_interleave(m)
    noise = torch.randn((b * m, k), generator=gen, device=cand.device)
    a_i = sched.q_sample(cand.reshape(b * m, k), i, noise)
    f = energy(s.repeat_interleave(m, 0), a_i, i).view(b, m)
    target = torch.softmax(beta * q.detach(), -1)
    return -(target * torch.log_softmax(f, -1)).sum(-1).mean()
