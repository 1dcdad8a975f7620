"""Coat (Schnabel et al. 2016): 290 users x 300 jackets, ratings 1-5.

Files (``<data>/coat/``): ``train.ascii`` (self-selected, MNAR: 24 ratings per user) and ``test.ascii``
(16 ratings per user on random items), dense 290 x 300 whitespace matrices with 0 = missing;
``rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii`` (complete 290 x 300 integer pseudo-ground-truth, the one
DORL / ROLeR / EasyRL4Rec evaluate on); ``user_item_features/{item,user}_features.ascii`` one-hot matrices
with their ``*_map.txt`` column names.

Item categories are the 33 item one-hot columns (groups gender, jackettype, color, onfrontpage): exactly
what DORL's quit rule and majority-category metric group by. ``meta["category_groups"]`` maps each group
(named as in DORL's ``feature_domination``: ``gender_i``, ``jackettype``, ``color``, ``onfrontpage``) to its
column indices, in the group's own value order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data.base import LoggedDataset
from recgym.data.cache import cached_dataset, locate
from recgym.data.paths import data_root
from recgym.data.validate import check_matrix_values, check_shape, malformed, read_dense_matrix

PARSER_VERSION = 2  # 2: meta["ground_truth"] provenance
N_USERS, N_ITEMS = 290, 300
_DORL_GROUP = {"gender": "gender_i"}
# The release's counts (Schnabel et al. 2016): 290 users x 300 items, 24 self-selected ratings per user in train,
# 16 random ones in test; checked when a file's checksum differs from the release (`recgym.data.cache`).
PUBLISHED_COUNTS = {"n_users": 290, "n_items": 300, "train_rows": 6960, "test_rows": 4640, "gt_users": 290}


def _names(path: os.PathLike[str], n: int) -> list[str]:
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) != n:
        raise malformed(path, len(lines), None, f"expected {n} feature names (one per line), found {len(lines)}")
    for i, ln in enumerate(lines, start=1):
        if ":" not in ln:
            raise malformed(path, i, None, f"expected 'group:value', got {ln!r}")
    return lines


def _ratings_frame(mat: np.ndarray) -> pd.DataFrame:
    u, i = np.nonzero(mat)
    return pd.DataFrame(
        {"user": u.astype(np.int32), "item": i.astype(np.int32), "reward": mat[u, i].astype(np.float32)}
    )


def load_coat(data_dir: str | os.PathLike[str] | None = None, *, use_cache: bool = True) -> LoggedDataset:
    """Load Coat as a `LoggedDataset` (reward = rating 1..5, positive >= 4, distance quit rule)."""
    files = {
        "train": locate("coat", "train.ascii", data_dir),
        "test": locate("coat", "test.ascii", data_dir),
        "ground_truth": locate("coat", "coat_pseudoGT_ratingM.ascii", data_dir, folder="rl4rec_BetsyHJ"),
        "item_features": locate("coat", "item_features.ascii", data_dir, folder="user_item_features"),
        "item_features_map": locate("coat", "item_features_map.txt", data_dir, folder="user_item_features"),
        "user_features": locate("coat", "user_features.ascii", data_dir, folder="user_item_features"),
        "user_features_map": locate("coat", "user_features_map.txt", data_dir, folder="user_item_features"),
    }

    def build() -> LoggedDataset:
        train = read_dense_matrix(files["train"], n_cols=N_ITEMS, n_rows=N_USERS, integer=True)
        test = read_dense_matrix(files["test"], n_cols=N_ITEMS, n_rows=N_USERS, integer=True)
        gt = read_dense_matrix(files["ground_truth"], n_cols=N_ITEMS, n_rows=N_USERS, integer=True)
        for key, m, allowed in (("train", train, range(6)), ("test", test, range(6)), ("ground_truth", gt, range(1, 6))):
            check_matrix_values(m, list(allowed), files[key], "rating")
        item_names = _names(files["item_features_map"], 33)
        user_names = _names(files["user_features_map"], 14)
        item_feat = read_dense_matrix(files["item_features"], n_cols=len(item_names), integer=True)
        user_feat = read_dense_matrix(files["user_features"], n_cols=len(user_names), integer=True)
        check_shape(item_feat, (N_ITEMS, len(item_names)), files["item_features"], "item feature matrix")
        check_shape(user_feat, (N_USERS, len(user_names)), files["user_features"], "user feature matrix")
        check_matrix_values(item_feat, [0, 1], files["item_features"], "one-hot value")
        check_matrix_values(user_feat, [0, 1], files["user_features"], "one-hot value")
        groups: dict[str, list[int]] = {}
        for j, nm in enumerate(item_names):
            g = nm.split(":", 1)[0]
            groups.setdefault(_DORL_GROUP.get(g, g), []).append(j)
        for g, cols in groups.items():
            per_item = item_feat[:, cols].sum(1)
            if (per_item != 1).any():
                r = int(np.flatnonzero(per_item != 1)[0])
                raise malformed(
                    files["item_features"], r + 1, None, f"item has {int(per_item[r])} values in one-hot group {g!r}"
                )
        return LoggedDataset(
            name="coat",
            n_users=N_USERS,
            n_items=N_ITEMS,
            train=_ratings_frame(train),
            test=_ratings_frame(test),
            ground_truth=gt.astype(np.float32),
            item_categories=item_feat.astype(bool),
            category_names=item_names,
            item_features=item_feat.astype(np.float32),
            user_features=user_feat.astype(np.float32),
            reward_kind="rating",
            positive_threshold=4.0,
            quit_rule="distance",
            meta={
                "ground_truth_method": "shipped pseudo-ground-truth matrix coat_pseudoGT_ratingM.ascii "
                "(BetsyHJ/RL4Rec; the matrix DORL, ROLeR and EasyRL4Rec evaluate on)",
                "ground_truth": {
                    "source": "RL4Rec's coat_pseudoGT_ratingM.ascii (shipped)",
                    "comparable_to_published": True,
                    "note": "the matrix DORL, ROLeR and EasyRL4Rec evaluate on, read as they do (integers 1-5)",
                },
                "category_groups": groups,
                "user_feature_names": user_names,
                "source": "Schnabel et al. 2016, https://www.cs.cornell.edu/~schnabts/mnar/",
            },
        )

    return cached_dataset(
        "coat", files, build, config={"parser": PARSER_VERSION}, use_cache=use_cache, data_root_dir=data_root(data_dir),
        published=PUBLISHED_COUNTS,
    )
