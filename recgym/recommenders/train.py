"""DiffRec pre-training and its checkpoint cache.

Training follows "Diffusion Recommender Models" (arXiv:2304.04971) as its public code (``main.py``,
``gaussian_diffusion.py``) does it: the x0-prediction loss weighted by ``SNR(t-1) - SNR(t)`` (1 at t = 0),
timesteps importance-sampled in proportion to the RMS of each step's last ten losses once every step has ten
(uniform before), AdamW, and early stopping on validation Recall@``select_k`` evaluated every ``eval_every``
epochs with ``patience``. Runs are deterministic for a given ``config.seed``.

Model selection ranks users with the whole reverse chain, which costs far more than training: under
``selection="full"`` (DiffRec's rule) every evaluation ranks the full validation split; under ``"subset"``
(the default) early stopping ranks a fixed subset of users and only the few best epochs are ranked on the full
validation split at the end (`DiffRecConfig`). Valid and test are ranked from the same chain, so the chosen
weights' test metrics cost no extra chain. `TrainResult` and the checkpoint meta report the seconds spent
training and evaluating separately.

`fit_or_load_diffrec` keeps one checkpoint per (dataset, split, config) under
``cache_dir()/diffrec/<dataset>-<fingerprint>-<confighash>.pt``; the checkpoint records its dataset
fingerprint and config, so a file made for other data or another config is refused and retrained
(`recgym.worldmodels.cache.cached_fit`, the cache step shared with the world models).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recgym.data.base import LoggedDataset
from recgym.data.paths import cache_dir
from recgym.progress import note, progress_bar
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
    """What `train_diffrec` returns besides the model.

    ``train_seconds`` is the time in training epochs, ``eval_seconds`` the time ranking users for model
    selection (the screening evaluations and the final choice), ``wall_seconds`` the whole call.
    ``selection`` records the rule and, for ``"subset"``, the candidates and their full-validation scores.
    """

    best_epoch: int
    epochs_run: int
    train_seconds: float
    eval_seconds: float
    wall_seconds: float
    seconds_per_epoch: float
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    selection: dict[str, Any]


def selection_users(splits: DiffRecSplits, config: DiffRecConfig) -> np.ndarray | None:
    """The user ids the early stopping ranks: ``None`` (every user) under ``selection="full"`` or when no more
    than ``select_users`` users have validation items; else a sorted random subset of those users, drawn
    with ``config.seed``."""
    if config.selection == "full":
        return None
    with_valid = np.flatnonzero(splits.valid.any(1))
    if len(with_valid) <= config.select_users:
        return None
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(with_valid, size=config.select_users, replace=False))


def train_diffrec(splits: DiffRecSplits, config: DiffRecConfig | None = None, device: str | torch.device = "cpu",
                  progress: bool = False, log: Callable[[str], None] | None = None) -> tuple[DiffRec, TrainResult]:
    """Train DiffRec on ``splits.train`` and keep the weights that ``config.selection`` chooses on validation
    Recall@select_k (see `DiffRecConfig`); the returned metrics are those weights' full valid / test ones.

    Deterministic for a given ``config.seed`` (init, dropout, noise, timesteps, shuffling); the caller's global
    torch RNG state is left untouched (``torch.random.fork_rng``). Evaluation draws no random numbers, so the
    training trajectory is the same under every selection rule.
    """
    config = config or DiffRecConfig()
    device = torch.device(device)
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(config.seed)  # network init and dropout
        return _train(splits, config, device, progress, log)


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


class _Candidates:
    """The ``keep`` best (score, epoch) seen so far, with a copy of their weights and their metrics."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.items: list[tuple[float, int, dict[str, torch.Tensor], dict[str, dict[str, float]]]] = []

    def offer(self, score: float, epoch: int, model: DiffRec, metrics: dict[str, dict[str, float]]) -> None:
        if score != score:  # NaN: no user to score
            return
        if len(self.items) == self.keep and score <= self.items[-1][0]:
            return
        state = {k: v.detach().clone() for k, v in model.denoiser.state_dict().items()}
        self.items.append((score, epoch, state, metrics))
        self.items.sort(key=lambda c: (-c[0], c[1]))  # best first; ties: the earlier epoch
        del self.items[self.keep:]


