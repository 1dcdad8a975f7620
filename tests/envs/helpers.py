"""Tiny hand-made datasets for env tests (values small enough to compute by hand)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recgym.data.base import LoggedDataset

# 3 users x 4 items; columns c0=[1,4,5], c1=[2,3,5], c2=[3,2,1], c3=[4,1,1]. Distances (by hand):
#   d01 = sqrt(1+1+0) = 1.414, d02 = sqrt(4+4+16) = 4.899, d03 = sqrt(9+9+16) = 5.831,
#   d12 = sqrt(1+1+16) = 4.243, d13 = sqrt(4+4+16) = 4.899, d23 = sqrt(1+1+0) = 1.414
TOY_GT = np.array([[1, 2, 3, 4], [4, 3, 2, 1], [5, 5, 1, 1]], dtype=np.float32)
# categories: item0 {a}, item1 {a, b}, item2 {b}, item3 {c}
TOY_CATS = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)


def toy_dataset(name: str = "toy", quit_rule: str = "distance", gt: np.ndarray | None = None) -> LoggedDataset:
    train = pd.DataFrame({"user": [0, 0, 1, 2, 2], "item": [0, 1, 1, 3, 0], "reward": [1.0, 2.0, 3.0, 1.0, 5.0]})
    test = pd.DataFrame({"user": [0], "item": [2], "reward": [3.0]})
    g = TOY_GT if gt is None else gt
    cats = np.tile(TOY_CATS, (-(-g.shape[1] // 4), 1))[: g.shape[1]]
    return LoggedDataset(
        name=name, n_users=g.shape[0], n_items=g.shape[1], train=train, test=test, ground_truth=g,
        item_categories=cats, category_names=["a", "b", "c"], reward_kind="rating", positive_threshold=4.0,
        quit_rule=quit_rule,
    )
