"""DiffRec: a diffusion recommender over user interaction vectors, its pre-training, and two baselines.

What is here (REFERENCE.md section 3, read in the public DiffRec code; the code here is our own):

- `DiffRecDenoiser`: the MLP denoiser. A 10-d sinusoidal time embedding goes through a linear layer and is
  concatenated with the (dropout-0.5) interaction vector; ``n_items + 10 -> 600 -> 200 -> 600 -> n_items``
  with tanh between layers (DiffRec's ``--dims [200,600]`` for ML-1M clean). It predicts x0.
- `DiffusionSchedule`: the ``linear-var`` schedule (``1 - alpha_bar_t`` linear from ``scale*min`` to
  ``scale*max``, beta_0 forced to 1e-5), forward noising and the Gaussian posterior q(x_{t-1} | x_t, x0).
- `DiffRec`: denoiser + schedule. ``posterior_mean``, ``posterior_std``, ``log_prob`` (the frozen model's
  Gaussian policy over a transition, used by ReFiT / DDPO), ``sample`` (the reverse chain) and ``predict``
  (DiffRec inference: start at the clean history, no noise, all T posterior-mean steps).
- `train_diffrec`: SNR(t-1) - SNR(t) weighted x0 loss with importance-sampled timesteps, AdamW, early
  stopping on validation Recall@20 (evaluated every ``eval_every`` epochs, ``patience`` epochs).
- The DiffRec evaluation protocol (`evaluate_scores`): the input is the training row; valid ranks all items
  with train masked, test with train + valid masked; Recall@K = hits / |GT|, NDCG@K with binary gains and IDCG
  over min(|GT|, K); averaged over the users that have ground truth in that split.
- `EASE` (closed form, lambda tuned on validation Recall@20) and `MostPop`, scored by the same protocol.
- `pretrain(dataset_name, config, device, progress)` and `fit_or_load_diffrec(...)`: cached checkpoints under
  ``cache_dir()/diffrec/<dataset>-<fingerprint>-<confighash>.pt`` that embed the config and the dataset
  fingerprint, so a checkpoint from another dataset or config is refused with a clear error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recgym.data.base import LoggedDataset
from recgym.worldmodels.base import atomic_torch_save

CHECKPOINT_FORMAT = "recgym.diffrec/1"


class CheckpointMismatchError(ValueError):
    """A DiffRec checkpoint was made for another dataset, split or config than the one asked for."""


# ----------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DiffRecConfig:
    """Hyper-parameters of one DiffRec model and its training run.

    Defaults are DiffRec's ML-1M clean settings (REFERENCE.md section 3). ``hidden`` lists the widths of the
    hidden layers, so the network is ``n_items + emb_size -> hidden... -> n_items`` (DiffRec ``--dims
    [200,600]`` is ``hidden=(600, 200, 600)``). Only x0 prediction is implemented (DiffRec's setting).
    ``valid_fraction`` / ``split_seed`` carve a validation split out of the training rows for datasets that
    ship none (every dataset but ML-1M); they are part of the cache key. Model selection: validation
    Recall@``select_k`` every ``eval_every`` epochs; training stops once the best is more than ``patience``
    epochs old. DiffRec's script evaluates every 5 epochs with patience 20; our default evaluates every
    epoch with patience 10 (same selection rule, finer grid, fewer wasted epochs on a CPU).
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
    eval_every: int = 1
    patience: int = 10
    select_k: int = 20
    eval_batch_size: int = 1000
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


# ----------------------------------------------------------------------------------------------- data


@dataclass
class DiffRecSplits:
    """Binary interaction matrices in DiffRec's layout (dense numpy, ``(n_users, n_items)``).

    ``train`` is the model input (float32 0/1); ``valid`` / ``test`` are bool ground-truth matrices. Test
    items already in train or valid are dropped from the test ground truth (they are masked when ranking).
    ``fingerprint`` hashes the dataset name, sizes and the three matrices.
    """

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])


