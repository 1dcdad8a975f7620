"""DiffRec pre-training and its checkpoint cache.

Training follows "Diffusion Recommender Models" (arXiv:2304.04971) as its public code (``main.py``,
``gaussian_diffusion.py``) does it: the x0-prediction loss weighted by ``SNR(t-1) - SNR(t)`` (1 at t = 0),
timesteps importance-sampled in proportion to the RMS of each step's last ten losses once every step has ten
(uniform before), AdamW, and early stopping on validation Recall@``select_k`` evaluated every ``eval_every``
epochs with ``patience``. Runs are deterministic for a given ``config.seed``.

`fit_or_load_diffrec` keeps one checkpoint per (dataset, split, config) under
``cache_dir()/diffrec/<dataset>-<fingerprint>-<confighash>.pt``; the checkpoint records its dataset
fingerprint and config, so a file made for other data or another config is refused and retrained
(`recgym.worldmodels.cache.cached_fit`, the cache step shared with the world models).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recgym.data.base import LoggedDataset
from recgym.data.paths import cache_dir
from recgym.recommenders.diffrec import DiffRec, DiffRecConfig, default_config, evaluate_diffrec
from recgym.recommenders.ranking import DiffRecSplits, make_splits
from recgym.worldmodels.cache import cached_fit


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


def checkpoint_path(splits: DiffRecSplits, config: DiffRecConfig) -> Path:
    """``cache_dir()/diffrec/<dataset>-<fingerprint>-<confighash>.pt``."""
    return cache_dir() / "diffrec" / f"{splits.name}-{splits.fingerprint}-{config.hash()}.pt"


def fit_or_load_diffrec(dataset: LoggedDataset | DiffRecSplits, config: DiffRecConfig | None = None,
                        device: str | torch.device = "cpu", progress: bool = True,
                        log: Callable[[str], None] | None = None, refit: bool = False
                        ) -> tuple[DiffRec, DiffRecSplits]:
    """The cached pre-trained DiffRec for ``dataset`` (trained and cached atomically on a miss or ``refit``).

    A corrupt or mismatching cache file is reported with a warning and rebuilt, never trusted.
    """
    config = config or default_config(dataset.name)
    splits = dataset if isinstance(dataset, DiffRecSplits) else make_splits(
        dataset, config.valid_fraction, config.split_seed)

    def fit() -> DiffRec:
        model, res = train_diffrec(splits, config, device, progress=progress, log=log)
        model.meta.update({"train_seconds": res.train_seconds, "seconds_per_epoch": res.seconds_per_epoch,
                           "epochs_run": res.epochs_run})
        return model

    model = cached_fit(checkpoint_path(splits, config), fit,
                       lambda path: DiffRec.load(path, device, splits.fingerprint, config),
                       lambda m, path: m.save(path), refit=refit, what="DiffRec")
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
    model, splits = fit_or_load_diffrec(splits, config, device, progress, log, refit=force)
    # A cached model is re-evaluated, so the numbers always belong to the weights returned.
    ev = evaluate_diffrec(model, splits) if cached else model.meta["metrics"]
    out = {"valid": ev["valid"], "test": ev["test"], "checkpoint": str(path), "cached": cached,
           **{k: model.meta.get(k) for k in ("train_seconds", "seconds_per_epoch", "best_epoch", "epochs_run")}}
    return model, out
