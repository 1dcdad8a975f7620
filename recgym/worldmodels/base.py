"""Shared machinery of the reward world models: fitted state, fingerprints, atomic save/load, checks.

A world model is fitted once on a `LoggedDataset`'s *training* logs and then answers `predict()` with the full
``(n_users, n_items)`` mean-reward matrix and an uncertainty matrix of the same shape (float32 tensors on the
model's device). Both matrices are computed once at the end of `fit` (DORL computes them once before policy
learning too) and stored with the weights, so a cached model loads without any recomputation and
`predict()` is deterministic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recgym.data.base import LoggedDataset
from recgym.data.cache import atomic_write

FORMAT_VERSION = 1


class NotFittedError(RuntimeError):
    """`predict()` (or `save()`) was called on a world model that was never fitted."""


class WorldModelCacheError(ValueError):
    """A saved world model does not match what the caller asked for (kind, dataset or config)."""


def dataset_fingerprint(dataset: LoggedDataset) -> str:
    """A short stable id of a dataset's training logs (what a world model depends on).

    Uses ``meta["fingerprint"]`` / ``meta["sha256"]`` when the loader provides one, else hashes the train
    arrays (user, item, reward), the side logs and side categories when there are any, and the id-space sizes.
    """
    meta = dataset.meta or {}
    for key in ("fingerprint", "sha256", "sha"):
        val = meta.get(key)
        if isinstance(val, str) and val:
            return hashlib.sha256(f"{dataset.name}:{dataset.n_users}:{dataset.n_items}:{val}".encode()).hexdigest()[:16]
        if isinstance(val, dict) and val:
            blob = json.dumps(val, sort_keys=True, default=str)
            return hashlib.sha256(f"{dataset.name}:{dataset.n_users}:{dataset.n_items}:{blob}".encode()).hexdigest()[:16]
    h = hashlib.sha256()
    h.update(f"{dataset.name}:{dataset.n_users}:{dataset.n_items}".encode())
    for col in ("user", "item", "reward"):
        h.update(np.ascontiguousarray(dataset.train[col].to_numpy()).tobytes())
    if dataset.side_train is not None and dataset.side_item_categories is not None:
        h.update(f"side:{dataset.n_side_items}".encode())
        for col in ("user", "item", "reward"):
            h.update(np.ascontiguousarray(dataset.side_train[col].to_numpy()).tobytes())
        h.update(np.ascontiguousarray(dataset.side_item_categories).tobytes())
    return h.hexdigest()[:16]


def config_hash(config: Any) -> str:
    """A short stable hash of a config dataclass (or dict)."""
    d = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """`torch.save` to a temp file in the same folder, then `os.replace` (never a half-written file)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def build_world_config(cls: type, config: Any = None, **overrides: Any) -> Any:
    """Turn ``None`` / a dict / a dataclass instance of ``cls`` into a ``cls`` instance (unknown keys -> error)."""
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, cls):
        base = dataclasses.asdict(config)
    elif isinstance(config, dict):
        base = dict(config)
    else:
        raise TypeError(f"config must be None, a dict or a {cls.__name__}, got {type(config).__name__}")
    base.update(overrides)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(base) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(names)}")
    out = cls(**base)
    for f in dataclasses.fields(cls):  # tuples survive a JSON round trip as lists
        if isinstance(getattr(out, f.name), list):
            setattr(out, f.name, tuple(getattr(out, f.name)))
    return out


