"""World models: LoggedDataset -> fitted model -> reward and uncertainty matrices (torch).

Kinds (`WORLD_MODELS`): ``deepfm`` (DORL's Gaussian DeepFM ensemble), ``diffusion`` (R3S's diffusion world
model), ``mf`` (biased MF baseline), ``knn`` (ROLeR's kNN reward shaping). `fit_or_load` fits a model once
and caches it under ``cache_dir()/worldmodels`` keyed by the dataset fingerprint and the config hash
(the load-or-fit step is `recgym.worldmodels.cache.cached_fit`, shared with DiffRec's cache).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from recgym.data.registry import model_defaults, registered_datasets
from recgym.worldmodels.base import (
    NotFittedError,
    WorldModel,
    WorldModelCacheError,
    build_world_config,
    config_hash,
    dataset_fingerprint,
)
from recgym.worldmodels.cache import cached_fit

_KINDS: dict[str, tuple[str, str]] = {
    "deepfm": ("recgym.worldmodels.deepfm", "DeepFMEnsemble"),
    "diffusion": ("recgym.worldmodels.diffusion", "DiffusionWorldModel"),
    "mf": ("recgym.worldmodels.mf", "MFWorldModel"),
    "knn": ("recgym.worldmodels.knn", "KNNShaping"),
}
WORLD_MODELS: tuple[str, ...] = tuple(_KINDS)


def default_config(kind: str, dataset_name: str) -> dict[str, Any] | None:
    """The dataset's registered default config for world-model ``kind`` (``DatasetInfo.model_defaults``: lighter
    configs for the large sets, so a first fit stays feasible on 2 CPU cores), or None (the config class
    defaults). Used by the InteractiveRec envs and the quality benchmark when no config is given."""
    return model_defaults(dataset_name, kind) or None


def world_model_class(kind: str) -> type[WorldModel]:
    """The class implementing world-model ``kind``."""
    import importlib

    if kind not in _KINDS:
        raise ValueError(f"unknown world model kind {kind!r}; valid kinds: {list(_KINDS)}")
    mod, name = _KINDS[kind]
    return getattr(importlib.import_module(mod), name)


def cache_path(kind: str, dataset: Any, config: Any = None, seed: int = 0) -> Path:
    """Where `fit_or_load` keeps the fitted ``kind`` model for ``dataset`` / ``config`` / ``seed``."""
    from recgym.data.paths import cache_dir

    cls = world_model_class(kind)
    cfg = build_world_config(cls.config_cls, config)
    key = f"{dataset.name}-{kind}-{dataset_fingerprint(dataset)}-{config_hash(cfg)}-s{int(seed)}.pt"
    return cache_dir() / "worldmodels" / key


def fit_or_load(kind: str, dataset: Any, config: Any = None, device: str = "cpu", progress: bool = True,
                seed: int = 0, logger: Any = None, refit: bool = False) -> WorldModel:
    """A fitted ``kind`` world model for ``dataset``: loaded from the cache, or fitted and cached.

    The cache file name carries the dataset fingerprint and the config hash; the file's own recorded
    fingerprint and config are checked again on load. A file that cannot be read (truncated, corrupt) or
    that does not match is refitted and overwritten (atomically), never trusted (`cached_fit`).
    """
    cls = world_model_class(kind)
    cfg = build_world_config(cls.config_cls, config)
    fp = dataset_fingerprint(dataset)

    def load(path: Path) -> WorldModel:
        model = cls(cfg, device=device, seed=seed)
        model.load(path, expect_fingerprint=fp)
        if config_hash(model.config) != config_hash(cfg):
            raise WorldModelCacheError(f"{path}: config differs from the requested one")
        return model

    def fit() -> WorldModel:
        model = cls(cfg, device=device, seed=seed)
        model.fit(dataset, logger=logger, progress=progress)
        return model

    return cached_fit(cache_path(kind, dataset, cfg, seed), fit, load, lambda m, p: m.save(p), refit=refit,
                      what=f"{kind} world-model")


def load_world_model(path: str | os.PathLike[str], kind: str | None = None, dataset: Any = None,
                     config: Any = None, device: str = "cpu") -> WorldModel:
    """Load a saved world model; with ``dataset`` / ``config`` given, a mismatch raises `WorldModelCacheError`."""
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or "kind" not in blob:
        raise WorldModelCacheError(f"{path}: not a recgym world-model file")
    k = blob["kind"] if kind is None else kind
    cls = world_model_class(k)
    model = cls(device=device)
    model.load(path, expect_fingerprint=None if dataset is None else dataset_fingerprint(dataset))
    if config is not None:
        want = build_world_config(cls.config_cls, config)
        if config_hash(model.config) != config_hash(want):
            raise WorldModelCacheError(
                f"{path}: fitted with config {dataclasses.asdict(model.config)}, expected {dataclasses.asdict(want)}"
            )
    return model


def __getattr__(name: str) -> Any:
    if name == "DATASET_DEFAULTS":  # (dataset, kind) -> config overrides, read from the dataset registry
        return {(i.name, k): dict(v) for i in registered_datasets() for k, v in i.model_defaults.items()
                if k in _KINDS}
    lazy = {"DeepFMEnsemble": "deepfm", "DiffusionWorldModel": "diffusion", "MFWorldModel": "mf", "KNNShaping": "knn"}
    if name in lazy:
        return world_model_class(lazy[name])
    raise AttributeError(f"module 'recgym.worldmodels' has no attribute {name!r}")


__all__ = [
    "DATASET_DEFAULTS",
    "WORLD_MODELS",
    "DeepFMEnsemble",
    "DiffusionWorldModel",
    "KNNShaping",
    "MFWorldModel",
    "NotFittedError",
    "WorldModel",
    "WorldModelCacheError",
    "cache_path",
    "dataset_fingerprint",
    "default_config",
    "fit_or_load",
    "load_world_model",
    "world_model_class",
]
