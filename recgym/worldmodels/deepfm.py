"""DORL's world model: an ensemble of DeepFMs with a Gaussian head (mean, log-variance).

Each member is a DeepFM (first-order terms + FM pairwise interactions + a DNN over the concatenated field
embeddings) over the fields user id, item id and, where the dataset has them, a user-feature field and an
item-feature field (`user_features` / `item_features`, or the multi-hot `item_categories` tags as item
features when no item features ship, as on KuaiRand). A multi-hot feature row is one field whose embedding is
the mean of its active features' embeddings. The DNN's last layer has two outputs: a mean correction and the
log-variance. Loss: Gaussian negative log-likelihood, pointwise, on every logged interaction plus
``n_negatives`` sampled negatives per positive (items the user did not log, drawn uniformly).

Negatives get the reward ``negative_reward`` (default 0.0, as in DORL's code, where sampled negatives are
labelled 0 for clicks and ratings alike; ``None`` uses the smallest training reward). With rating data this
pulls the predictions of unexposed items down, which is the DORL world model's intended pessimism about
exposure; the quality report shows its cost on the unbiased test ratings.

Side logs (`LoggedDataset.side_train`, KuaiRec's big-matrix rows on videos outside the small matrix): with
``side_logs=True`` (the default; DORL's user model trains on every big-matrix row) the model trains on the
training logs plus the side logs. Its item tables (embeddings, first-order weights) then have
``n_items + n_side_items`` rows: action items first, side item ``j`` at row ``n_items + j``, with
``side_item_categories`` as the side items' feature rows (a dataset that ships dense ``item_features`` has
none for side items and is refused). Negatives are drawn over all of these rows, since the side videos belong
to the same catalogue the logging policy served. Predictions cover the ``n_items`` action items only, so the
reward matrix the env uses stays ``(n_users, n_items)``. ``side_logs=False`` ignores the side logs: the fit is
then exactly the fit on the dataset without them.

The members are trained together as one batched module (parameters carry a leading ensemble axis and the DNN
uses batched matmuls), each with its own initialisation, data order and negatives. After training the whole
``(n_users, n_items)`` matrix is predicted in user chunks on the device: ``mean`` = mean of the members'
means, ``uncertainty`` = max over members of the predicted variance (DORL's ``max var``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recgym.data.base import LoggedDataset
from recgym.progress import progress_bar
from recgym.worldmodels.base import WorldModel, log_scalar, side_train_arrays, train_arrays


@dataclass
class DeepFMConfig:
    """Hyper-parameters (defaults: DORL's; ``embed_dim`` 4 on KuaiRand in DORL)."""

    n_members: int = 5
    embed_dim: int = 8
    dnn: tuple[int, ...] = (128, 128)
    epochs: int = 5
    n_negatives: int = 5
    negative_reward: float | None = 0.0
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 1e-6
    use_features: bool = True
    min_logvar: float = -8.0
    max_logvar: float = 6.0
    predict_chunk_elems: int = 1 << 24
    side_logs: bool = True  # also train on the dataset's side logs (items outside the action space), as DORL

    def __post_init__(self) -> None:
        for name in ("n_members", "embed_dim", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DeepFMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_negatives < 0:
            raise ValueError(f"DeepFMConfig.n_negatives must be >= 0, got {self.n_negatives}")
        if self.lr <= 0:
            raise ValueError(f"DeepFMConfig.lr must be > 0, got {self.lr}")


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    s = np.abs(x).sum(1, keepdims=True)
    return x / np.maximum(s, 1e-8)


class _EnsembleDeepFM(nn.Module):
    """E DeepFMs with a leading ensemble axis on every parameter."""

    def __init__(self, n_members: int, n_users: int, n_items: int, d_user_feat: int, d_item_feat: int,
                 k: int, dnn: tuple[int, ...]) -> None:
        super().__init__()
        e = n_members

        def p(*shape: int, std: float = 0.0) -> nn.Parameter:
            t = torch.zeros(*shape)
            if std > 0:
                t.normal_(0.0, std)
            return nn.Parameter(t)

        self.user_emb = p(e, n_users, k, std=0.05)
        self.item_emb = p(e, n_items, k, std=0.05)
        self.user_lin = p(e, n_users)
        self.item_lin = p(e, n_items)
        self.bias = p(e)
        self.d_uf, self.d_if = d_user_feat, d_item_feat
        if d_user_feat:
            self.uf_emb = p(e, d_user_feat, k, std=0.05)
            self.uf_lin = p(e, d_user_feat)
        if d_item_feat:
            self.if_emb = p(e, d_item_feat, k, std=0.05)
            self.if_lin = p(e, d_item_feat)
        n_fields = 2 + (1 if d_user_feat else 0) + (1 if d_item_feat else 0)
        dims = [n_fields * k, *dnn]
        self.ws = nn.ParameterList()
        self.bs = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            self.ws.append(p(e, a, b, std=math.sqrt(2.0 / a)))
            self.bs.append(p(e, 1, b))
        self.w_out = p(e, dims[-1], 2, std=0.01)
        self.b_out = p(e, 1, 2)

    def forward(self, u: torch.Tensor, i: torch.Tensor, uf: torch.Tensor | None,
                itf: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """u, i: (E, N) ids; uf/itf: (U, d)/(I, d) normalised feature rows. Returns mean, logvar (E, N)."""
        e_idx = torch.arange(u.shape[0], device=u.device)[:, None]
        fields = [self.user_emb[e_idx, u], self.item_emb[e_idx, i]]
        lin = self.bias[:, None] + self.user_lin[e_idx, u] + self.item_lin[e_idx, i]
        if self.d_uf and uf is not None:
            x = uf[u]  # (E, N, d)
            fields.append(torch.bmm(x, self.uf_emb))
            lin = lin + torch.bmm(x, self.uf_lin[:, :, None])[..., 0]
        if self.d_if and itf is not None:
            x = itf[i]
            fields.append(torch.bmm(x, self.if_emb))
            lin = lin + torch.bmm(x, self.if_lin[:, :, None])[..., 0]
        stack = torch.stack(fields, dim=2)  # (E, N, F, k)
        s = stack.sum(2)
        fm = 0.5 * (s.pow(2) - stack.pow(2).sum(2)).sum(-1)
        h = stack.flatten(2)
        for w, b in zip(self.ws, self.bs, strict=True):
            h = torch.relu(torch.baddbmm(b, h, w))
        out = torch.baddbmm(self.b_out, h, self.w_out)
        return lin + fm + out[..., 0], out[..., 1]


class DeepFMEnsemble(WorldModel):
    """DORL's 5-member Gaussian DeepFM ensemble; uncertainty = max predicted variance over members."""

    kind = "deepfm"
    config_cls = DeepFMConfig

    def __init__(self, config: DeepFMConfig | dict[str, Any] | None = None, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        super().__init__(config, device, seed)
        self.net: _EnsembleDeepFM | None = None
        self.n_side_items = 0  # item-table rows after the n_items action items (side logs; 0 without)
        self.register_buffer("user_feats", torch.zeros(0), persistent=True)
        self.register_buffer("item_feats", torch.zeros(0), persistent=True)

    def _extra_state(self) -> dict[str, Any]:
        return {"d_uf": int(self.user_feats.shape[-1]) if self.user_feats.dim() == 2 else 0,
                "d_if": int(self.item_feats.shape[-1]) if self.item_feats.dim() == 2 else 0,
                "uf_shape": tuple(self.user_feats.shape), "if_shape": tuple(self.item_feats.shape),
                "n_side_items": int(self.n_side_items)}

    def _build(self, extra: dict[str, Any]) -> None:
        c = self.config
        self.user_feats = torch.zeros(extra["uf_shape"])
        self.item_feats = torch.zeros(extra["if_shape"])
        self.n_side_items = int(extra.get("n_side_items", 0))
        self.net = _EnsembleDeepFM(c.n_members, self.n_users, self.n_items + self.n_side_items, extra["d_uf"],
                                   extra["d_if"], c.embed_dim, tuple(c.dnn))

    def _features(self, dataset: LoggedDataset, with_side: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Normalised user / item feature rows; with ``with_side`` the item rows go on with the side items'."""
        if not self.config.use_features:
            return None, None
        uf = dataset.user_features
        itf = dataset.item_features
        if with_side and itf is not None:
            raise ValueError(
                f"{dataset.name}: item_features has no rows for the {dataset.n_side_items} side items; set "
                "DeepFMConfig.side_logs=False (or use_features=False) to fit without the side logs"
            )
        if itf is None and dataset.item_categories.shape[1] > 1:
            itf = dataset.item_categories.astype(np.float32)
            if with_side:
                assert dataset.side_item_categories is not None  # validated with side_train (LoggedDataset)
                itf = np.concatenate([itf, dataset.side_item_categories.astype(np.float32)])
        if uf is not None and uf.shape[0] != dataset.n_users:
            raise ValueError(f"{dataset.name}: user_features has {uf.shape[0]} rows, expected n_users={dataset.n_users}")
        if itf is not None and not with_side and itf.shape[0] != dataset.n_items:
            raise ValueError(f"{dataset.name}: item_features has {itf.shape[0]} rows, expected n_items={dataset.n_items}")
        return (None if uf is None else _normalise_rows(uf)), (None if itf is None else _normalise_rows(itf))

    def _fit(self, dataset: LoggedDataset, logger: Any, progress: bool) -> None:
        c = self.config
        dev = self.device
        users, items, rewards = train_arrays(dataset)
        side = side_train_arrays(dataset) if c.side_logs else None
        self.n_side_items = 0 if side is None else dataset.n_side_items
        if side is not None:  # side item j -> item-table row n_items + j
            users = np.concatenate([users, side[0]])
            items = np.concatenate([items, side[1] + self.n_items])
            rewards = np.concatenate([rewards, side[2]])
        n_table = self.n_items + self.n_side_items
        uf, itf = self._features(dataset, side is not None)
        uf_t = torch.zeros(0) if uf is None else torch.as_tensor(uf)
        if_t = torch.zeros(0) if itf is None else torch.as_tensor(itf)
        self.user_feats, self.item_feats = uf_t, if_t  # their shapes size the net
        self._build(self._extra_state())
        # `_build` allocates zero feature buffers (for `load`, which fills them); a fit needs the real rows
        self.user_feats, self.item_feats = uf_t, if_t
        assert self.net is not None
        super().to(dev)
        uft = self.user_feats if uf is not None else None
        ift = self.item_feats if itf is not None else None

        gen = torch.Generator(device=dev)
        gen.manual_seed(self.seed)
        u_pos = torch.as_tensor(users, device=dev)
        i_pos = torch.as_tensor(items, device=dev)
        r_pos = torch.as_tensor(rewards, device=dev)
        neg_r = float(rewards.min()) if c.negative_reward is None else float(c.negative_reward)
        keys = torch.sort(u_pos * n_table + i_pos).values
        e, p, k = c.n_members, len(users), c.n_negatives
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        n_rows = p * (1 + k)
        n_batches = max(1, math.ceil(n_rows / c.batch_size))
        bar = None
        if progress:
            bar = progress_bar(total=c.epochs * n_batches, desc=f"deepfm[{dataset.name}]", unit="batch")
        step = 0
        for epoch in range(c.epochs):
            # Each member gets its own negatives and its own shuffle.
            if k:
                nu = u_pos.repeat(e, k).view(e, p * k)
                ni = torch.randint(0, n_table, (e, p * k), device=dev, generator=gen)
                for _ in range(3):  # re-draw negatives that hit a logged pair
                    hit = torch.isin(nu * n_table + ni, keys)
                    if not bool(hit.any()):
                        break
                    ni = torch.where(hit, torch.randint(0, n_table, ni.shape, device=dev, generator=gen), ni)
                all_u = torch.cat([u_pos.expand(e, p), nu], 1)
                all_i = torch.cat([i_pos.expand(e, p), ni], 1)
                all_r = torch.cat([r_pos.expand(e, p), torch.full((e, p * k), neg_r, device=dev)], 1)
            else:
                all_u, all_i, all_r = u_pos.expand(e, p), i_pos.expand(e, p), r_pos.expand(e, p)
            perm = torch.argsort(torch.rand(e, n_rows, device=dev, generator=gen), dim=1)
            all_u, all_i, all_r = (torch.gather(x, 1, perm) for x in (all_u, all_i, all_r))
            tot = torch.zeros((), device=dev)
            for b in range(n_batches):
                sl = slice(b * c.batch_size, (b + 1) * c.batch_size)
                mu, logvar = self.net(all_u[:, sl], all_i[:, sl], uft, ift)
                logvar = logvar.clamp(c.min_logvar, c.max_logvar)
                nll = 0.5 * (logvar + (all_r[:, sl] - mu).pow(2) * torch.exp(-logvar))
                loss = nll.mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot = tot + loss.detach()
                step += 1
                if bar is not None:
                    bar.update(1)
            log_scalar(logger, "worldmodel/deepfm_nll", float(tot) / (n_batches * e), epoch)
        if bar is not None:
            bar.close()
        self._mean, self._unc = self._predict_matrix(uft, ift)

    @torch.no_grad()
    def _predict_matrix(self, uft: torch.Tensor | None, ift: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.net is not None
        c, dev = self.config, self.device
        e, n_i = c.n_members, self.n_items  # action items only: table rows 0..n_items-1
        width = max(c.dnn) if c.dnn else 1
        chunk = max(1, int(c.predict_chunk_elems // max(1, e * n_i * width)))
        means, uncs = [], []
        items = torch.arange(n_i, device=dev)
        for start in range(0, self.n_users, chunk):
            us = torch.arange(start, min(self.n_users, start + chunk), device=dev)
            uu = us[:, None].expand(-1, n_i).reshape(1, -1).expand(e, -1)
            ii = items[None, :].expand(len(us), -1).reshape(1, -1).expand(e, -1)
            mu, logvar = self.net(uu, ii, uft, ift)
            var = torch.exp(logvar.clamp(c.min_logvar, c.max_logvar))
            means.append(mu.mean(0).view(len(us), n_i))
            uncs.append(var.max(0).values.view(len(us), n_i))
        return torch.cat(means).float(), torch.cat(uncs).float()