def side_train_arrays(dataset: LoggedDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(users int64, side items int64 in ``0..n_side_items-1``, rewards float32) of the side logs, or None
    when the dataset has none (or they are empty). Ids and rewards were validated by `LoggedDataset`."""
    st = dataset.side_train
    if st is None or len(st) == 0:
        return None
    return (np.array(st["user"].to_numpy(np.int64), copy=True), np.array(st["item"].to_numpy(np.int64), copy=True),
            np.array(st["reward"].to_numpy(np.float32), copy=True))


def train_arrays(dataset: LoggedDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users int64, items int64, rewards float32) of the training logs, validated against the id spaces."""
    tr = dataset.train
    for col in ("user", "item", "reward"):
        if col not in tr.columns:
            raise ValueError(f"{dataset.name}: train logs lack column {col!r} (have {list(tr.columns)})")
    u = np.array(tr["user"].to_numpy(np.int64), copy=True)
    i = np.array(tr["item"].to_numpy(np.int64), copy=True)
    r = np.array(tr["reward"].to_numpy(np.float32), copy=True)
    if len(u) == 0:
        raise ValueError(f"{dataset.name}: train logs are empty; a world model needs logged interactions")
    if u.min() < 0 or u.max() >= dataset.n_users or i.min() < 0 or i.max() >= dataset.n_items:
        raise ValueError(f"{dataset.name}: train user/item ids out of range [0, n_users/n_items)")
    if not np.isfinite(r).all():
        raise ValueError(f"{dataset.name}: train rewards contain NaN/inf")
    return u, i, r


class WorldModel(nn.Module):
    """Base class: fitted flag, cached prediction matrices, save/load, NaN checks.

    Subclasses set ``kind`` and ``config_cls`` and implement ``_fit(dataset, logger, progress)`` which must
    fill ``self._mean`` and ``self._unc`` (float32 ``(n_users, n_items)`` on ``self.device``).
    """

    kind: ClassVar[str] = ""
    config_cls: ClassVar[type] = object

    def __init__(self, config: Any = None, device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__()
        self.config = build_world_config(self.config_cls, config)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.fitted = False
        self.fingerprint: str | None = None
        self.dataset_name: str | None = None
        self.n_users = 0
        self.n_items = 0
        self.fit_seconds = 0.0
        self._mean: torch.Tensor | None = None
        self._unc: torch.Tensor | None = None

    # -- API -------------------------------------------------------------------------------------------------
    def fit(self, dataset: LoggedDataset, config: Any = None, logger: Any = None,
            progress: bool = False) -> WorldModel:
        """Fit on ``dataset.train`` (``config`` replaces the constructor's config); returns ``self``."""
        import time

        if config is not None:
            self.config = build_world_config(self.config_cls, config)
        self.n_users, self.n_items = int(dataset.n_users), int(dataset.n_items)
        self.dataset_name = dataset.name
        self.fingerprint = dataset_fingerprint(dataset)
        torch.manual_seed(self.seed)
        t0 = time.perf_counter()
        self._fit(dataset, logger, progress)
        self.fit_seconds = time.perf_counter() - t0
        assert self._mean is not None and self._unc is not None
        self._check_finite(self._mean, self._unc)
        self.fitted = True
        return self

    def predict(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, uncertainty): float32 ``(n_users, n_items)`` tensors on the model's device."""
        if not self.fitted or self._mean is None or self._unc is None:
            raise NotFittedError(f"{type(self).__name__}.predict() called before fit(); call fit(dataset) "
                                 "or use recgym.worldmodels.fit_or_load")
        self._check_finite(self._mean, self._unc)
        return self._mean, self._unc

    def to(self, *args: Any, **kwargs: Any) -> WorldModel:  # type: ignore[override]
        out = super().to(*args, **kwargs)
        dev = torch.empty(0).to(*args, **kwargs).device
        self.device = dev
        if self._mean is not None:
            self._mean = self._mean.to(dev)
        if self._unc is not None:
            self._unc = self._unc.to(dev)
        return out  # type: ignore[return-value]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Atomically write config, weights, fitted matrices and provenance to ``path``."""
        if not self.fitted:
            raise NotFittedError(f"{type(self).__name__}.save() called before fit()")
        atomic_torch_save(
            {
                "format": FORMAT_VERSION,
                "kind": self.kind,
                "config": dataclasses.asdict(self.config),
                "config_hash": config_hash(self.config),
                "seed": self.seed,
                "fingerprint": self.fingerprint,
                "dataset_name": self.dataset_name,
                "n_users": self.n_users,
                "n_items": self.n_items,
                "fit_seconds": self.fit_seconds,
                "extra": self._extra_state(),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "mean": self._mean.detach().cpu(),  # type: ignore[union-attr]
                "unc": self._unc.detach().cpu(),  # type: ignore[union-attr]
            },
            path,
        )

    def load(self, path: str | os.PathLike[str], expect_fingerprint: str | None = None) -> WorldModel:
        """Load a file written by `save` (kind must match; ``expect_fingerprint`` checks the dataset)."""
        blob = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION or "kind" not in blob:
            raise WorldModelCacheError(f"{path}: not a recgym world-model file (format {FORMAT_VERSION})")
        if blob["kind"] != self.kind:
            raise WorldModelCacheError(f"{path}: holds a {blob['kind']!r} world model, expected {self.kind!r}")
        if expect_fingerprint is not None and blob["fingerprint"] != expect_fingerprint:
            raise WorldModelCacheError(
                f"{path}: fitted on dataset {blob['dataset_name']!r} (fingerprint {blob['fingerprint']}), "
                f"expected fingerprint {expect_fingerprint}: it belongs to another dataset"
            )
        self.config = build_world_config(self.config_cls, blob["config"])
        self.seed = int(blob["seed"])
        self.fingerprint = blob["fingerprint"]
        self.dataset_name = blob["dataset_name"]
        self.n_users, self.n_items = int(blob["n_users"]), int(blob["n_items"])
        self.fit_seconds = float(blob.get("fit_seconds", 0.0))
        self._build(blob["extra"])
        self.load_state_dict(blob["state_dict"])
        super().to(self.device)
        self._mean = blob["mean"].to(self.device, torch.float32)
        self._unc = blob["unc"].to(self.device, torch.float32)
        if self._mean.shape != (self.n_users, self.n_items) or self._unc.shape != self._mean.shape:
            raise WorldModelCacheError(f"{path}: prediction matrices have the wrong shape {tuple(self._mean.shape)}")
        self._check_finite(self._mean, self._unc)
        self.fitted = True
        return self

    # -- hooks -----------------------------------------------------------------------------------------------
    def _fit(self, dataset: LoggedDataset, logger: Any, progress: bool) -> None:  # pragma: no cover
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        """Whatever `_build` needs to re-create the modules before `load_state_dict` (sizes, scalers)."""
        return {}

    def _build(self, extra: dict[str, Any]) -> None:
        """Re-create sub-modules from `_extra_state` (default: nothing to build)."""

    @staticmethod
    def _check_finite(mean: torch.Tensor, unc: torch.Tensor) -> None:
        if not bool(torch.isfinite(mean).all()):
            raise FloatingPointError("world model predicted NaN/inf rewards; refit with a smaller learning rate")
        if not bool(torch.isfinite(unc).all()) or bool((unc < 0).any()):
            raise FloatingPointError("world model uncertainty contains NaN/inf or negative values")


def log_scalar(logger: Any, tag: str, value: float, step: int) -> None:
    """Log through an object with ``log_scalar`` (or ignore when ``logger`` is None)."""
    if logger is not None:
        logger.log_scalar(tag, float(value), int(step))


def reward_range(dataset: LoggedDataset) -> tuple[float, float]:
    """(min, max) of the training rewards."""
    r = dataset.train["reward"].to_numpy(np.float32)
    return float(r.min()), float(r.max())