def _positives(df: Any, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    if df is None or len(df) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keep = df["reward"].to_numpy(np.float64) >= threshold
    return df["user"].to_numpy(np.int64)[keep], df["item"].to_numpy(np.int64)[keep]


def make_splits(dataset: LoggedDataset, valid_fraction: float = 0.1, split_seed: int = 0) -> DiffRecSplits:
    """Binary train / valid / test matrices of a `LoggedDataset` for DiffRec.

    An interaction counts when its reward is at least ``dataset.positive_threshold``. If the dataset has a
    validation split (ML-1M DiffRec) it is used as is; otherwise ``valid_fraction`` of each user's positive
    training items (users with at least 2) is moved to validation with a seeded generator.
    """
    n_u, n_i = dataset.n_users, dataset.n_items
    thr = float(dataset.positive_threshold)
    train = np.zeros((n_u, n_i), dtype=np.float32)
    tu, ti = _positives(dataset.train, thr)
    train[tu, ti] = 1.0
    valid = np.zeros((n_u, n_i), dtype=bool)
    if dataset.valid is not None and len(dataset.valid):
        vu, vi = _positives(dataset.valid, thr)
        valid[vu, vi] = True
    elif valid_fraction > 0:
        rng = np.random.default_rng(split_seed)
        for u in range(n_u):
            items = np.flatnonzero(train[u])
            if len(items) < 2:
                continue
            n_v = min(len(items) - 1, max(1, int(round(valid_fraction * len(items)))))
            pick = rng.choice(items, size=n_v, replace=False)
            valid[u, pick] = True
            train[u, pick] = 0.0
    valid &= train == 0
    test = np.zeros((n_u, n_i), dtype=bool)
    su, si = _positives(dataset.test, thr)
    test[su, si] = True
    test &= (train == 0) & ~valid
    h = hashlib.sha256()
    h.update(f"{dataset.name}|{n_u}|{n_i}".encode())
    for m in (train > 0, valid, test):
        h.update(np.packbits(m).tobytes())
    return DiffRecSplits(dataset.name, train, valid, test, h.hexdigest()[:16],
                         meta={"valid_fraction": valid_fraction, "split_seed": split_seed,
                               "valid_source": "dataset" if dataset.valid is not None else "carved from train"})


# ----------------------------------------------------------------------------------------------- model


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t f), sin(t f)]`` with ``dim/2`` geometric frequencies (float32 [B, dim])."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


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


