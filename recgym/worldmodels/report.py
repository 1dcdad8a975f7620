"""World-model quality on the unbiased test data: RMSE, MAE, AUC and uncertainty/error correlation.

* RMSE / MAE of ``mean[u, i]`` against the test rewards (random-exposure / unbiased interactions);
* AUC of ``mean`` as a score for "is positive" (reward >= ``dataset.positive_threshold``: ratings >= 4 on
  Coat/Yahoo/synthetic, clicks on KuaiRand); NaN when the test set has a single class;
* Spearman and Pearson correlation between ``uncertainty[u, i]`` and the absolute error ``|mean - r|``
  (positive = the model knows where it is wrong); NaN when the uncertainty is constant.

Ranking quality, on the test pairs that are *not* logged in the training data (a model that copies a logged
rating gains nothing there; on Coat 8% of the test pairs are also logged, with the same rating):

* ``pearson``: Pearson correlation of ``mean`` with the test rewards;
* ``ndcg5``: per-user NDCG@5 of ranking the user's test items by ``mean`` (gains ``2^r - 1``), averaged over
  users; ``user_spearman``: per-user Spearman correlation, averaged over users whose test rewards vary;
* ``unc_err_spearman_unlogged``: Spearman(uncertainty, absolute error) on those pairs;
* ``top30_logged``: the share of each evaluation user's 30 highest-``mean`` items that the user logged (a
  world model that copies the logs serves them back; random choice gives about 30 x logged / n_items).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos = labels.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _corr(fn: Any, a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(fn(a, b)[0])


def quality(model: Any, dataset: Any, split: str = "test") -> dict[str, float]:
    """Quality numbers of a fitted world model on ``dataset.<split>`` (default: the unbiased test set)."""
    df = getattr(dataset, split)
    if df is None or len(df) == 0:
        raise ValueError(f"{dataset.name}: split {split!r} is empty; nothing to evaluate the world model on")
    mean, unc = model.predict()
    u = df["user"].to_numpy(np.int64)
    i = df["item"].to_numpy(np.int64)
    y = df["reward"].to_numpy(np.float64)
    m = mean.detach().cpu().numpy()[u, i].astype(np.float64)
    s = unc.detach().cpu().numpy()[u, i].astype(np.float64)
    err = np.abs(m - y)
    rank = ranking_quality(mean.detach().cpu().numpy(), unc.detach().cpu().numpy(), dataset, df)
    return {**rank,
        "n": float(len(y)),
        "rmse": float(np.sqrt(np.mean((m - y) ** 2))),
        "mae": float(err.mean()),
        "auc": _auc(m, y >= float(dataset.positive_threshold)),
        "unc_err_spearman": _corr(stats.spearmanr, s, err),
        "unc_err_pearson": _corr(stats.pearsonr, s, err),
        "mean_unc": float(s.mean()),
    }


def _ndcg(score: np.ndarray, gain: np.ndarray, k: int) -> float:
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    top = gain[np.argsort(-score, kind="stable")][:k]
    ideal = np.sort(gain)[::-1][:k]
    best = float(ideal @ disc[: len(ideal)])
    return float(top @ disc[: len(top)]) / best if best > 0 else float("nan")


def ranking_quality(mean: np.ndarray, unc: np.ndarray, dataset: Any, df: Any, k_top: int = 30) -> dict[str, float]:
    """The ranking keys of `quality` (see the module docstring) for the ``(n_users, n_items)`` matrices."""
    n_items = mean.shape[1]
    tr = dataset.train
    logged = np.unique(tr["user"].to_numpy(np.int64) * n_items + tr["item"].to_numpy(np.int64))
    u = df["user"].to_numpy(np.int64)
    i = df["item"].to_numpy(np.int64)
    keep = ~np.isin(u * n_items + i, logged)
    u, i, y = u[keep], i[keep], df["reward"].to_numpy(np.float64)[keep]
    m, s = mean[u, i].astype(np.float64), unc[u, i].astype(np.float64)
    order = np.argsort(u, kind="stable")
    u, m, y = u[order], m[order], y[order]
    bounds = np.flatnonzero(np.diff(u)) + 1
    nd, sp = [], []
    for mu, yu in zip(np.split(m, bounds), np.split(y, bounds), strict=True):
        if len(yu) > 1:
            nd.append(_ndcg(mu, 2.0 ** yu - 1.0, 5))
            if np.std(yu) > 0 and np.std(mu) > 0:
                sp.append(stats.spearmanr(mu, yu)[0])
    n_eval = min(int(getattr(dataset, "n_gt_users", mean.shape[0]) or mean.shape[0]), mean.shape[0])
    k = min(k_top, n_items)
    top = np.argpartition(-mean[:n_eval], k - 1, axis=1)[:, :k]
    flat = (np.arange(n_eval)[:, None] * n_items + top).ravel()
    return {
        "pearson": _corr(stats.pearsonr, m, y),
        "ndcg5": float(np.nanmean(nd)) if nd else float("nan"),
        "user_spearman": float(np.mean(sp)) if sp else float("nan"),
        "unc_err_spearman_unlogged": _corr(stats.spearmanr, s[order], np.abs(m - y)),
        "top30_logged": float(np.isin(flat, logged).mean()),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of `quality` rows (each with ``data``, ``kind`` and optionally ``fit_s``); columns
    marked * are on the test pairs not logged in the training data (the last line is the last row)."""
    cols = [("rmse", "RMSE", 7), ("mae", "MAE", 7), ("auc", "AUC", 6), ("unc_err_spearman", "rho_s(unc,|e|)", 15),
            ("unc_err_pearson", "r_p(unc,|e|)", 13), ("pearson", "r(mean,r)*", 11), ("ndcg5", "NDCG@5*", 8),
            ("user_spearman", "rho_user*", 10), ("unc_err_spearman_unlogged", "rho_s(unc,|e|)*", 16),
            ("top30_logged", "top30_logged", 13), ("fit_s", "fit_s", 8)]
    head = f"{'data':<10} {'kind':<10} " + " ".join(f"{name:>{w}}" for _, name, w in cols)
    out = [head, "-" * len(head)]
    for r in rows:
        cells = [f"{float(r.get(key, float('nan'))):{w}.{1 if key == 'fit_s' else 3}f}" for key, _, w in cols]
        out.append(f"{r.get('data', ''):<10} {r.get('kind', ''):<10} " + " ".join(cells))
    return "\n".join(out)
