"""ROLeR-style non-parametric reward shaping: similarity-weighted kNN over users.

Each user ``u`` is described by a row of a *source* matrix: the training matrix (``source="train"``; rows are
the logged rewards, 0 = unlogged) or a fitted world model's predicted matrix (``source="<kind>"``, e.g.
``"deepfm"``, fitted or loaded through `recgym.worldmodels.fit_or_load`). Users are compared by cosine
similarity of their rows; ``N_k(u)`` are the ``k`` most similar other users and ``w_uv`` their similarities
(clamped at 0).

* ``mean[u, i]``: the ``w``-weighted average of the neighbours' values at item ``i``. With the train source,
  only neighbours who logged ``i`` count; where none did, the value falls back to ``fallback`` (the
  user's own mean logged reward by default, ``"zero"`` for 0). With a predicted source every neighbour counts.
* ``uncertainty[u, i]``: ROLeR's distance-based penalty: the ``w``-weighted mean cosine distance
  ``1 - sim(u, v)`` of the neighbours that contributed at ``(u, i)`` (1 where none did), scaled by the
  standard deviation of the training rewards so that it is in reward units.

Everything is dense batched tensor algebra on the device (users x users similarity in row chunks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recgym.data.base import LoggedDataset
from recgym.worldmodels.base import WorldModel, train_arrays


@dataclass
class KNNConfig:
    """Hyper-parameters of `KNNShaping`."""

    k: int = 20
    source: str = "train"
    fallback: str = "user_mean"
    chunk_users: int = 2048

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"KNNConfig.k must be >= 1, got {self.k}")
        if self.fallback not in ("user_mean", "zero"):
            raise ValueError(f"KNNConfig.fallback must be 'user_mean' or 'zero', got {self.fallback!r}")
        if not self.source or self.source == "knn":
            raise ValueError(f"KNNConfig.source must be 'train' or a world-model kind, got {self.source!r}")


class KNNShaping(WorldModel):
    """Similarity-weighted kNN over users of the train matrix or of a world model's predictions."""

    kind = "knn"
    config_cls = KNNConfig

    def __init__(self, config: KNNConfig | dict[str, Any] | None = None, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        super().__init__(config, device, seed)

    def _fit(self, dataset: LoggedDataset, logger: Any, progress: bool) -> None:
        c, dev = self.config, self.device
        users, items, rewards = train_arrays(dataset)
        n_u, n_i = self.n_users, self.n_items
        sd = float(np.std(rewards)) or 1.0
        if c.source == "train":
            src = torch.zeros(n_u, n_i, device=dev)
            obs = torch.zeros(n_u, n_i, device=dev)
            ut, it = torch.as_tensor(users, device=dev), torch.as_tensor(items, device=dev)
            src[ut, it] = torch.as_tensor(rewards, device=dev)
            obs[ut, it] = 1.0
        else:
            from recgym.worldmodels import fit_or_load

            base = fit_or_load(c.source, dataset, device=dev, progress=progress, seed=self.seed)
            src = base.predict()[0].to(dev)
            obs = None
        mean, unc = self.shape_rewards(src, obs, c.k, c.chunk_users)
        if obs is not None and c.fallback == "user_mean":
            cnt = obs.sum(1, keepdim=True)
            own = src.sum(1, keepdim=True) / cnt.clamp_min(1.0)
            none = unc >= 1.0
            mean = torch.where(none, own.expand_as(mean), mean)
        self._mean = mean.float()
        self._unc = (unc * sd).float()

    @staticmethod
    @torch.no_grad()
    def shape_rewards(src: torch.Tensor, obs: torch.Tensor | None, k: int,
                      chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, distance) by kNN over the rows of ``src`` (``obs``: which entries are observed, or None).

        ``distance`` is the weighted mean cosine distance of the contributing neighbours (1 where none).
        """
        n_u = src.shape[0]
        k = min(k, max(1, n_u - 1))
        unit = src / src.norm(dim=1, keepdim=True).clamp_min(1e-12)
        chunk = max(1, min(chunk, (1 << 25) // max(1, k * src.shape[1])))
        means, dists = [], []
        for s in range(0, n_u, chunk):
            sim = unit[s:s + chunk] @ unit.T  # (b, U)
            rows = torch.arange(s, min(n_u, s + chunk), device=src.device)
            sim[torch.arange(len(rows), device=src.device), rows] = -float("inf")  # exclude self
            top_s, top_i = sim.topk(k, dim=1)
            w = top_s.clamp_min(0.0)  # (b, k)
            vals = src[top_i]  # (b, k, I)
            o = torch.ones_like(vals) if obs is None else obs[top_i]
            ww = w[:, :, None] * o
            den = ww.sum(1)
            means.append((ww * vals).sum(1) / den.clamp_min(1e-12))
            d = (ww * (1.0 - top_s.clamp(-1, 1))[:, :, None]).sum(1) / den.clamp_min(1e-12)
            dists.append(torch.where(den > 0, d, torch.ones_like(d)))
        mean = torch.cat(means)
        dist = torch.cat(dists)
        return torch.where(dist >= 1.0, torch.zeros_like(mean), mean), dist.clamp(0.0, 1.0)
