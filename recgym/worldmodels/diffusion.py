"""R3S's diffusion world model: a DiffRec-style conditional denoiser over a user's reward vector.

The world model of R3S ("Reward Balancing Revisited: Enhancing Offline Reinforcement Learning for Recommender
Systems"), built on the forward process of DiffRec ("Diffusion Recommender Models", arXiv:2304.04971).

Data. For user ``u`` the clean vector ``x0[u]`` (length ``n_items``) holds the logged rewards divided by
``scale = max |train reward|`` (ratings 1..5 -> 0.2..1, clicks stay 0/1); unlogged entries are 0, i.e.
reward 0, the label DORL gives sampled negatives. ``m[u]`` is the logged-mask.

Denoiser ``f(x_t, t, ctx, ctx_mask, u) -> x0_hat`` (x0-prediction, as in DiffRec). Its conditions are the
learned user embedding and the *context*: the user's observed rewards and mask, embedded through the learned
item embeddings ``V`` (``ctx @ V / |ctx|``). Architecture: ``[x_t V / sqrt(n_items), ctx V / n, m V / n,
user_emb, time_emb] -> MLP (tanh) -> h``; ``x0_hat = h V^T + b_item + w_c * ctx + b_m * ctx_mask
+ g_t * x_t * (1 - ctx_mask)``, i.e. a low-rank read-out through the same item embeddings plus scalar skips
that let the model copy context values and, for entries outside the context, trust ``x_t`` as t -> 0.

Training (DiffRec forward process, the ``linear-var`` schedule of `recgym.nn.diffusion.NoiseSchedule`):
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``; the context is the observed entries with a random
``ctx_drop`` share hidden (so the model must predict logged rewards it cannot see, the world-model task); loss
= weighted MSE of ``x0_hat`` against ``x0`` with weight 1 on logged entries and ``unobserved_weight`` (default
0.1) on unlogged ones. DiffRec's loss covers every entry of the vector (unlogged ones are zeros with weight 1)
and DORL labels sampled negatives 0; a small weight keeps that exposure signal without letting the zeros swamp
the ratings (with weight 0 the model learns only from the self-selected, upward-biased logged ratings; the
measurements behind the default are in docs/RESULTS.md, "Agents for the interactive envs").

Uncertainty (R3S section 3.1). ``n_samples`` (S) reverse chains per user start from the user's noised history
``x_{t0} = sqrt(abar_t0) x0 + sqrt(1 - abar_t0) eps`` (``t0 = sample_steps``) and run stochastic posterior
steps ``x_{t-1} = mu(x_t, x0_hat) + sigma_t z`` with the full history as context. Each chain's final ``x0_hat``
is one sampled reward vector; ``mean`` = the mean of the S samples and ``uncertainty`` = their standard
deviation, both times ``scale`` (reward units). ``sample_ctx_drop > 0`` (off by default) makes each chain
condition on its own random subset of the history (docs/RESULTS.md, "World models", says why it is off). The
S chains of a chunk of users run as one batch on the device (a Python loop over timesteps and user chunks only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recgym.data.base import LoggedDataset
from recgym.nn.diffusion import NoiseSchedule, mlp, timestep_embedding
from recgym.progress import progress_bar
from recgym.worldmodels.base import WorldModel, log_scalar, train_arrays


@dataclass
class DiffusionConfig:
    """Hyper-parameters of `DiffusionWorldModel` (see the module docstring)."""

    steps: int = 20
    noise_scale: float = 1.0
    noise_min: float = 0.01
    noise_max: float = 0.3
    sample_steps: int = 20
    n_samples: int = 16
    embed_dim: int = 32
    hidden: int = 256
    time_dim: int = 16
    epochs: int = 100
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    ctx_drop: float = 0.5
    unobserved_weight: float = 0.1
    sample_ctx_drop: float = 0.0
    predict_chunk_elems: int = 1 << 23

    def __post_init__(self) -> None:
        for name in ("steps", "n_samples", "embed_dim", "hidden", "time_dim", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DiffusionConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.sample_steps <= self.steps:
            raise ValueError(f"DiffusionConfig.sample_steps must be in [0, steps={self.steps}], got {self.sample_steps}")
        if not 0 < self.noise_scale * self.noise_min <= self.noise_scale * self.noise_max < 1:
            raise ValueError("DiffusionConfig needs 0 < noise_scale*noise_min <= noise_scale*noise_max < 1, got "
                             f"scale={self.noise_scale}, min={self.noise_min}, max={self.noise_max}")
        if not 0 <= self.ctx_drop < 1:
            raise ValueError(f"DiffusionConfig.ctx_drop must be in [0, 1), got {self.ctx_drop}")
        if not 0 <= self.sample_ctx_drop < 1:
            raise ValueError(f"DiffusionConfig.sample_ctx_drop must be in [0, 1), got {self.sample_ctx_drop}")
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


class ConditionalDenoiser(nn.Module):
    """x0-predicting denoiser conditioned on user embedding and the context embedded by item embeddings."""

    def __init__(self, n_users: int, n_items: int, steps: int, embed_dim: int, hidden: int, time_dim: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.time_dim = time_dim
        self.item_emb = nn.Parameter(torch.randn(n_items, embed_dim) * 0.1)
        self.user_emb = nn.Embedding(n_users, embed_dim)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.time_proj = nn.Linear(time_dim, embed_dim)
        self.mlp = mlp(5 * embed_dim, (hidden, hidden), embed_dim, nn.Tanh)
        self.w_ctx = nn.Parameter(torch.ones(()))
        self.b_mask = nn.Parameter(torch.zeros(()))
        self.skip = nn.Parameter(torch.zeros(steps + 1))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor,
                users: torch.Tensor) -> torch.Tensor:
        v = self.item_emb
        n = ctx_mask.sum(1, keepdim=True).clamp_min(1.0)
        z = torch.cat([
            x_t @ v / math.sqrt(self.n_items), ctx @ v / n, ctx_mask @ v / n, self.user_emb(users),
            self.time_proj(timestep_embedding(t, self.time_dim)),
        ], -1)
        h = self.mlp(z)
        return (h @ v.T + self.item_bias + self.w_ctx * ctx + self.b_mask * ctx_mask
                + self.skip[t][:, None] * x_t * (1.0 - ctx_mask))


class DiffusionWorldModel(WorldModel):
    """R3S world model: mean and spread of S reverse-diffusion samples of each user's reward vector."""

    kind = "diffusion"
    config_cls = DiffusionConfig

    def __init__(self, config: DiffusionConfig | dict[str, Any] | None = None, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        super().__init__(config, device, seed)
        self.net: nn.Module | None = None
        self.scale = 1.0

    def _extra_state(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def _build(self, extra: dict[str, Any]) -> None:
        c = self.config
        self.scale = float(extra["scale"])
        self.net = ConditionalDenoiser(self.n_users, self.n_items, c.steps, c.embed_dim, c.hidden, c.time_dim)

    def _fit(self, dataset: LoggedDataset, logger: Any, progress: bool) -> None:
        c, dev = self.config, self.device
        users, items, rewards = train_arrays(dataset)
        self.scale = float(max(np.abs(rewards).max(), 1e-6))
        self._build(self._extra_state())
        assert self.net is not None
        self.net.to(dev)
        # dense per-user vectors; float16 / bool above 50M entries (KuaiRand-sized) to halve / quarter memory
        big = self.n_users * self.n_items > 50_000_000
        x0 = torch.zeros(self.n_users, self.n_items, device=dev, dtype=torch.float16 if big else torch.float32)
        mask = torch.zeros(self.n_users, self.n_items, device=dev, dtype=torch.bool if big else torch.float32)
        ut, it = torch.as_tensor(users, device=dev), torch.as_tensor(items, device=dev)
        x0[ut, it] = (torch.as_tensor(rewards, device=dev) / self.scale).to(x0.dtype)
        mask[ut, it] = True if mask.dtype == torch.bool else 1.0
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
                xb, mb = x0[u].float(), mask[u].float()
                keep = (torch.rand(xb.shape, device=dev, generator=gen) >= c.ctx_drop).float() * mb
                t = torch.randint(1, c.steps + 1, (len(u),), device=dev, generator=gen)
                ab = sched.abar[t - 1][:, None]
                x_t = ab.sqrt() * xb + (1 - ab).sqrt() * torch.randn(xb.shape, device=dev, generator=gen)
                pred = self.net(x_t, t, xb * keep, keep, u)
                w = mb + c.unobserved_weight * (1.0 - mb)
                loss = (w * (pred - xb).pow(2)).sum() / w.sum()
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

    @torch.no_grad()
    def sample_statistics(self, x0: torch.Tensor, mask: torch.Tensor, users: torch.Tensor, sched: Schedule,
                          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (reward units) over ``n_samples`` reverse chains for every row of ``x0``.

        Rows are processed in chunks of ``predict_chunk_elems / (S * n_items)`` users; only the chunk's
        ``(S, rows, n_items)`` samples are ever held in memory.
        """
        c = self.config
        chunk = max(1, int(c.predict_chunk_elems // max(1, c.n_samples * x0.shape[1])))
        means, stds = [], []
        for start in range(0, x0.shape[0], chunk):
            sl = slice(start, start + chunk)
            smp = self.reverse_samples(x0[sl].float(), mask[sl].float(), users[sl], sched, gen)
            means.append((smp.mean(0) * self.scale).float())
            stds.append((smp.std(0, unbiased=False) * self.scale).float())
        return torch.cat(means), torch.cat(stds)

    @torch.no_grad()
    def reverse_samples(self, x0: torch.Tensor, mask: torch.Tensor, users: torch.Tensor, sched: Schedule,
                        gen: torch.Generator) -> torch.Tensor:
        """``(S, n_rows, n_items)`` normalised samples: the S chains of all rows run as one batch."""
        assert self.net is not None
        c, dev = self.config, x0.device
        s, b, n_i = c.n_samples, x0.shape[0], x0.shape[1]
        ctx = x0.repeat(s, 1)
        cm = mask.repeat(s, 1)
        if c.sample_ctx_drop > 0:  # each chain conditions on its own random subset of the history
            keep = (torch.rand(ctx.shape, device=dev, generator=gen) >= c.sample_ctx_drop).float()
            ctx, cm = ctx * keep, cm * keep
        uu = users.repeat(s)
        t0 = c.sample_steps
        if t0 == 0:
            pred = self.net(ctx.clone(), torch.zeros(s * b, dtype=torch.long, device=dev), ctx, cm, uu)
            return pred.view(s, b, n_i)
        ab = sched.abar[t0 - 1]
        x_t = ab.sqrt() * ctx + (1 - ab).sqrt() * torch.randn(ctx.shape, device=dev, generator=gen)
        pred = x_t
        for t in range(t0, 0, -1):
            tt = torch.full((s * b,), t, dtype=torch.long, device=dev)
            pred = self.net(x_t, tt, ctx, cm, uu)
            if t > 1:
                noise = torch.randn(ctx.shape, device=dev, generator=gen)
                x_t = sched.coef_x0[t - 1] * pred + sched.coef_xt[t - 1] * x_t + sched.post_std[t - 1] * noise
        return pred.view(s, b, n_i)
