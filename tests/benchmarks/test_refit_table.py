"""Pieces of `recgym.benchmarks.refit_table` that run without ML-1M."""

from __future__ import annotations

import numpy as np

from recgym.benchmarks.refit_table import print_report, subset_splits
from recgym.recommenders import DiffRecSplits


def test_subset_splits_is_a_fixed_row_subset() -> None:
    rng = np.random.default_rng(0)
    train = (rng.random((20, 6)) < 0.3).astype(np.float32)
    sp = DiffRecSplits("x", train, train == 0, np.zeros((20, 6), bool), "fp")
    sub = subset_splits(sp, 5, seed=1)
    again = subset_splits(sp, 5, seed=1)
    assert sub.n_users == 5 and np.array_equal(sub.train, again.train)
    rows = [i for i in range(20) if any(np.array_equal(sp.train[i], r) for r in sub.train)]
    assert len(rows) >= 5
    assert subset_splits(sp, 0) is sp


def test_print_report_mean_std(capsys) -> None:
    r = {"Recall@10": 0.1, "Recall@20": 0.2, "NDCG@10": 0.3, "NDCG@20": 0.4, "valid_Recall@20": 0.5}
    r2 = {k: v + 0.1 for k, v in r.items()}
    report = {"eval_users": 7, "seeds": [0, 1], "results": {"m": [r, r2]},
              "timing": {"refit_racs_sec_per_iteration": 2.0, "pretrain_sec_per_epoch": 8.0},
              "memory": {"pretrain": {"peak_rss_mb": 100.0, "base_rss_mb": 50.0},
                         "refit": {"peak_rss_mb": 104.0, "base_rss_mb": 60.0}}}
    print_report(report)
    out = capsys.readouterr().out
    assert "| m | 0.1500 +- 0.0500 | 0.2500 +- 0.0500 |" in out
    assert "(x4.0)" in out and "(+4.0%)" in out