class DiffusionSchedule:
    """Gaussian diffusion constants for T steps (float64 like DiffRec, cast to float32 when gathered)."""

    def __init__(self, steps: int, noise_schedule: str = "linear-var", noise_scale: float = 0.005,
                 noise_min: float = 0.005, noise_max: float = 0.01, beta_fixed: bool = True,
                 device: str | torch.device = "cpu") -> None:
        self.steps = int(steps)
        start, end = noise_scale * noise_min, noise_scale * noise_max
        if noise_schedule == "linear":
            betas = np.linspace(start, end, steps, dtype=np.float64)
        else:  # linear-var: 1 - alpha_bar_t is linear in t
            alpha_bar = 1.0 - np.linspace(start, end, steps, dtype=np.float64)
            betas = np.empty(steps, dtype=np.float64)
            betas[0] = 1.0 - alpha_bar[0]
            betas[1:] = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], 0.999)
        if beta_fixed:
            betas[0] = 1e-5  # DiffRec forces a tiny first step
        if not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError(f"invalid betas {betas}: check noise_scale/noise_min/noise_max")
        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        consts = {
            "betas": betas,
            "alphas_cumprod": ac,
            "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": np.sqrt(ac),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
            "posterior_variance": post_var,
            # t = 0 has zero posterior variance; like DiffRec/DDPM, its log-variance is clipped to t = 1's.
            "posterior_log_variance_clipped": np.log(np.append(post_var[1] if steps > 1 else betas[0],
                                                               post_var[1:])),
            "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
        }
        self._np = consts
        self.device = torch.device(device)
        self._t = {k: torch.tensor(v, dtype=torch.float64, device=self.device) for k, v in consts.items()}

    def to(self, device: str | torch.device) -> DiffusionSchedule:
        self.device = torch.device(device)
        self._t = {k: v.to(self.device) for k, v in self._t.items()}
        return self

    def get(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``name[t]`` as float32 ``[B, 1]`` (broadcasts over items)."""
        return self._t[name][t].to(torch.float32)[:, None]

    def array(self, name: str) -> np.ndarray:
        """The float64 numpy array of one constant (for reports and tests)."""
        return self._np[name].copy()

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        ac = self._t["alphas_cumprod"][t]
        return ac / (1.0 - ac)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward noising ``sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``."""
        return self.get("sqrt_alphas_cumprod", t) * x0 + self.get("sqrt_one_minus_alphas_cumprod", t) * noise


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
        self.schedule = DiffusionSchedule(c.steps, c.noise_schedule, c.noise_scale, c.noise_min, c.noise_max,
                                          c.beta_fixed, self.device)
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
        if isinstance(t, int):
            return self.schedule._t["posterior_log_variance_clipped"][t].to(torch.float32)
        return self.schedule._t["posterior_log_variance_clipped"][t.long()].to(torch.float32)

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


# ----------------------------------------------------------------------------------------------- evaluation


def evaluate_scores(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], splits: DiffRecSplits,
                    ks: Iterable[int] = (10, 20), device: str | torch.device = "cpu",
                    batch_size: int = 1000, which: Sequence[str] = ("valid", "test")) -> dict[str, dict[str, float]]:
    """DiffRec protocol: ``score_fn(train_rows, user_ids) -> scores`` is called on batches of training rows.

    ``valid`` masks train; ``test`` masks train + valid; metrics are averaged over users with ground truth.
    """
    from recgym.metrics import ranking_report

    device = torch.device(device)
    ks = tuple(sorted(set(int(k) for k in ks)))
    if ks[-1] > splits.n_items:
        raise ValueError(f"K={ks[-1]} exceeds the catalogue size n_items={splits.n_items}")
    for w in which:
        if w not in ("valid", "test"):
            raise ValueError(f"which={w!r}, expected 'valid' or 'test'")
    sums: dict[str, dict[str, float]] = {w: {} for w in which}
    counts = dict.fromkeys(which, 0)
    n = splits.n_users
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        x = torch.from_numpy(splits.train[lo:hi]).to(device)
        scores = score_fn(x, torch.arange(lo, hi, device=device))
        train_mask = x > 0
        for w in which:
            gt = torch.from_numpy(splits.valid[lo:hi] if w == "valid" else splits.test[lo:hi]).to(device)
            mask = train_mask if w == "valid" else train_mask | torch.from_numpy(splits.valid[lo:hi]).to(device)
            # average="all" over the batch rows, times the rows = the sum over users (no-GT users add 0)
            rep = ranking_report(scores, gt, exclude_mask=mask, ks=ks, average="all")
            counts[w] += int(gt.any(1).sum())
            for key in (f"{m}@{k}" for m in ("Recall", "NDCG") for k in ks):
                sums[w][key] = sums[w].get(key, 0.0) + rep[key] * (hi - lo)
    return {w: {k: (v / counts[w] if counts[w] else float("nan")) for k, v in sums[w].items()} | {"users": counts[w]}
            for w in which}


def evaluate_diffrec(model: DiffRec, splits: DiffRecSplits, ks: Iterable[int] = (10, 20),
                     denoiser: nn.Module | None = None, which: Sequence[str] = ("valid", "test"),
                     batch_size: int | None = None) -> dict[str, dict[str, float]]:
    """Evaluate a (possibly fine-tuned) denoiser with the DiffRec protocol on valid and/or test."""
    return evaluate_scores(lambda x, u: model.predict(x, denoiser=denoiser), splits, ks, model.device,
                           batch_size or model.config.eval_batch_size, which)


# ----------------------------------------------------------------------------------------------- training


