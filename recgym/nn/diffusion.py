"""The one Gaussian noise schedule, sinusoidal timestep embedding and MLP builder of recgym's diffusion models.

Three models diffuse in recgym: DiffRec over interaction vectors (`recgym.recommenders.diffrec`), the R3S
diffusion world model over reward vectors (`recgym.worldmodels.diffusion`) and DAC4Rec's diffusion policy over
continuous actions (`recgym.agents.diffusion_policy`). They differ only in how the betas are laid out over
the T steps, so they share one `NoiseSchedule` parameterised by ``kind``:

- ``"linear"``: ``beta_t`` linear from ``low`` to ``high`` (DiffRec's ``--noise_schedule linear``);
- ``"linear-var"``: ``1 - alpha_bar_t`` linear from ``low`` to ``high`` (DiffRec's default, "Diffusion
  Recommender Models", arXiv:2304.04971), i.e. ``beta_0 = low`` and ``beta_t = 1 - alpha_bar_t /
  alpha_bar_{t-1}``;
- ``"vp"``: the discrete variance-preserving schedule of "Score-Based Generative Modeling through Stochastic
  Differential Equations" (arXiv:2011.13456) as used by Diffusion-QL (arXiv:2208.06193) and DAC4Rec, with
  ``low = beta_min`` and ``high = beta_max``: ``alpha_i = exp(-beta_min / N - (beta_max - beta_min)(2i - 1) /
  (2 N^2))``, i = 1..N.

Three optional adjustments reproduce each model's published variant: ``first_beta`` replaces ``beta_0``
(DiffRec's ``beta_fixed``: 1e-5), ``min_first_beta`` floors it (the world model: 1e-5) and ``max_beta`` caps
every ``beta_t`` (DiffRec: 0.999). From the betas follow the usual constants of "Denoising Diffusion
Probabilistic Models" (arXiv:2006.11239): ``alpha_bar``, the posterior q(x_{t-1} | x_t, x_0) mean coefficients
and variance. They are computed once in float64 numpy, kept as float64 tensors on the schedule's device and
cast to the caller's dtype when read, so every model sees the same numbers whatever its device.

Index ``t`` runs 0..T-1; ``t = 0`` is the least noisy step (its posterior variance is 0; like DDPM the clipped
log-variance of t = 0 is that of t = 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

SCHEDULE_KINDS: tuple[str, ...] = ("linear", "linear-var", "vp")

# the constants a schedule holds (float64), by the names DiffRec's code uses
CONSTANTS: tuple[str, ...] = (
    "betas",
    "alphas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


def _betas_alphas(kind: str, steps: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    if kind == "linear":
        betas = np.linspace(low, high, steps, dtype=np.float64)
        return betas, 1.0 - betas
    if kind == "linear-var":
        alpha_bar = 1.0 - np.linspace(low, high, steps, dtype=np.float64)
        betas = np.empty(steps, dtype=np.float64)
        betas[0] = 1.0 - alpha_bar[0]
        betas[1:] = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
        return betas, 1.0 - betas
    # vp: the alphas are the formula; the betas follow from them (not the other way round)
    i = np.arange(1, steps + 1, dtype=np.float64)
    alphas = np.exp(-low / steps - 0.5 * (high - low) * (2 * i - 1) / steps**2)
    return 1.0 - alphas, alphas


class NoiseSchedule:
    """Gaussian diffusion constants of one discrete noise schedule (see the module docstring for the kinds).

    ``array(name)`` gives a float64 numpy copy of a constant (`CONSTANTS`), ``table(name, dtype)`` the whole
    constant as a tensor on the schedule's device, ``get(name, t)`` its float32 values at steps ``t`` shaped
    ``[B, 1]`` (to broadcast over items). ``q_sample`` is the forward noising, ``snr`` the signal-to-noise ratio.
    """

    def __init__(self, kind: str, steps: int, low: float, high: float, *, first_beta: float | None = None,
                 min_first_beta: float | None = None, max_beta: float | None = None,
                 device: str | torch.device = "cpu") -> None:
        if kind not in SCHEDULE_KINDS:
            raise ValueError(f"noise schedule kind={kind!r}; valid kinds: {list(SCHEDULE_KINDS)}")
        if int(steps) < 1:
            raise ValueError(f"noise schedule steps={steps}, expected >= 1")
        if kind == "vp" and not 0.0 <= low <= high:
            raise ValueError(f"vp noise schedule needs 0 <= beta_min <= beta_max, got low={low}, high={high}")
        self.kind = kind
        self.steps = int(steps)
        betas, alphas = _betas_alphas(kind, self.steps, float(low), float(high))
        adjusted = max_beta is not None or first_beta is not None or min_first_beta is not None
        if max_beta is not None:
            betas[1:] = np.minimum(betas[1:], max_beta)
        if first_beta is not None:
            betas[0] = first_beta
        if min_first_beta is not None:
            betas[0] = max(float(betas[0]), min_first_beta)
        if adjusted:
            alphas = 1.0 - betas
        if not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError(f"invalid betas {betas} of the {kind!r} schedule (low={low}, high={high}): every "
                             "beta must lie in (0, 1]")
        ac = np.cumprod(alphas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        consts = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": ac,
            "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": np.sqrt(ac),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
            "posterior_variance": post_var,
            # t = 0 has zero posterior variance: its log-variance is clipped to t = 1's (DDPM)
            "posterior_log_variance_clipped": np.log(np.append(post_var[1] if self.steps > 1 else betas[0],
                                                               post_var[1:])),
            "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
        }
        self._np = consts
        self.device = torch.device(device)
        self._t = {k: torch.tensor(v, dtype=torch.float64, device=self.device) for k, v in consts.items()}

    def to(self, device: str | torch.device) -> NoiseSchedule:
        """Move the tensors to ``device`` (in place; returns self)."""
        self.device = torch.device(device)
        self._t = {k: v.to(self.device) for k, v in self._t.items()}
        return self

    def array(self, name: str) -> np.ndarray:
        """The float64 numpy array of one constant (a copy)."""
        if name not in self._np:
            raise KeyError(f"unknown schedule constant {name!r}; valid names: {list(CONSTANTS)}")
        return self._np[name].copy()

    def table(self, name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """One constant over all T steps as a ``dtype`` tensor on the schedule's device."""
        if name not in self._t:
            raise KeyError(f"unknown schedule constant {name!r}; valid names: {list(CONSTANTS)}")
        return self._t[name].to(dtype)

    def get(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``name[t]`` as float32 ``[B, 1]`` (broadcasts over items)."""
        return self._t[name][t].to(torch.float32)[:, None]

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``alpha_bar_t / (1 - alpha_bar_t)`` (float64)."""
        ac = self._t["alphas_cumprod"][t]
        return ac / (1.0 - ac)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward noising ``sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise`` (t: int64 [B])."""
        return self.get("sqrt_alphas_cumprod", t) * x0 + self.get("sqrt_one_minus_alphas_cumprod", t) * noise


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0,
                       sin_first: bool = False) -> torch.Tensor:
    """Sinusoidal embedding of diffusion steps ``t`` (any shape) as float32 ``[*t.shape, dim]``.

    ``dim // 2`` geometric frequencies ``f_j = max_period^(-j / (dim // 2))``; the halves are ``cos(t f)``
    then ``sin(t f)`` (DiffRec, the world model) or, with ``sin_first``, ``sin`` then ``cos`` (Diffusion-QL /
    DAC4Rec); an odd ``dim`` gets a trailing zero column.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1))
    args = t.to(torch.float32).unsqueeze(-1) * freqs
    emb = torch.cat([torch.sin(args), torch.cos(args)] if sin_first else [torch.cos(args), torch.sin(args)], -1)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(*emb.shape[:-1], 1)], -1)
    return emb


def mlp(inp: int, hidden: Sequence[int], out: int, activation: type[nn.Module] = nn.Mish) -> nn.Sequential:
    """``Linear -> activation`` for each hidden width, then a final ``Linear`` to ``out`` (no output activation)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, int(h)), activation()]
        inp = int(h)
    layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)
