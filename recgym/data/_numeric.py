"""Small numpy/scipy numerical tools used by the loaders: biased ALS matrix factorisation and k-means.

Kept here (not in `recgym.worldmodels`) because ground-truth completion happens at load time and the data
layer must not import torch. Both are deterministic given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp


@dataclass
class BiasedMF:
    """Fitted model ``r_ui = mu + b_u + c_i + p_u . q_i`` (float64 factors)."""

    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predictions for (user, item) pairs."""
        return (
            self.mu
            + self.user_bias[users]
            + self.item_bias[items]
            + np.einsum("nk,nk->n", self.user_factors[users], self.item_factors[items])
        )

    def full(self, n_users: int | None = None, block: int = 4096) -> np.ndarray:
        """Dense float32 ``(n_users, n_items)`` prediction matrix, built in place block by block (no float64
        temporaries: the KuaiRand matrix alone is 0.8 GB in float32)."""
        nu = self.user_factors.shape[0] if n_users is None else n_users
        out = np.empty((nu, self.item_factors.shape[0]), dtype=np.float32)
        q = np.ascontiguousarray(self.item_factors.T, dtype=np.float32)
        p = self.user_factors.astype(np.float32)
        ub = self.user_bias.astype(np.float32)
        ib = (self.item_bias + self.mu).astype(np.float32)
        for s in range(0, nu, block):
            e = min(nu, s + block)
            blk = out[s:e]
            np.matmul(p[s:e], q, out=blk)
            blk += ub[s:e, None]
            blk += ib[None, :]
        return out


class _Side:
    """Fixed CSR structure of the observations grouped by row (users or items), duplicates kept.

    Built once per fit, so each ALS sweep only swaps the data array (no re-sorting / COO conversion).
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> None:
        self.order = np.argsort(rows, kind="stable")
        self.indices = cols[self.order].astype(np.int32)
        self.indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))].astype(np.int64)
        self.shape = (n_rows, n_cols)

    def matrix(self, data: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((data[self.order], self.indices, self.indptr), shape=self.shape)


def _solve_side(side: _Side, target: np.ndarray, design: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Ridge per row: argmin_x sum_j (t_j - design_j . x)^2 + sum_k reg_k x_k^2, for all rows at once.

    Gram matrices come from one sparse x dense product with the upper-triangle outer products of the
    design rows, then a batched dense solve: no per-row Python loop.
    """
    d = design.shape[1]
    iu, ju = np.triu_indices(d)
    ones = np.ones(len(side.order))
    tri = side.matrix(ones) @ (design[:, iu] * design[:, ju])
    gram = np.empty((side.shape[0], d, d))
    gram[:, iu, ju] = tri
    gram[:, ju, iu] = tri
    gram[:, np.arange(d), np.arange(d)] += reg[None, :]
    rhs = side.matrix(target) @ design
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]


def fit_biased_mf(
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    rank: int = 10,
    reg: float = 5.0,
    reg_bias: float = 5.0,
    n_iters: int = 15,
    seed: int = 0,
) -> BiasedMF:
    """Biased MF ``mu + b_u + c_i + p_u . q_i`` by alternating least squares on the observed entries.

    Ridge ``reg`` on factors and ``reg_bias`` on biases; repeated (user, item) observations count as
    separate samples. Factors start from N(0, 0.1^2) drawn with ``seed``.
    """
    rng = np.random.default_rng(seed)
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    mu = float(values.mean()) if len(values) else 0.0
    p = rng.normal(0.0, 0.1, size=(n_users, rank))
    q = rng.normal(0.0, 0.1, size=(n_items, rank))
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    ones_u = np.ones((n_users, 1))
    ones_i = np.ones((n_items, 1))
    regs = np.r_[np.full(rank, float(reg)), float(reg_bias)]
    by_user = _Side(users, items, n_users, n_items)
    by_item = _Side(items, users, n_items, n_users)
    for _ in range(n_iters):
        # users: x_u = [p_u, b_u], design_i = [q_i, 1], target = r - mu - c_i
        xu = _solve_side(by_user, values - mu - bi[items], np.c_[q, ones_i], regs)
        p, bu = xu[:, :rank], xu[:, rank]
        xi = _solve_side(by_item, values - mu - bu[users], np.c_[p, ones_u], regs)
        q, bi = xi[:, :rank], xi[:, rank]
    return BiasedMF(mu, bu, bi, p, q)


def _sqdist(x: np.ndarray, sq: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # einsum without BLAS: tiny products where a multi-threaded BLAS only adds contention on a busy machine.
    return sq[:, None] - 2 * np.einsum("nd,kd->nk", x, centres) + (centres * centres).sum(1)[None, :]


def unique_sorted(
    a: np.ndarray, *, return_index: bool = False, return_inverse: bool = False, return_counts: bool = False
) -> Any:
    """`np.unique` by sorting (numpy 2.x's hash-based unique is ~100x slower on large int arrays).

    Returns ``uniq`` or a tuple ``(uniq, [first_index], [inverse], [counts])`` like `np.unique`.
    """
    a = np.asarray(a).ravel()
    order = np.argsort(a, kind="stable")
    sa = a[order]
    flag = np.ones(len(sa), dtype=bool)
    if len(sa):
        flag[1:] = sa[1:] != sa[:-1]
    uniq = sa[flag]
    if not (return_index or return_inverse or return_counts):
        return uniq
    out: list[np.ndarray] = [uniq]
    starts = np.flatnonzero(flag)
    if return_index:
        out.append(order[starts])
    if return_inverse:
        inv = np.empty(len(a), dtype=np.int64)
        inv[order] = np.cumsum(flag) - 1
        out.append(inv)
    if return_counts:
        out.append(np.diff(np.r_[starts, len(sa)]))
    return tuple(out)


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, n_iters: int = 50, n_init: int = 3) -> np.ndarray:
    """Deterministic k-means (k-means++ seeding, Lloyd iterations, best of ``n_init``); returns labels.

    Empty clusters are re-seeded with the point farthest from its centre. Labels are renumbered by cluster
    size (largest first, ties by lowest member index) so they do not depend on the seeding order.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: k={k} must be in [1, n_points={n}]")
    rng = np.random.default_rng(seed)
    sq = (x * x).sum(1)
    best_labels, best_inertia = None, np.inf
    for _ in range(n_init):
        centres = np.empty((k, x.shape[1]))
        centres[0] = x[rng.integers(n)]
        d2 = ((x - centres[0]) ** 2).sum(1)
        for c in range(1, k):
            tot = d2.sum()
            idx = int(rng.choice(n, p=d2 / tot)) if tot > 0 else int(rng.integers(n))
            centres[c] = x[idx]
            d2 = np.minimum(d2, ((x - centres[c]) ** 2).sum(1))
        labels = np.zeros(n, dtype=np.int64)
        for it in range(n_iters):
            dist = _sqdist(x, sq, centres)
            new = dist.argmin(1)
            if it > 0 and np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = labels == c
                if members.any():
                    centres[c] = x[members].mean(0)
                else:
                    far = int(dist[np.arange(n), labels].argmax())
                    centres[c] = x[far]
                    labels[far] = c
        dist = _sqdist(x, sq, centres)
        inertia = float(dist[np.arange(n), labels].sum())
        if inertia < best_inertia:
            best_inertia, best_labels = inertia, labels.copy()
    assert best_labels is not None
    sizes = np.bincount(best_labels, minlength=k)
    first = np.array([np.flatnonzero(best_labels == c)[0] if sizes[c] else n for c in range(k)])
    order = np.lexsort((first, -sizes))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return remap[best_labels]