class _ImportanceSampler:
    """DiffRec's loss-aware timestep sampler: uniform until every t has 10 losses, then p_t ~ RMS(loss_t)."""

    def __init__(self, steps: int, device: torch.device, history: int = 10, uniform_prob: float = 0.001) -> None:
        self.steps, self.history, self.uniform_prob = steps, history, uniform_prob
        self.loss_hist = torch.zeros(steps, history, dtype=torch.float64, device=device)
        self.count = torch.zeros(steps, dtype=torch.long, device=device)
        self.warm = False

    def sample(self, batch: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.warm:
            t = torch.randint(0, self.steps, (batch,), generator=generator, device=device)
            return t, torch.ones(batch, device=device)
        rms = torch.sqrt((self.loss_hist ** 2).mean(-1))
        p = rms / rms.sum() * (1 - self.uniform_prob) + self.uniform_prob / self.steps
        t = torch.multinomial(p, batch, replacement=True, generator=generator)
        return t, (p[t] * self.steps).to(torch.float32)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        # Same result as DiffRec's per-sample loop: each row keeps the last `history` losses of its t, in order.
        losses = losses.detach().to(torch.float64)
        for tv in torch.unique(t).tolist():
            new = losses[t == tv]
            c = int(self.count[tv])
            seq = torch.cat([self.loss_hist[tv, :c], new])[-self.history:]
            self.loss_hist[tv, : len(seq)] = seq
            self.count[tv] = len(seq)
        self.warm = bool((self.count == self.history).all())


def diffusion_loss(model: DiffRec, x0: torch.Tensor, sampler: _ImportanceSampler,
                   generator: torch.Generator) -> torch.Tensor:
    """One batch of DiffRec's training loss (x0 target, SNR-difference weights, importance sampling)."""
    dev = x0.device
    t, pt = sampler.sample(x0.shape[0], generator, dev)
    noise = torch.randn(x0.shape, generator=generator, device=dev)
    x_t = model.schedule.q_sample(x0, t, noise)
    out = model.denoiser(x_t, t)
    mse = ((x0 - out) ** 2).mean(-1)
    if model.config.reweight:
        w = (model.schedule.snr(t - 1) - model.schedule.snr(t)).to(torch.float32)
        w = torch.where(t == 0, torch.ones_like(w), w)
    else:
        w = torch.ones_like(mse)
    weighted = w * mse
    sampler.update(t, weighted)
    return (weighted / pt).mean()


@dataclass
class TrainResult:
    """What `train_diffrec` returns besides the model."""

    best_epoch: int
    epochs_run: int
    train_seconds: float
    seconds_per_epoch: float
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]


def train_diffrec(splits: DiffRecSplits, config: DiffRecConfig | None = None, device: str | torch.device = "cpu",
                  progress: bool = False, log: Callable[[str], None] | None = None) -> tuple[DiffRec, TrainResult]:
    """Train DiffRec on ``splits.train`` and keep the weights with the best validation Recall@select_k.

    Deterministic for a given ``config.seed`` (init, dropout, noise, timesteps, shuffling); the caller's global
    torch RNG state is left untouched (``torch.random.fork_rng``).
    """
    config = config or DiffRecConfig()
    device = torch.device(device)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)  # network init and dropout
        return _train(splits, config, device, progress, log)