def _train(splits: DiffRecSplits, config: DiffRecConfig, device: torch.device, progress: bool,
           log: Callable[[str], None] | None) -> tuple[DiffRec, TrainResult]:
    start = time.perf_counter()
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
    screen = selection_users(splits, config)
    # Each evaluation ranks valid and test from the same chain (test costs only a top-K): under the full rule
    # the chosen epoch's final metrics are then already known, under the subset rule a candidate's final
    # metrics need the chain only for the users outside the subset.
    rest = None if screen is None else np.setdiff1d(np.arange(splits.n_users), screen)
    candidates = _Candidates(1 if screen is None else config.select_candidates)
    best_score, best_epoch = -1.0, 0
    history: list[dict[str, Any]] = []
    train_time = eval_time = 0.0
    bar = progress_bar(total=config.max_epochs, desc=f"DiffRec {splits.name}", unit="epoch", enabled=progress)
    for epoch in range(1, config.max_epochs + 1):
        if best_epoch > 0 and epoch - best_epoch > config.patience:
            break
        model.denoiser.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen, device=device)
        total = torch.zeros((), device=device)
        for lo in range(0, n, config.batch_size):
            x0 = train[perm[lo: lo + config.batch_size]]
            loss = diffusion_loss(model, x0, sampler, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * x0.shape[0]
        rec: dict[str, Any] = {"epoch": epoch, "loss": float(total) / n}
        dt = time.perf_counter() - t0
        train_time += dt
        rec["epoch_seconds"] = dt
        msg = f"epoch {epoch} loss {rec['loss']:.5f} ({dt:.1f}s)"
        if epoch % config.eval_every == 0 or epoch == config.max_epochs:
            t1 = time.perf_counter()
            ev = evaluate_diffrec(model, splits, ks, users=screen)
            rec["eval_seconds"] = time.perf_counter() - t1
            eval_time += rec["eval_seconds"]
            rec["valid"] = ev["valid"]
            score = ev["valid"][sel]
            if score > best_score:
                best_score, best_epoch = score, epoch
            candidates.offer(score, epoch, model, ev)
            users = "" if screen is None else f" ({len(screen)} users)"
            msg += f" valid {sel}{users} {score:.4f} ({rec['eval_seconds']:.1f}s)"
        history.append(rec)
        if log:
            log(msg)
        bar.set_postfix_str(msg, refresh=False)
        bar.update(1)
    bar.close()

    t1 = time.perf_counter()
    chosen: dict[str, dict[str, float]] | None = None
    selection: dict[str, Any] = {"rule": config.selection, "screen_users": None if screen is None else len(screen)}
    if screen is None:
        if candidates.items:
            _, best_epoch, state, chosen = candidates.items[0]
            model.denoiser.load_state_dict(state)
    elif candidates.items:
        epochs = [c[1] for c in candidates.items]
        if log:
            log(f"ranking the {len(epochs)} best epochs {epochs} on the full validation split")
        bar = progress_bar(total=len(epochs), desc=f"DiffRec {splits.name}: best of epochs {epochs}",
                           unit="epoch", enabled=progress)
        rescored = []
        for screen_score, ep, state, screened in candidates.items:
            model.denoiser.load_state_dict(state)
            ev = _merge(screened, evaluate_diffrec(model, splits, ks, users=rest))
            rescored.append((ev["valid"][sel], ep, state, ev, screen_score))
            bar.set_postfix_str(f"epoch {ep} valid {sel} {ev['valid'][sel]:.4f}", refresh=False)
            bar.update(1)
        bar.close()
        selection["candidates"] = [{"epoch": ep, "screen": sc, "valid": v} for v, ep, _, _, sc in rescored]
        _, best_epoch, state, chosen, _ = max(rescored, key=lambda c: (c[0], -c[1]))
        model.denoiser.load_state_dict(state)
    model.denoiser.eval()
    if chosen is None or "test" not in chosen:  # no usable validation score: keep the last weights
        chosen = evaluate_diffrec(model, splits, ks)
    eval_time += time.perf_counter() - t1
    epochs_run = len(history)
    wall = time.perf_counter() - start
    selection["best_epoch"] = best_epoch
    model.meta.update({"best_epoch": best_epoch, "metrics": chosen})
    res = TrainResult(best_epoch, epochs_run, train_time, eval_time, wall, train_time / max(1, epochs_run),
                      chosen["valid"], chosen["test"], history, selection)
    return model, res


def _merge(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The metrics of two disjoint user sets combined: user-weighted means (what one evaluation of both gives)."""
    out: dict[str, dict[str, float]] = {}
    for split in a:
        na, nb = a[split]["users"], b[split]["users"]
        n = na + nb
        out[split] = {k: ((a[split][k] * na if na else 0.0) + (b[split][k] * nb if nb else 0.0)) / n if n
                      else float("nan") for k in a[split] if k != "users"}
        out[split]["users"] = n
    return out


def estimate_pretrain_seconds(splits: DiffRecSplits, config: DiffRecConfig,
                              device: str | torch.device = "cpu") -> tuple[float, float]:
    """(expected, longest) wall seconds of `train_diffrec` here, from one timed training step and one timed
    reverse step on a throw-away model (about a second on ML-1M).

    Expected assumes early stopping after ``2 * patience + 5 * eval_every`` epochs (at most ``max_epochs``),
    longest that all ``max_epochs`` run. The caller's RNG state is left untouched.
    """
    device = torch.device(device)
    n = splits.n_users

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(0)
        model = DiffRec(splits.n_items, config, device)
        opt = torch.optim.AdamW(model.denoiser.parameters(), lr=config.lr)
        sampler = _ImportanceSampler(config.steps, device)
        gen = torch.Generator(device=device)
        gen.manual_seed(0)
        x = torch.from_numpy(splits.train[: min(n, config.batch_size)]).to(device)
        times = []
        for _ in range(3):  # the first one warms up allocators and kernels
            sync()
            t0 = time.perf_counter()
            loss = diffusion_loss(model, x, sampler, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
            times.append(time.perf_counter() - t0)
        step_s = min(times[1:])
        xe = torch.from_numpy(splits.train[: min(n, config.eval_batch_size)]).to(device)
        model.denoiser.eval()
        times = []
        with torch.inference_mode():
            for i in range(3):
                sync()
                t0 = time.perf_counter()
                model.posterior_mean(xe, i % config.steps)
                sync()
                times.append(time.perf_counter() - t0)
        user_step_s = min(times[1:]) / xe.shape[0]
    epoch_s = math.ceil(n / config.batch_size) * step_s
    screen = selection_users(splits, config)
    chain_s = config.steps * user_step_s  # one user's reverse chain
    screen_s = (n if screen is None else len(screen)) * chain_s
    final_s = 0.0 if screen is None else config.select_candidates * (n - len(screen)) * chain_s

    def total(epochs: int) -> float:
        return epochs * epoch_s + math.ceil(epochs / config.eval_every) * screen_s + final_s

    expected = min(config.max_epochs, 2 * config.patience + 5 * config.eval_every)
    return total(expected), total(config.max_epochs)


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _where(device: torch.device) -> str:
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu, {n} thread{'s' if n > 1 else ''}"
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def checkpoint_path(splits: DiffRecSplits, config: DiffRecConfig) -> Path:
    """``cache_dir()/diffrec/<dataset>-<fingerprint>-<confighash>.pt``."""
    return cache_dir() / "diffrec" / f"{splits.name}-{splits.fingerprint}-{config.hash()}.pt"


def fit_or_load_diffrec(dataset: LoggedDataset | DiffRecSplits, config: DiffRecConfig | None = None,
                        device: str | torch.device = "cpu", progress: bool = True,
                        log: Callable[[str], None] | None = None, refit: bool = False
                        ) -> tuple[DiffRec, DiffRecSplits]:
    """The cached pre-trained DiffRec for ``dataset`` (trained and cached atomically on a miss or ``refit``).

    A fresh training run first says so in one line (`recgym.progress.note`: dataset, expected time, cache
    file) and in one more when it is done. A corrupt or mismatching cache file is reported with a warning and
    rebuilt, never trusted. The checkpoint's ``meta`` holds the chosen epoch, its valid / test metrics and
    the seconds spent training and evaluating.
    """
    config = config or default_config(dataset.name)
    splits = dataset if isinstance(dataset, DiffRecSplits) else make_splits(
        dataset, config.valid_fraction, config.split_seed)
    path = checkpoint_path(splits, config)
    dev = torch.device(device)

    def fit() -> DiffRec:
        expected, longest = estimate_pretrain_seconds(splits, config, dev)
        note(f"recgym: pre-training DiffRec for {splits.name} (not in the cache; done once): expected about "
             f"{_duration(expected)}, at most {_duration(longest)} ({_where(dev)}); it will be cached at {path}")
        model, res = train_diffrec(splits, config, dev, progress=progress, log=log)
        model.meta.update({"train_seconds": res.train_seconds, "eval_seconds": res.eval_seconds,
                           "wall_seconds": res.wall_seconds, "seconds_per_epoch": res.seconds_per_epoch,
                           "epochs_run": res.epochs_run, "selection": res.selection})
        sel = f"Recall@{config.select_k}"
        note(f"recgym: DiffRec for {splits.name} pre-trained in {_duration(res.wall_seconds)} (training "
             f"{res.train_seconds:.0f} s, evaluation {res.eval_seconds:.0f} s; {res.epochs_run} epochs, best "
             f"{res.best_epoch}; test {sel} {res.test[sel]:.4f}); cached at {path}")
        return model

    model = cached_fit(path, fit, lambda p: DiffRec.load(p, dev, splits.fingerprint, config),
                       lambda m, p: m.save(p), refit=refit, what="DiffRec")
    return model, splits


_META_KEYS = ("train_seconds", "eval_seconds", "wall_seconds", "seconds_per_epoch", "best_epoch", "epochs_run",
              "selection")


def pretrain(dataset_name: str, config: DiffRecConfig | None = None, device: str | torch.device = "cpu",
             progress: bool = True, data_dir: str | None = None, force: bool = False,
             log: Callable[[str], None] | None = None, **dataset_kwargs: Any) -> tuple[DiffRec, dict[str, Any]]:
    """Pre-train (or load from the cache) DiffRec on a named dataset; returns the model and its metrics.

    Metrics: ``{"valid": {...}, "test": {...}, "train_seconds", "eval_seconds", "wall_seconds",
    "seconds_per_epoch", "best_epoch", "epochs_run", "selection", "checkpoint", "cached"}`` (the seconds are
    those of the run that made the checkpoint). ``force`` retrains even when a cached checkpoint exists.
    """
    from recgym.data import load_dataset

    ds = load_dataset(dataset_name, data_dir=data_dir, **dataset_kwargs)
    config = config or default_config(ds.name)
    splits = make_splits(ds, config.valid_fraction, config.split_seed)
    path = checkpoint_path(splits, config)
    cached = path.is_file() and not force
    model, splits = fit_or_load_diffrec(splits, config, device, progress, log, refit=force)
    # The checkpoint stores the metrics of its own weights; one without them is evaluated now.
    ev = model.meta.get("metrics") or evaluate_diffrec(model, splits)
    out = {"valid": ev["valid"], "test": ev["test"], "checkpoint": str(path), "cached": cached,
           **{k: model.meta.get(k) for k in _META_KEYS}}
    return model, out
