"""R3S's diffusion world model: a conditional diffusion over a user's reward vector that never sees the pair it predicts.

The world model of R3S ("Reward Balancing Revisited: Enhancing Offline Reinforcement Learning for Recommender
Systems", arXiv:2506.22112): DiffRec's forward process ("Diffusion Recommender Models", arXiv:2304.04971) over
the user's reward vector, conditioned on user and item representations; S reverse samples give the mean reward
and its spread (the uncertainty). How the condition and the targets are split follows conditional diffusion
for imputation (CSDI, "Conditional Score-based Diffusion Models for Probabilistic Time Series Imputation",
arXiv:2107.03502): observed values are the condition, the values to impute are generated, and an unlogged entry
is a *missing* value, not a reward of 0.

Data. ``x0[u]`` (length ``n_items``) holds the user's logged rewards standardised with the training mean and
standard deviation; ``m[u]`` is the logged-mask. Unlogged entries are missing: they are never a training target
unless ``unobserved_weight > 0`` (then they are targets with reward 0, DORL's label for sampled negatives).

Denoiser. The condition is the *context*: a subset ``C`` of the user's logged entries. A user representation
is computed from it, ``z = MLP([sum_C x_i V_i / |C|, sum_C V_i / |C|, mean_C x, spread_C x, log|C|, time_emb])``
(``V`` the learned item embeddings; with ``user_embedding=True`` also a free per-user embedding), and read out
per item through item embeddings as a Gaussian belief about each entry: ``mu_ui = <z_mu, V_i> + b_i + a_u`` and
``log s2_ui = <z_var, W_i> + c_i + s_u``. The x0-prediction is that belief's posterior mean given the noisy
entry, ``x0_hat = mu + sqrt(abar_t) s2 / (abar_t s2 + 1 - abar_t) * (x_t - sqrt(abar_t) mu)``, so the model's
own spread decides how far the reverse chain follows its noise: a confident entry is pulled to ``mu``, an
uncertain one wanders. Entries interact only through ``z`` (the context), so the model predicts an entry from
the user's *other* ratings, never from its own.

Training (DiffRec's forward process; ``linear-var`` schedule of `recgym.nn.diffusion.NoiseSchedule`, here
running to ``abar_T = 1 - noise_max`` near 0 so that chains start from pure noise): per user, each logged entry
is hidden with probability ``ctx_drop``; the rest is the context; ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t)
eps``; loss = MSE of ``x0_hat`` against ``x0`` on the hidden logged entries (plus ``unobserved_weight`` times
the loss on unlogged entries).

Sampling and uncertainty (R3S section 3.1). Each user's logged entries are split at random into ``folds``
folds; chain ``s`` (of ``n_samples``) conditions on the history without fold ``s mod folds`` and runs the full
ancestral reverse chain from ``x_T ~ N(0, I)``; each step draws ``x_{t-1}`` from ``q(x_{t-1} | x_t, x0)`` averaged
over the belief's ``x0 | x_t`` (posterior mean plus ``coef_x0^2 Var[x0 | x_t]`` in the variance, the reverse
variance of "Analytic-DPM", arXiv:2201.06503, here from the model's own belief), so that a few steps sample the
belief without the variance deficit of the plain DDPM step. Each chain's final ``x0_hat`` is one sampled
reward vector. A
logged entry is read only from the chains whose context hides it (leave-fold-out), an unlogged entry from all
chains. ``mean`` = the mean of those samples and ``uncertainty`` = their (unbiased) standard deviation (reward
units): it
holds the belief's own spread ``s`` and the disagreement between the beliefs formed from different parts of
the history, both properties of the model, not of the injected noise alone. With ``clip_mean`` the mean is
clipped to the range of the training rewards (a predicted rating outside 1..5 is never meaningful, and an
unclipped minimum would drag the reward shift of `recgym.envs.interactive`). Chains sharing a context share
their per-step beliefs, so the network runs ``folds x steps`` times per user chunk however large
``n_samples`` is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from recgym.data.base import LoggedDataset
from recgym.nn.diffusion import NoiseSchedule, mlp, timestep_embedding
from recgym.progress import progress_bar
from recgym.worldmodels.base import WorldModel, log_scalar, train_arrays

_LOGVAR_RANGE = (-7.0, 3.0)  # bounds of the belief's log-variance (standardised reward units)


@dataclass
class DiffusionConfig:
    """Hyper-parameters of `DiffusionWorldModel` (see the module docstring)."""

    steps: int = 20
    noise_scale: float = 1.0
    noise_min: float = 0.001
    noise_max: float = 0.995
    n_samples: int = 32
    folds: int = 2
    embed_dim: int = 32
    hidden: int = 256
    time_dim: int = 16
    epochs: int = 100
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    ctx_drop: float = 0.5
    unobserved_weight: float = 0.0
    user_embedding: bool = False
    clip_mean: bool = True
    predict_chunk_elems: int = 1 << 23

    def __post_init__(self) -> None:
        for name in ("steps", "n_samples", "embed_dim", "hidden", "time_dim", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DiffusionConfig.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.folds) < 2 or int(self.n_samples) % int(self.folds) or int(self.n_samples) < 2 * int(self.folds):
            raise ValueError(f"DiffusionConfig needs folds >= 2 (a logged entry is read from the chains that hide "
                             f"it) and n_samples a multiple of folds, at least 2 * folds (two samples per logged "
                             f"entry for a spread), got folds={self.folds}, n_samples={self.n_samples}")
        if not 0 < self.noise_scale * self.noise_min <= self.noise_scale * self.noise_max < 1:
            raise ValueError("DiffusionConfig needs 0 < noise_scale*noise_min <= noise_scale*noise_max < 1, got "
                             f"scale={self.noise_scale}, min={self.noise_min}, max={self.noise_max}")
        if not 0 < self.ctx_drop < 1:
            raise ValueError(f"DiffusionConfig.ctx_drop must be in (0, 1) (the share of logged entries hidden "
                             f"as targets), got {self.ctx_drop}")
        if self.unobserved_weight < 0:
            raise ValueError(f"DiffusionConfig.unobserved_weight must be >= 0, got {self.unobserved_weight}")


class Schedule:
    """The world model's view of its noise schedule: float32 tables indexed by ``t - 1`` for step t = 1..T.

    The schedule is `recgym.nn.diffusion.NoiseSchedule` of kind ``linear-var`` (``1 - abar_t`` linear in
    ``[scale*lo, scale*hi]``) with beta_1 floored at 1e-5.
    """

    def __init__(self, steps: int, scale: float, lo: float, hi: float, device: torch.device) -> None:
        sched = NoiseSchedule("linear-var", steps, scale * lo, scale * hi, min_first_beta=1e-5)  # on the CPU
        f = {"device": device, "dtype": torch.float32}
        self.abar = sched.table("alphas_cumprod").to(**f)
        self.coef_x0 = sched.table("posterior_mean_coef1").to(**f)
        self.coef_xt = sched.table("posterior_mean_coef2").to(**f)
        self.post_std = sched.table("posterior_variance").clamp_min(0).sqrt().to(**f)
        self.steps = steps


class ContextDenoiser(nn.Module):
    """x0-predicting denoiser: a Gaussian belief per entry from the context, read out through item embeddings."""

    def __init__(self, n_users: int, n_items: int, embed_dim: int, hidden: int, time_dim: int,
                 user_embedding: bool = False) -> None:
        super().__init__()
        d = embed_dim
        self.n_items = n_items
        self.embed_dim = d
        self.time_dim = time_dim
        self.item_emb = nn.Parameter(torch.randn(n_items, d) * 0.1)
        self.var_emb = nn.Parameter(torch.randn(n_items, d) * 0.1)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.var_bias = nn.Parameter(torch.zeros(n_items))
        self.user_emb = nn.Embedding(n_users, d) if user_embedding else None
        if self.user_emb is not None:
            nn.init.normal_(self.user_emb.weight, std=0.1)
        self.time_proj = nn.Linear(time_dim, d)
        n_in = 3 * d + 3 + (d if user_embedding else 0)
        self.mlp = mlp(n_in, (hidden, hidden), 2 * d + 2)

    def belief(self, t: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor,
               users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log s2) ``[B, n_items]`` of every entry given the context values ``ctx`` on ``ctx_mask``."""
        v = self.item_emb
        n = ctx_mask.sum(1, keepdim=True)
        nc = n.clamp_min(1.0)
        c_mean = ctx.sum(1, keepdim=True) / nc
        c_spread = ((ctx - c_mean * ctx_mask).pow(2).sum(1, keepdim=True) / nc).sqrt()
        parts = [ctx @ v / nc, ctx_mask @ v / nc, c_mean, c_spread, torch.log1p(n) / math.log1p(self.n_items),
                 self.time_proj(timestep_embedding(t, self.time_dim))]
        if self.user_emb is not None:
            parts.append(self.user_emb(users))
        h = self.mlp(torch.cat(parts, -1))
        d = self.embed_dim
        z_mu, z_var, a_u, s_u = h[:, :d], h[:, d:2 * d], h[:, 2 * d:2 * d + 1], h[:, 2 * d + 1:]
        mu = z_mu @ v.T + self.item_bias + a_u
        logvar = (z_var @ self.var_emb.T + self.var_bias + s_u).clamp(*_LOGVAR_RANGE)
        return mu, logvar

    @staticmethod
    def posterior_mean(x_t: torch.Tensor, abar: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """E[x0 | x_t] under x0 ~ N(mu, exp(logvar)) and x_t = sqrt(abar) x0 + sqrt(1 - abar) eps."""
        s2 = logvar.exp()
        sa = abar.sqrt()
        return mu + sa * s2 / (abar * s2 + 1.0 - abar) * (x_t - sa * mu)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, abar: torch.Tensor, ctx: torch.Tensor,
                ctx_mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """x0_hat ``[B, n_items]`` (``abar``: ``[B, 1]`` = alpha_bar at each row's step ``t``)."""
        mu, logvar = self.belief(t, ctx, ctx_mask, users)
        return self.posterior_mean(x_t, abar, mu, logvar)


class DiffusionWorldModel(WorldModel):
    """R3S world model: mean and spread of S leave-fold-out reverse-diffusion samples of each user's rewards."""

    kind = "diffusion"
    config_cls = DiffusionConfig

    def __init__(self, config: DiffusionConfig | dict[str, Any] | None = None, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        super().__init__(config, device, seed)
        self.net: ContextDenoiser | None = None
        self.loc, self.scale = 0.0, 1.0  # standardisation of the rewards
        self.r_min, self.r_max = -math.inf, math.inf  # training reward range (clip of the mean)

    def _extra_state(self) -> dict[str, Any]:
        return {"loc": self.loc, "scale": self.scale, "r_min": self.r_min, "r_max": self.r_max}

    def _build(self, extra: dict[str, Any]) -> None:
        c = self.config
        self.loc, self.scale = float(extra["loc"]), float(extra["scale"])
        self.r_min, self.r_max = float(extra["r_min"]), float(extra["r_max"])
        self.net = ContextDenoiser(self.n_users, self.n_items, c.embed_dim, c.hidden, c.time_dim, c.user_embedding)

    def _fit(self, dataset: LoggedDataset, logger: Any, progress: bool) -> None:
        c, dev = self.config, self.device
        users, items, rewards = train_arrays(dataset)
        self._build({"loc": float(rewards.mean()), "scale": float(max(rewards.std(), 1e-6)),
                     "r_min": float(rewards.min()), "r_max": float(rewards.max())})
        assert self.net is not None
        self.net.to(dev)
        # dense per-user vectors; float16 / bool above 50M entries (KuaiRand-sized) to halve / quarter memory
        big = self.n_users * self.n_items > 50_000_000
        x0 = torch.zeros(self.n_users, self.n_items, device=dev, dtype=torch.float16 if big else torch.float32)
        mask = torch.zeros(self.n_users, self.n_items, device=dev, dtype=torch.bool if big else torch.float32)
        ut, it = torch.as_tensor(users, device=dev), torch.as_tensor(items, device=dev)
        x0[ut, it] = ((torch.as_tensor(rewards, device=dev) - self.loc) / self.scale).to(x0.dtype)
        mask[ut, it] = True if mask.dtype == torch.bool else 1.0
        neg = (0.0 - self.loc) / self.scale  # the standardised reward 0 of unlogged targets (unobserved_weight)
        sched = Schedule(c.steps, c.noise_scale, c.noise_min, c.noise_max, dev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(self.seed)
        opt = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        n_b = max(1, math.ceil(self.n_users / c.batch_size))
        bar = None
        if progress:
            bar = progress_bar(total=c.epochs, desc=f"diffusion[{dataset.name}]", unit="epoch")
        self.net.train()
        for epoch in range(c.epochs):
            perm = torch.randperm(self.n_users, device=dev, generator=gen)
            tot = torch.zeros((), device=dev)
            for b in range(n_b):
                u = perm[b * c.batch_size:(b + 1) * c.batch_size]
                mb = mask[u].float()
                xb = x0[u].float() + neg * (1.0 - mb)
                keep = (torch.rand(xb.shape, device=dev, generator=gen) >= c.ctx_drop).float() * mb
                t = torch.randint(1, c.steps + 1, (len(u),), device=dev, generator=gen)
                ab = sched.abar[t - 1][:, None]
                x_t = ab.sqrt() * xb + (1 - ab).sqrt() * torch.randn(xb.shape, device=dev, generator=gen)
                pred = self.net(x_t, t, ab, xb * keep, keep, u)
                w = (mb - keep) + c.unobserved_weight * (1.0 - mb)
                loss = (w * (pred - xb).pow(2)).sum() / w.sum().clamp_min(1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot = tot + loss.detach()
            log_scalar(logger, "worldmodel/diffusion_mse", float(tot) / n_b, epoch)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        self.net.eval()
        self._mean, self._unc = self.sample_statistics(x0, mask, torch.arange(self.n_users, device=dev), sched, gen)

    def fold_of(self, shape: tuple[int, int], gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """A random fold id in ``0..folds-1`` per entry (int64 ``shape``)."""
        return torch.randint(0, self.config.folds, shape, device=device, generator=gen)

    @torch.no_grad()
    def sample_statistics(self, x0: torch.Tensor, mask: torch.Tensor, users: torch.Tensor, sched: Schedule,
                          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (reward units) of the leave-fold-out samples for every row of ``x0`` (standardised).

        Rows are processed in chunks of ``predict_chunk_elems / (S * n_items)`` users; only the chunk's
        ``(S, rows, n_items)`` samples are ever held in memory.
        """
        c = self.config
        k = c.folds
        chunk = max(1, int(c.predict_chunk_elems // max(1, c.n_samples * x0.shape[1])))
        means, stds = [], []
        for start in range(0, x0.shape[0], chunk):
            sl = slice(start, start + chunk)
            mk = mask[sl].float()
            fold = self.fold_of(tuple(mk.shape), gen, mk.device)
            smp, tgt = self.reverse_samples(x0[sl].float() * mk, mk, fold, users[sl], sched, gen)
            smp = smp.view(-1, k, *mk.shape)  # [S / K, K, rows, n]: chain r * K + f conditions without fold f
            tgt = tgt[:k]  # [K, rows, n]
            n = tgt.sum(0) * smp.shape[0]
            mean = (tgt * smp.sum(0)).sum(0) / n
            # unbiased: a logged entry has S / folds samples, an unlogged one S (the biased estimate would make
            # logged entries look more certain by the sample count alone)
            var = (tgt * (smp - mean).pow(2).sum(0)).sum(0) / (n - 1).clamp_min(1.0)
            mean = mean * self.scale + self.loc
            if c.clip_mean:
                mean = mean.clamp(self.r_min, self.r_max)
            means.append(mean.float())
            stds.append((var.sqrt() * self.scale).float())
        return torch.cat(means), torch.cat(stds)

    @torch.no_grad()
    def reverse_samples(self, x0: torch.Tensor, mask: torch.Tensor, fold: torch.Tensor, users: torch.Tensor,
                        sched: Schedule, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(S, rows, n_items)`` standardised samples and the 0/1 target mask of each chain.

        Chain ``s`` conditions on the logged entries outside fold ``s mod folds`` and starts from pure noise;
        its targets are the entries outside its context. The chains of one fold share the belief of each step,
        so every per-step coefficient is computed once per fold and broadcast over that fold's chains.
        """
        assert self.net is not None
        c, dev = self.config, x0.device
        k, b, n_i = c.folds, x0.shape[0], x0.shape[1]
        r = c.n_samples // k
        ctx_mask = torch.stack([mask * (fold != f).float() for f in range(k)])  # [K, b, n]
        ctx = (x0[None] * ctx_mask).reshape(k * b, n_i)
        cm = ctx_mask.reshape(k * b, n_i)
        uk = users.repeat(k)
        x_t = torch.randn((r, k, b, n_i), device=dev, generator=gen)
        pred = x_t
        for t in range(c.steps, 0, -1):
            tt = torch.full((k * b,), t, dtype=torch.long, device=dev)
            mu, logvar = self.net.belief(tt, ctx, cm, uk)
            mu, logvar = mu.view(k, b, n_i), logvar.view(k, b, n_i)
            ab = sched.abar[t - 1]
            s2 = logvar.exp()
            gain = ab.sqrt() * s2 / (ab * s2 + 1.0 - ab)  # E[x0 | x_t] = mu + gain (x_t - sqrt(ab) mu)
            offset = mu * (1.0 - gain * ab.sqrt())
            if t == 1:
                pred = torch.addcmul(offset, gain, x_t)
                break
            # x_{t-1} = c0 E[x0 | x_t] + c1 x_t + std z: q(x_{t-1} | x_t, x0) averaged over the belief's x0 | x_t,
            # whose variance adds c0^2 Var[x0 | x_t]
            c0, c1 = sched.coef_x0[t - 1], sched.coef_xt[t - 1]
            std = (sched.post_std[t - 1] ** 2 + c0 ** 2 * s2 * (1.0 - ab) / (ab * s2 + 1.0 - ab)).sqrt()
            noise = torch.randn(x_t.shape, device=dev, generator=gen)
            x_t = torch.addcmul(torch.addcmul(c0 * offset, c0 * gain + c1, x_t), std, noise)
        return pred.reshape(r * k, b, n_i), (1.0 - ctx_mask).repeat(r, 1, 1)
