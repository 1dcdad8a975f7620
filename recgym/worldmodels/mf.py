"""A biased matrix-factorisation world model: the fast baseline (and a cheap reward source for 'mbpo').

``r_hat[u, i] = mu + b_u + b_i + p_u . q_i``, fitted by full-batch Adam on the squared error of the logged
rewards plus ``n_negatives`` sampled unlogged items per positive labelled ``negative_reward`` (0.0 by default,
as DORL labels negatives; ``n_negatives=0`` fits the logged ratings only) and L2 on the factors.

MF has no model uncertainty of its own. Its ``uncertainty`` is a documented count-based proxy, not a
calibrated variance: ``0.5 * (1/sqrt(1 + n_u) + 1/sqrt(1 + n_i))`` times the standard deviation of the
training rewards, with ``n_u`` / ``n_i`` the user's / item's number of logged interactions (large for
rarely-logged users and items, the pairs the logs say least about).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recgym.data.base import LoggedDataset
from recgym.progress import progress_bar
from recgym.worldmodels.base import WorldModel, log_scalar, train_arrays


@dataclass
class MFConfig:
    """Hyper-parameters of `MFWorldModel`."""

    dim: int = 16
    epochs: int = 200
    lr: float = 0.05
    l2: float = 1e-3
    n_negatives: int = 0
    negative_reward: float | None = 0.0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.epochs < 1 or self.lr <= 0 or self.l2 < 0 or self.n_negatives < 0:
            raise ValueError(f"MFConfig needs dim>=1, epochs>=1, lr>0, l2>=0, n_negatives>=0; got {self}")


class MFWorldModel(WorldModel):
    """Biased MF fitted on the training logs; uncertainty = count-based proxy (see the module docstring)."""

    kind = "mf"
    config_cls = MFConfig

    def __init__(self, config: MFConfig | dict[str, Any] | None = None, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        super().__init__(config, device, seed)

    def _build(self, extra: dict[str, Any]) -> None:
        d = self.config.dim
        self.P = nn.Parameter(torch.zeros(self.n_users, d))
        self.Q = nn.Parameter(torch.zeros(self.n_items, d))
        self.bu = nn.Parameter(torch.zeros(self.n_users))
        self.bi = nn.Parameter(torch.zeros(self.n_items))
        self.mu = nn.Parameter(torch.zeros(()))

    def _fit(self, dataset: LoggedDataset, logger: Any, progress: bool) -> None:
        c, dev = self.config, self.device
        users, items, rewards = train_arrays(dataset)
        self._build({})
        gen = torch.Generator(device="cpu")
        gen.manual_seed(self.seed)
        with torch.no_grad():
            self.P.normal_(0, 0.1, generator=gen)
            self.Q.normal_(0, 0.1, generator=gen)
            self.mu.fill_(float(rewards.mean()))
        super().to(dev)
        dgen = torch.Generator(device=dev)
        dgen.manual_seed(self.seed)
        u = torch.as_tensor(users, device=dev)
        i = torch.as_tensor(items, device=dev)
        r = torch.as_tensor(rewards, device=dev)
        neg_r = float(rewards.min()) if c.negative_reward is None else float(c.negative_reward)
        keys = torch.sort(u * self.n_items + i).values
        opt = torch.optim.Adam(self.parameters(), lr=c.lr)
        it = range(c.epochs)
        if progress:
            it = progress_bar(it, desc=f"mf[{dataset.name}]", unit="epoch")
        for epoch in it:
            uu, ii, rr = u, i, r
            if c.n_negatives:
                nu = u.repeat(c.n_negatives)
                ni = torch.randint(0, self.n_items, nu.shape, device=dev, generator=dgen)
                ok = ~torch.isin(nu * self.n_items + ni, keys)
                uu = torch.cat([u, nu[ok]])
                ii = torch.cat([i, ni[ok]])
                rr = torch.cat([r, torch.full((int(ok.sum()),), neg_r, device=dev)])
            pred = self.mu + self.bu[uu] + self.bi[ii] + (self.P[uu] * self.Q[ii]).sum(1)
            loss = (pred - rr).pow(2).mean() + c.l2 * (self.P.pow(2).sum() + self.Q.pow(2).sum()) / len(users)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if epoch % 20 == 0:
                log_scalar(logger, "worldmodel/mf_loss", float(loss.detach()), epoch)
        with torch.no_grad():
            self._mean = (self.mu + self.bu[:, None] + self.bi[None, :] + self.P @ self.Q.T).float()
            n_u = torch.bincount(u, minlength=self.n_users).float()
            n_i = torch.bincount(i, minlength=self.n_items).float()
            sd = float(np.std(rewards)) or 1.0
            self._unc = (0.5 * sd * ((1 + n_u[:, None]).rsqrt() + (1 + n_i[None, :]).rsqrt())).float()