def _train(splits: DiffRecSplits, config: DiffRecConfig, device: torch.device, progress: bool,
           log: Callable[[str], None] | None) -> tuple[DiffRec, TrainResult]:
    model = DiffRec(splits.n_items, config, device,
                    meta={"dataset": splits.name, "fingerprint": splits.fingerprint})
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed)
    opt = torch.optim.AdamW(model.denoiser.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = _ImportanceSampler(config.steps, device)
    train = torch.from_numpy(splits.train).to(device)
    n = train.shape[0]
    sel = f"Recall@{config.select_k}"
    ks = tuple(sorted({10, 20, config.select_k}))
    best = (-1.0, 0)
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = []
    train_time = 0.0
    pbar = None
    if progress:
        from tqdm.auto import tqdm

        pbar = tqdm(total=config.max_epochs, desc=f"DiffRec {splits.name}", unit="epoch")
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        if epoch - best[1] > config.patience and best[1] > 0:
            break
        model.denoiser.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen, device=device)
        total = 0.0
        for lo in range(0, n, config.batch_size):
            x0 = train[perm[lo: lo + config.batch_size]]
            loss = diffusion_loss(model, x0, sampler, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * x0.shape[0]
        dt = time.perf_counter() - t0
        train_time += dt
        rec: dict[str, Any] = {"epoch": epoch, "loss": total / n, "epoch_seconds": dt}
        if epoch % config.eval_every == 0 or epoch == config.max_epochs:
            ev = evaluate_diffrec(model, splits, ks, which=("valid",))
            rec["valid"] = ev["valid"]
            if ev["valid"][sel] > best[0]:
                best = (ev["valid"][sel], epoch)
                best_state = {k: v.detach().clone() for k, v in model.denoiser.state_dict().items()}
        history.append(rec)
        msg = f"epoch {epoch} loss {rec['loss']:.5f} ({dt:.1f}s)" + (
            f" valid {sel} {rec['valid'][sel]:.4f}" if "valid" in rec else "")
        if log:
            log(msg)
        if pbar is not None:
            pbar.set_postfix_str(msg)
            pbar.update(1)
    if pbar is not None:
        pbar.close()
    if best_state is not None:
        model.denoiser.load_state_dict(best_state)
    model.denoiser.eval()
    final = evaluate_diffrec(model, splits, ks)
    model.meta.update({"best_epoch": best[1], "metrics": final})
    epochs_run = len(history)
    res = TrainResult(best[1], epochs_run, train_time, train_time / max(1, epochs_run),
                      final["valid"], final["test"], history)
    return model, res


# ----------------------------------------------------------------------------------------------- cache


def checkpoint_path(splits: DiffRecSplits, config: DiffRecConfig) -> Path:
    """``cache_dir()/diffrec/<dataset>-<fingerprint>-<confighash>.pt``."""
    from recgym.data.paths import cache_dir

    return cache_dir() / "diffrec" / f"{splits.name}-{splits.fingerprint}-{config.hash()}.pt"


def fit_or_load_diffrec(dataset: LoggedDataset | DiffRecSplits, config: DiffRecConfig | None = None,
                        device: str | torch.device = "cpu", progress: bool = True,
                        log: Callable[[str], None] | None = None) -> tuple[DiffRec, DiffRecSplits]:
    """The cached pre-trained DiffRec for ``dataset`` (trained and cached atomically on a miss).

    A corrupt or mismatching cache file is reported with a warning and rebuilt, never trusted.
    """
    config = config or default_config(dataset.name)
    splits = dataset if isinstance(dataset, DiffRecSplits) else make_splits(
        dataset, config.valid_fraction, config.split_seed)
    path = checkpoint_path(splits, config)
    if path.is_file():
        try:
            return DiffRec.load(path, device, splits.fingerprint, config), splits
        except Exception as e:  # corrupt / foreign cache: rebuild
            warnings.warn(f"ignoring unusable DiffRec cache {path}: {e}; retraining", stacklevel=2)
    model, res = train_diffrec(splits, config, device, progress=progress, log=log)
    model.meta.update({"train_seconds": res.train_seconds, "seconds_per_epoch": res.seconds_per_epoch,
                       "epochs_run": res.epochs_run})
    model.save(path)
    return model, splits


def pretrain(dataset_name: str, config: DiffRecConfig | None = None, device: str | torch.device = "cpu",
             progress: bool = True, data_dir: str | None = None, force: bool = False,
             log: Callable[[str], None] | None = None, **dataset_kwargs: Any) -> tuple[DiffRec, dict[str, Any]]:
    """Pre-train (or load from the cache) DiffRec on a named dataset; returns the model and its metrics.

    Metrics: ``{"valid": {...}, "test": {...}, "train_seconds", "seconds_per_epoch", "best_epoch",
    "checkpoint", "cached"}``. ``force`` retrains even when a cached checkpoint exists.
    """
    from recgym.data import load_dataset

    ds = load_dataset(dataset_name, data_dir=data_dir, **dataset_kwargs)
    config = config or default_config(ds.name)
    splits = make_splits(ds, config.valid_fraction, config.split_seed)
    path = checkpoint_path(splits, config)
    cached = path.is_file() and not force
    if force and path.exists():
        path.unlink()
    model, splits = fit_or_load_diffrec(splits, config, device, progress, log)
    # A cached model is re-evaluated, so the numbers always belong to the weights returned.
    ev = evaluate_diffrec(model, splits) if cached else model.meta["metrics"]
    out = {"valid": ev["valid"], "test": ev["test"], "checkpoint": str(path), "cached": cached,
           **{k: model.meta.get(k) for k in ("train_seconds", "seconds_per_epoch", "best_epoch", "epochs_run")}}
    return model, out


# ----------------------------------------------------------------------------------------------- baselines


class MostPop:
    """Scores every item by its training popularity (same ranking for all users)."""

    def __init__(self) -> None:
        self.pop: torch.Tensor | None = None

    def fit(self, train: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> MostPop:
        self.pop = torch.as_tensor(np.asarray(train), dtype=torch.float32).sum(0).to(device)
        return self

    def score(self, x: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        if self.pop is None:
            raise RuntimeError("MostPop.score called before fit")
        return self.pop.to(x.device).expand(x.shape[0], -1)


class EASE:
    """EASE (Steck 2019): ``B = I - P diagMat(1 / diag(P))``, ``P = (X^T X + lambda I)^-1``, scores ``X B``."""

    def __init__(self, lam: float = 500.0) -> None:
        if lam <= 0:
            raise ValueError(f"EASE lambda={lam}, expected > 0")
        self.lam = float(lam)
        self.B: torch.Tensor | None = None

    def fit(self, train: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> EASE:
        X = torch.as_tensor(np.asarray(train), dtype=torch.float64, device=device)
        G = X.T @ X
        G += self.lam * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
        P = torch.linalg.inv(G)
        B = -P / torch.diag(P)[None, :]
        B.fill_diagonal_(0.0)
        self.B = B.to(torch.float32)
        return self

    def score(self, x: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        if self.B is None:
            raise RuntimeError("EASE.score called before fit")
        return x @ self.B.to(x.device)


def tune_ease(splits: DiffRecSplits, lambdas: Sequence[float] = (50, 100, 200, 500, 1000, 2000),
              ks: Iterable[int] = (10, 20), device: str | torch.device = "cpu",
              select_k: int = 20) -> tuple[EASE, dict[str, dict[str, float]], dict[float, float]]:
    """Fit EASE for each lambda, keep the best validation Recall@select_k; returns (model, eval, grid)."""
    grid: dict[float, float] = {}
    best: tuple[float, EASE | None] = (-1.0, None)
    for lam in lambdas:
        m = EASE(lam).fit(splits.train, device)
        r = evaluate_scores(m.score, splits, ks, device, which=("valid",))["valid"][f"Recall@{select_k}"]
        grid[float(lam)] = r
        if r > best[0]:
            best = (r, m)
    assert best[1] is not None
    return best[1], evaluate_scores(best[1].score, splits, ks, device), grid


def baselines(splits: DiffRecSplits, ks: Iterable[int] = (10, 20), device: str | torch.device = "cpu"
              ) -> dict[str, dict[str, Any]]:
    """EASE (lambda tuned on valid) and MostPop on the DiffRec protocol, with their fit times."""
    out: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    pop = MostPop().fit(splits.train, device)
    out["MostPop"] = evaluate_scores(pop.score, splits, ks, device) | {"train_seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    ease, ev, grid = tune_ease(splits, ks=ks, device=device)
    out["EASE"] = ev | {"train_seconds": time.perf_counter() - t0, "lambda": ease.lam, "grid": grid}
    return out
