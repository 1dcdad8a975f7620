"""What every ``DiffusionDenoise-*`` env on one (dataset, model config, device) shares: the data tensors, the
frozen pre-trained DiffRec (`load_resources`, memoised per process for named datasets), the similar-user item
weights of the RACS reward (`similar_user_signal`) and the guidance action basis (`guidance_basis`).
The env itself is `recgym.envs.denoise.DiffusionDenoiseEnv`."""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from recgym.data.base import LoggedDataset
from recgym.recommenders import (
    CheckpointMismatchError,
    DiffRec,
    DiffRecConfig,
    DiffRecSplits,
    default_config,
    fit_or_load_diffrec,
    make_splits,
)

SIGNAL_WEIGHTING = ("uniform", "cosine")


def similar_user_signal(train: torch.Tensor, n_similar: int = 10, chunk: int = 512,
                        weighting: str = "cosine") -> torch.Tensor:
    """Item weights ``w_u(i)`` from each user's ``n_similar`` most cosine-similar users (float32 [U, I]).

    Over the top neighbours ``v != u`` with positive similarity: ``weighting="cosine"``: ``w_u = sum_v cos(u, v)
    X[v] / sum_v cos(u, v)``; ``"uniform"``: ``w_u = mean_v X[v]``, so ``sum_{i in L} w_u(i)`` is the mean over
    the neighbours of their hits in a list L (RACS's N_simK). A row is 0 when the user has no neighbour with
    positive similarity.
    """
    if weighting not in SIGNAL_WEIGHTING:
        raise ValueError(f"weighting={weighting!r}, expected one of {SIGNAL_WEIGHTING}")
    n_users = train.shape[0]
    k = min(int(n_similar), n_users - 1)
    if k < 1:
        return torch.zeros_like(train)
    xn = nn.functional.normalize(train, dim=1)
    out = torch.empty_like(train)
    for lo in range(0, n_users, chunk):
        hi = min(n_users, lo + chunk)
        sim = xn[lo:hi] @ xn.T
        sim[torch.arange(hi - lo, device=train.device), torch.arange(lo, hi, device=train.device)] = -1.0
        s, idx = sim.topk(k, dim=1)
        s = s.clamp(min=0.0)
        if weighting == "uniform":
            s = (s > 0).to(s.dtype)
        denom = s.sum(1, keepdim=True)
        wgt = torch.where(denom > 0, s / denom.clamp(min=1e-12), torch.zeros_like(s))
        out[lo:hi] = torch.einsum("bk,bki->bi", wgt, train[idx])
    return out


def guidance_basis(train: torch.Tensor, g: int) -> torch.Tensor:
    """Top-``g`` right singular vectors of ``train`` as float32 ``[g, n_items]`` unit rows (deterministic signs)."""
    n_items = train.shape[1]
    if not 1 <= g <= n_items:
        raise ValueError(f"guidance_dim={g} must be in [1, n_items={n_items}]")
    gram = (train.T.to(torch.float64) @ train.to(torch.float64))
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    v = evecs[:, -g:].flip(1).T  # [g, n_items], by decreasing singular value
    sign = torch.sign(v.gather(1, v.abs().argmax(1, keepdim=True)))
    return (v * sign).to(torch.float32).contiguous()


@dataclass
class DenoiseResources:
    """What every env on one (dataset, model config, device) shares: data tensors and the frozen model."""

    name: str
    model: DiffRec
    splits: DiffRecSplits
    train: torch.Tensor  # float32 [U, I] binary
    valid: torch.Tensor  # bool [U, I]
    n_train: torch.Tensor  # int64 [U]
    signal: dict[tuple[int, str], torch.Tensor]  # (n_similar, weighting) -> float32 [U, I]
    basis: dict[int, torch.Tensor]  # G -> float32 [G, I]

    def similar(self, n_similar: int, weighting: str = "cosine") -> torch.Tensor:
        key = (int(n_similar), weighting)
        if key not in self.signal:
            self.signal[key] = similar_user_signal(self.train, n_similar, weighting=weighting)
        return self.signal[key]

    def guidance(self, g: int) -> torch.Tensor:
        if g not in self.basis:
            self.basis[g] = guidance_basis(self.train, g)
        return self.basis[g]


_MEMO: OrderedDict[Any, DenoiseResources] = OrderedDict()
_MEMO_SIZE = 2


def _freeze(model: DiffRec) -> DiffRec:
    model.denoiser.eval()
    for p in model.denoiser.parameters():
        p.requires_grad_(False)
    return model


def load_resources(dataset: LoggedDataset | str, device: torch.device, config: DiffRecConfig | None = None,
                   model: DiffRec | None = None, data_dir: Any = None,
                   dataset_kwargs: dict[str, Any] | None = None, progress: bool = True) -> DenoiseResources:
    """Dataset splits + frozen pre-trained DiffRec on ``device`` (memoised per process for named datasets)."""
    key = None
    if isinstance(dataset, str) and model is None:
        cfg_key = None if config is None else config.hash()
        key = (dataset, str(data_dir), repr(sorted((dataset_kwargs or {}).items())), cfg_key, str(device))
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return _MEMO[key]
    if isinstance(dataset, str):
        from recgym.data import load_dataset

        ds = load_dataset(dataset, data_dir=data_dir, **(dataset_kwargs or {}))
    elif isinstance(dataset, LoggedDataset):
        ds = dataset
    else:
        raise TypeError(f"dataset must be a LoggedDataset or a dataset name, got {type(dataset).__name__}")
    if model is not None:
        cfg = model.config
        splits = make_splits(ds, cfg.valid_fraction, cfg.split_seed)
        fp = model.meta.get("fingerprint")
        if fp is not None and fp != splits.fingerprint:
            raise CheckpointMismatchError(
                f"model was trained on dataset {model.meta.get('dataset')!r} (fingerprint {fp}), "
                f"but the env's dataset {ds.name!r} has fingerprint {splits.fingerprint}"
            )
        if model.n_items != ds.n_items:
            raise ValueError(f"model has n_items={model.n_items}, dataset {ds.name!r} has {ds.n_items}")
        model = copy.deepcopy(model).to(device)  # the env freezes its own copy, never the caller's model
    else:
        cfg = config or default_config(ds.name)
        model, splits = fit_or_load_diffrec(ds, cfg, device, progress=progress)
    train = torch.from_numpy(splits.train).to(device)
    res = DenoiseResources(
        name=ds.name,
        model=_freeze(model),
        splits=splits,
        train=train,
        valid=torch.from_numpy(splits.valid).to(device),
        n_train=(train > 0).sum(1),
        signal={},
        basis={},
    )
    if key is not None:
        _MEMO[key] = res
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return res
