"""DiffRec: a diffusion recommender over user interaction vectors ("Diffusion Recommender Models",
arXiv:2304.04971; the architecture and defaults follow its public code, the implementation is recgym's own).

- `DiffRecConfig` / `default_config`: the hyper-parameters (ML-1M clean settings by default, a small fast model
  for the small catalogues).
- `DiffRecDenoiser`: the x0-predicting MLP. A 10-d sinusoidal step embedding goes through a linear layer and is
  concatenated with the (dropout-0.5) interaction vector; ``n_items + 10 -> 600 -> 200 -> 600 -> n_items``
  with tanh between layers (DiffRec's ``--dims [200,600]``).
- `diffrec_schedule`: DiffRec's ``linear-var`` (or ``linear``) schedule as a `recgym.nn.diffusion.NoiseSchedule`
  (``1 - alpha_bar_t`` linear from ``noise_scale*noise_min`` to ``noise_scale*noise_max``, betas capped at
  0.999, beta_0 forced to 1e-5 with ``beta_fixed``).
- `DiffRec`: denoiser + schedule. ``posterior_mean``, ``posterior_std``, ``log_prob`` (the frozen model's
  Gaussian policy over a transition, used by the chain fine-tuners), ``sample`` (the reverse chain) and
  ``predict`` (DiffRec inference: start at the clean history, no noise, all T posterior-mean steps); checkpoints
  embed the config and the dataset fingerprint, so one made for other data or another config is refused.
- `evaluate_diffrec`: the ranking protocol of `recgym.recommenders.ranking` applied to ``predict``.

Training and the checkpoint cache are in `recgym.recommenders.train`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recgym.nn.diffusion import NoiseSchedule, timestep_embedding
from recgym.recommenders.ranking import DiffRecSplits, evaluate_scores
from recgym.worldmodels.base import atomic_torch_save

CHECKPOINT_FORMAT = "recgym.diffrec/1"
SELECTION_RULES = ("full", "subset")


class CheckpointMismatchError(ValueError):
    """A DiffRec checkpoint was made for another dataset, split or config than the one asked for."""


# ----------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DiffRecConfig:
    """Hyper-parameters of one DiffRec model and its training run.

    Defaults are DiffRec's ML-1M clean settings (its public code's ``ml-1m_clean`` run). ``hidden`` lists the widths of the
    hidden layers, so the network is ``n_items + emb_size -> hidden... -> n_items`` (DiffRec ``--dims
    [200,600]`` is ``hidden=(600, 200, 600)``). Only x0 prediction is implemented (DiffRec's setting).
    ``valid_fraction`` / ``split_seed`` carve a validation split out of the training rows for datasets that
    ship none (every dataset but ML-1M); they are part of the cache key.

    Model selection: validation Recall@``select_k`` every ``eval_every`` epochs; training stops once the best
    is more than ``patience`` epochs old. DiffRec's script evaluates every 5 epochs with patience 20; our
    default evaluates every 2 epochs with patience 10. Each evaluation runs the whole T-step reverse chain
    per user, so on ML-1M it costs about ten training epochs; ``selection`` says which users it ranks:

    - ``"full"``: all users, every time; the best epoch wins. This is DiffRec's published rule (with
      ``eval_every=1`` it is the rule of recgym's earlier default and of the first ML-1M numbers in
      docs/RESULTS.md).
    - ``"subset"`` (default): a fixed random subset of ``select_users`` users with validation items (drawn
      with ``seed``) for the early stopping, keeping the weights of the ``select_candidates`` best epochs;
      those few are then ranked on the full validation split and the best of them wins. The stored model
      can differ from ``"full"``'s, so the rule is part of the cache key. With no more users than
      ``select_users`` it is ``"full"``.
    """

    hidden: tuple[int, ...] = (600, 200, 600)
    emb_size: int = 10
    dropout: float = 0.5
    norm: bool = False
    steps: int = 40
    noise_schedule: str = "linear-var"
    noise_scale: float = 0.005
    noise_min: float = 0.005
    noise_max: float = 0.01
    beta_fixed: bool = True
    reweight: bool = True
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 400
    max_epochs: int = 100
    eval_every: int = 2
    patience: int = 10
    select_k: int = 20
    eval_batch_size: int = 1000
    selection: str = "subset"
    select_users: int = 1000
    select_candidates: int = 5
    seed: int = 1
    valid_fraction: float = 0.1
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.noise_schedule not in ("linear", "linear-var"):
            raise ValueError(f"noise_schedule={self.noise_schedule!r}, expected 'linear' or 'linear-var'")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}, expected >= 1")
        if not (0 <= self.noise_min <= self.noise_max) or self.noise_scale <= 0:
            raise ValueError(
                f"noise_scale={self.noise_scale}, noise_min={self.noise_min}, noise_max={self.noise_max}: "
                "expected noise_scale > 0 and 0 <= noise_min <= noise_max"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout}, expected in [0, 1)")
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"valid_fraction={self.valid_fraction}, expected in [0, 1)")
        if self.selection not in SELECTION_RULES:
            raise ValueError(f"selection={self.selection!r}, expected one of {list(SELECTION_RULES)}")
        for name in ("select_users", "select_candidates", "eval_every", "max_epochs", "batch_size",
                     "eval_batch_size", "select_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)}, expected >= 1")
        if self.patience < 0:
            raise ValueError(f"patience={self.patience}, expected >= 0")
        if self.emb_size < 2 or self.emb_size % 2:
            raise ValueError(f"emb_size={self.emb_size}, expected an even number >= 2")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffRecConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"DiffRecConfig: unknown field(s) {unknown}; valid fields: {sorted(known)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)

    def hash(self) -> str:
        """Stable short hash of every field (the cache key's config part)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def default_config(dataset_name: str) -> DiffRecConfig:
    """The dataset's registered ``model_defaults["diffrec"]`` (small fast settings for small catalogues, DiffRec's
    released ml-1m_noisy model), else the class defaults (DiffRec's ML-1M settings)."""
    from recgym.data.registry import model_defaults

    return DiffRecConfig(**model_defaults(dataset_name, "diffrec"))


# ----------------------------------------------------------------------------------------------- model


class DiffRecDenoiser(nn.Module):
    """The x0-predicting MLP: ``[dropout(x), Linear(emb(t))] -> hidden (tanh) -> n_items``."""

    def __init__(self, n_items: int, hidden: Sequence[int] = (600, 200, 600), emb_size: int = 10,
                 dropout: float = 0.5, norm: bool = False) -> None:
        super().__init__()
        self.n_items = int(n_items)
        self.emb_size = int(emb_size)
        self.norm = bool(norm)
        self.emb_layer = nn.Linear(emb_size, emb_size)
        widths = [n_items + emb_size, *hidden, n_items]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.drop = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DiffRec's init: weights N(0, sqrt(2 / (fan_in + fan_out))), biases N(0, 0.001)."""
        for lin in [*self.layers, self.emb_layer]:
            fan_out, fan_in = lin.weight.shape
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(lin.bias, 0.0, 0.001)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.emb_layer(timestep_embedding(t, self.emb_size))
        if self.norm:
            x = nn.functional.normalize(x, dim=-1)
        h = torch.cat([self.drop(x), emb], dim=-1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i != last:
                h = torch.tanh(h)
        return h


def diffrec_schedule(config: DiffRecConfig, device: str | torch.device = "cpu") -> NoiseSchedule:
    """DiffRec's noise schedule for ``config`` (``linear-var`` betas are capped at 0.999, as DiffRec does)."""
    return NoiseSchedule(config.noise_schedule, config.steps, config.noise_scale * config.noise_min,
                         config.noise_scale * config.noise_max, first_beta=1e-5 if config.beta_fixed else None,
                         max_beta=0.999 if config.noise_schedule == "linear-var" else None, device=device)


def _as_t(t: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    if isinstance(t, int):
        return torch.full((batch,), t, dtype=torch.long, device=device)
    t = t.to(device=device, dtype=torch.long)
    if t.ndim == 0:
        t = t.expand(batch)
    return t


class DiffRec:
    """A DiffRec model: the denoiser network, its schedule and config (and where it came from).

    The Gaussian reverse policy of the frozen model is ``p(x_{t-1} | x_t) = N(mu(x_t, t), sigma_t^2 I)`` with
    ``mu = c1_t * x0_hat(x_t, t) + c2_t * x_t`` (the posterior mean of q(x_{t-1} | x_t, x0_hat)) and
    ``sigma_t^2`` DiffRec's clipped posterior variance. ``t`` is the index of x_t, 0..T-1; applying the step
    at ``t`` gives x_{t-1} (x_{-1} is the final prediction, called x_0 in the env's docs).
    """

    def __init__(self, n_items: int, config: DiffRecConfig | None = None, device: str | torch.device = "cpu",
                 meta: dict[str, Any] | None = None) -> None:
        self.config = config or DiffRecConfig()
        self.n_items = int(n_items)
        self.device = torch.device(device)
        c = self.config
        self.denoiser = DiffRecDenoiser(n_items, c.hidden, c.emb_size, c.dropout, c.norm).to(self.device)
        self.schedule = diffrec_schedule(c, self.device)
        self.meta: dict[str, Any] = dict(meta or {})

    @property
    def steps(self) -> int:
        return self.schedule.steps

    def to(self, device: str | torch.device) -> DiffRec:
        self.device = torch.device(device)
        self.denoiser.to(self.device)
        self.schedule.to(self.device)
        return self

    # -- the Gaussian reverse step ------------------------------------------------------------------

    def posterior_mean(self, x_t: torch.Tensor, t: torch.Tensor | int,
                       denoiser: nn.Module | None = None) -> torch.Tensor:
        """Mean of the reverse step at ``t`` (float32 [B, n_items]); ``denoiser`` overrides the frozen one.

        Runs the network as it is (call ``.eval()`` on it for deterministic dropout-free inference).
        """
        t = _as_t(t, x_t.shape[0], x_t.device)
        net = denoiser if denoiser is not None else self.denoiser
        x0_hat = net(x_t, t)
        return self.schedule.get("posterior_mean_coef1", t) * x0_hat + \
            self.schedule.get("posterior_mean_coef2", t) * x_t

    def posterior_log_variance(self, t: torch.Tensor | int) -> torch.Tensor:
        """Clipped log-variance of the reverse step at ``t`` (float32 [B] or scalar tensor)."""
        table = self.schedule.table("posterior_log_variance_clipped")
        return table[t if isinstance(t, int) else t.long()].to(torch.float32)

    def posterior_std(self, t: torch.Tensor | int) -> torch.Tensor:
        """Standard deviation of the reverse step at ``t`` (about 8e-4 on ML-1M: far too small to explore)."""
        return torch.exp(0.5 * self.posterior_log_variance(t))

    def log_prob(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
                 reduce: str = "mean", denoiser: nn.Module | None = None,
                 mean: torch.Tensor | None = None) -> torch.Tensor:
        """Log-density of ``x_prev`` under ``N(posterior_mean(x_t, t), sigma_t^2 I)``.

        ``reduce="mean"`` (default, the recgym convention) averages the per-item Gaussian log-densities
        (DDPO's convention: ``sum / n_items``, O(1) whatever the catalogue size); ``"sum"`` is the exact
        log-likelihood of the transition (n_items times larger); ``"none"`` returns them per item. Gradients flow into ``denoiser`` (default: the frozen model's network) unless
        a precomputed ``mean`` is given.
        """
        t = _as_t(t, x_t.shape[0], x_t.device)
        mu = mean if mean is not None else self.posterior_mean(x_t, t, denoiser)
        logvar = self.posterior_log_variance(t)[:, None]
        lp = -0.5 * ((x_prev - mu) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi))
        if reduce == "none":
            return lp
        if reduce == "sum":
            return lp.sum(-1)
        if reduce == "mean":
            return lp.mean(-1)
        raise ValueError(f"reduce={reduce!r}, expected 'sum', 'mean' or 'none'")

    # -- chains ---------------------------------------------------------------------------------------

    def start_state(self, history: torch.Tensor, start_noise: int = 0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T: the clean history, or the history noised forward to step ``start_noise - 1`` (DiffRec)."""
        if start_noise <= 0:
            return history.clone()
        if start_noise > self.steps:
            raise ValueError(f"start_noise={start_noise} exceeds the schedule's steps={self.steps}")
        t = torch.full((history.shape[0],), start_noise - 1, dtype=torch.long, device=history.device)
        noise = torch.randn(history.shape, generator=generator, device=history.device, dtype=history.dtype)
        return self.schedule.q_sample(history, t, noise)

    @torch.no_grad()
    def sample(self, history: torch.Tensor, start_noise: int = 0, noise: bool = False,
               generator: torch.Generator | None = None, denoiser: nn.Module | None = None) -> torch.Tensor:
        """Run the reverse chain t = T-1..0 from ``start_state``; posterior means unless ``noise``."""
        x = self.start_state(history, start_noise, generator)
        for i in reversed(range(self.steps)):
            mu = self.posterior_mean(x, i, denoiser)
            if noise and i > 0:
                mu = mu + self.posterior_std(i) * torch.randn(mu.shape, generator=generator, device=mu.device)
            x = mu
        return x

    @torch.no_grad()
    def predict(self, history: torch.Tensor, denoiser: nn.Module | None = None) -> torch.Tensor:
        """DiffRec inference (``sampling_steps=0``, ``sampling_noise=False``): deterministic scores."""
        net = denoiser if denoiser is not None else self.denoiser
        was_training = net.training
        net.eval()
        try:
            return self.sample(history, denoiser=net)
        finally:
            net.train(was_training)

    # -- persistence ----------------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "n_items": self.n_items,
            "meta": self.meta,
            "state_dict": {k: v.detach().cpu() for k, v in self.denoiser.state_dict().items()},
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the checkpoint atomically (temp file + ``os.replace``)."""
        atomic_torch_save(self.checkpoint(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu",
             expect_fingerprint: str | None = None, expect_config: DiffRecConfig | None = None) -> DiffRec:
        """Load a checkpoint; with ``expect_*`` it must match that dataset fingerprint / config exactly."""
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointMismatchError(f"{path}: not a recgym DiffRec checkpoint (format {CHECKPOINT_FORMAT})")
        config = DiffRecConfig.from_dict(ckpt["config"])
        meta = ckpt.get("meta", {})
        if expect_fingerprint is not None and meta.get("fingerprint") != expect_fingerprint:
            raise CheckpointMismatchError(
                f"{path}: checkpoint was trained on dataset {meta.get('dataset')!r} with fingerprint "
                f"{meta.get('fingerprint')!r}, but the requested data has fingerprint {expect_fingerprint!r}"
            )
        if expect_config is not None and config != expect_config:
            diff = {k: (v, expect_config.to_dict()[k]) for k, v in config.to_dict().items()
                    if expect_config.to_dict()[k] != v}
            raise CheckpointMismatchError(f"{path}: checkpoint config differs from the requested one "
                                          f"(field: (checkpoint, requested)) {diff}")
        model = cls(int(ckpt["n_items"]), config, device, meta)
        model.denoiser.load_state_dict(ckpt["state_dict"])
        model.denoiser.eval()
        return model


def evaluate_diffrec(model: DiffRec, splits: DiffRecSplits, ks: Iterable[int] = (10, 20),
                     denoiser: nn.Module | None = None, which: Sequence[str] = ("valid", "test"),
                     batch_size: int | None = None, users: Any = None) -> dict[str, dict[str, float]]:
    """Evaluate a (possibly fine-tuned) denoiser with the DiffRec protocol on valid and/or test.

    One reverse chain per user serves every split in ``which``; ``users`` restricts it to those user ids.
    """
    with torch.inference_mode():
        return evaluate_scores(lambda x, u: model.predict(x, denoiser=denoiser), splits, ks, model.device,
                               batch_size or model.config.eval_batch_size, which, users)
