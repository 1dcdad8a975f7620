"""World-model quality on the unbiased test data: RMSE, MAE, AUC and uncertainty/error correlation.

* RMSE / MAE of ``mean[u, i]`` against the test rewards (random-exposure / unbiased interactions);
* AUC of ``mean`` as a score for "is positive" (reward >= ``dataset.positive_threshold``: ratings >= 4 on
  Coat/Yahoo/synthetic, clicks on KuaiRand); NaN when the test set has a single class;
* Spearman and Pearson correlation between ``uncertainty[u, i]`` and the absolute error ``|mean - r|``
  (positive = the model knows where it is wrong); NaN when the uncertainty is constant.
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
    return {
        "n": float(len(y)),
        "rmse": float(np.sqrt(np.mean((m - y) ** 2))),
        "mae": float(err.mean()),
        "auc": _auc(m, y >= float(dataset.positive_threshold)),
        "unc_err_spearman": _corr(stats.spearmanr, s, err),
        "unc_err_pearson": _corr(stats.pearsonr, s, err),
        "mean_unc": float(s.mean()),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of `quality` rows (each with ``data``, ``kind`` and optionally ``fit_s``)."""
    cols = ["data", "kind", "rmse", "mae", "auc", "unc_err_spearman", "unc_err_pearson", "fit_s"]
    head = f"{'data':<10} {'kind':<10} {'RMSE':>7} {'MAE':>7} {'AUC':>6} {'rho_s(unc,|e|)':>15} {'r_p(unc,|e|)':>13} {'fit_s':>8}"
    out = [head, "-" * len(head)]
    for r in rows:
        vals = [r.get(c, float("nan")) for c in cols]
        out.append(f"{vals[0]:<10} {vals[1]:<10} {vals[2]:7.3f} {vals[3]:7.3f} {vals[4]:6.3f} {vals[5]:15.3f} "
                   f"{vals[6]:13.3f} {vals[7]:8.1f}")
    return "\n".join(out)
