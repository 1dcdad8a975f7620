"""A tiny latent-factor LoggedDataset built from small arrays (no files, no generator dependency)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recgym.data.base import LoggedDataset


def tiny_dataset(n_users: int = 40, n_items: int = 30, per_user: int = 8, seed: int = 0,
                 name: str = "tiny") -> LoggedDataset:
    """Ratings 1..5 from a rank-3 model; popularity-biased train logs, random-exposure test logs."""
    rng = np.random.default_rng(seed)
    uf = rng.normal(size=(n_users, 3))
    vf = rng.normal(size=(n_items, 3))
    score = uf @ vf.T
    gt = np.clip(np.round(3 + score / score.std() * 1.2), 1, 5).astype(np.float32)
    pop = np.exp(-np.arange(n_items) / (n_items / 4))
    pop /= pop.sum()
    rows, test_rows = [], []
    for u in range(n_users):
        its = rng.choice(n_items, size=per_user, replace=False, p=pop)
        rows += [(u, int(i), float(gt[u, i])) for i in its]
        rest = np.setdiff1d(np.arange(n_items), its)
        test_rows += [(u, int(i), float(gt[u, i])) for i in rng.choice(rest, size=4, replace=False)]
    train = pd.DataFrame(rows, columns=["user", "item", "reward"])
    test = pd.DataFrame(test_rows, columns=["user", "item", "reward"])
    cats = np.zeros((n_items, 3), dtype=bool)
    cats[np.arange(n_items), np.arange(n_items) % 3] = True
    return LoggedDataset(name=name, n_users=n_users, n_items=n_items, train=train, test=test, ground_truth=gt,
                         item_categories=cats, category_names=["a", "b", "c"], reward_kind="rating",
                         positive_threshold=4.0, quit_rule="distance",
                         meta={"user_factors": uf, "item_factors": vf})
