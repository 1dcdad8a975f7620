"""KuaiRec 2.0 (Gao et al. 2022): a fully observed 1,411 x 3,327 user x video matrix plus sparse big logs.

Files (``<data>/kuairec/``, also searched in ``data/``, ``KuaiRec 2.0/data/`` and ``KuaiRec/data/`` as
unpacked from the official archive):

- ``small_matrix.csv`` and ``big_matrix.csv``, header
  ``user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio``;
- ``item_categories.csv``, header ``video_id,feat``, ``feat`` a list literal of tag ids (``[8]``,
  ``"[27, 9]"``).

Ids. The small matrix defines the evaluation env, as in DORL: its users become ids ``0..n_gt_users-1``
(increasing original id) and the other users of the big matrix follow (also increasing). Items are the
small-matrix videos (increasing original id); big-matrix rows on other videos are dropped (the env can
only recommend videos with a ground-truth value); ``meta["n_big_rows_dropped"]`` counts them. The
original ids are in ``meta["user_ids"]`` / ``meta["video_ids"]``.

Rewards: ``watch_ratio`` clipped to [0, 5] everywhere (train, test and ground truth), so the world models
learn the same quantity the env pays. ``train`` = big matrix (repeated views kept, ``time`` = ``timestamp``
in seconds, NaN where the file has none); ``test`` = the small matrix rows (fully observed, unbiased).
Positive: ``watch_ratio >= 2`` (the KuaiRec paper's "like" threshold).

Ground truth: the small matrix's ``watch_ratio`` clipped at 5. The real matrix lacks about 0.4 % of its
cells; a missing cell is filled with its video's mean over the users who have it (global mean if none), and
``meta["gt_missing_cells"]`` counts them. A (user, video) pair listed twice in the small matrix is averaged,
with a warning, and counted in ``meta["gt_duplicate_pairs"]``.

Categories: one column per tag id present in ``item_categories.csv``, named ``tag:<id>``;
``meta["dorl_feature_ids"]`` holds DORL's numbering (``tag + 1``) for comparison with its
``feature_domination``.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data._numeric import unique_sorted
from recgym.data.base import LoggedDataset
from recgym.data.cache import cached_dataset, locate
from recgym.data.paths import data_root
from recgym.data.validate import check_no_nan, check_range, malformed, read_table

PARSER_VERSION = 1
MATRIX_COLUMNS = ("user_id", "video_id", "play_duration", "video_duration", "time", "date", "timestamp", "watch_ratio")
MAX_WATCH_RATIO = 5.0
POSITIVE_WATCH_RATIO = 2.0
_LIST_RE = re.compile(r"^\[\s*(-?\d+(\s*,\s*-?\d+)*)?\s*\]$")


def _read_matrix(path: Path) -> pd.DataFrame:
    df = read_table(
        path,
        MATRIX_COLUMNS,
        dtypes={"user_id": "int64", "video_id": "int64", "timestamp": "float64", "watch_ratio": "float64"},
        usecols=["user_id", "video_id", "timestamp", "watch_ratio"],
    )
    check_range(df["user_id"].to_numpy(), 0, np.iinfo(np.int32).max, path, "user_id")
    check_range(df["video_id"].to_numpy(), 0, np.iinfo(np.int32).max, path, "video_id")
    wr = df["watch_ratio"].to_numpy()
    check_no_nan(wr, path, "watch_ratio")
    check_range(wr, 0.0, np.inf, path, "watch_ratio")
    return df


def _read_categories(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    df = read_table(path, ["video_id", "feat"], dtypes={"video_id": "int64"})
    vids = df["video_id"].to_numpy()
    check_range(vids, 0, np.iinfo(np.int32).max, path, "video_id")
    feats: list[list[int]] = []
    for r, raw in enumerate(df["feat"].to_numpy()):
        s = "" if not isinstance(raw, str) else raw.strip()
        if not _LIST_RE.match(s):
            raise malformed(path, r + 2, "feat", f"expected a list literal of tag ids like [8] or [27, 9], got {raw!r}")
        body = s[1:-1].strip()
        feats.append([int(t) for t in body.split(",")] if body else [])
    if len(unique_sorted(vids)) != len(vids):
        _, first = unique_sorted(vids, return_index=True)
        seen = np.zeros(len(vids), bool)
        seen[first] = True
        r = int(np.flatnonzero(~seen)[0])
        raise malformed(path, r + 2, "video_id", f"video {vids[r]} listed twice")
    return vids, feats


def load_kuairec(data_dir: str | os.PathLike[str] | None = None, *, use_cache: bool = True) -> LoggedDataset:
    """Load KuaiRec (reward ``watch_ratio`` clipped at 5, category quit rule, small matrix as ground truth)."""
    files = {
        "small_matrix": locate("kuairec", "small_matrix.csv", data_dir),
        "big_matrix": locate("kuairec", "big_matrix.csv", data_dir),
        "item_categories": locate("kuairec", "item_categories.csv", data_dir),
    }

    def build() -> LoggedDataset:
        small = _read_matrix(files["small_matrix"])
        big = _read_matrix(files["big_matrix"])
        cat_vids, cat_feats = _read_categories(files["item_categories"])
        gt_users = unique_sorted(small["user_id"].to_numpy())
        videos = unique_sorted(small["video_id"].to_numpy())
        big_u = big["user_id"].to_numpy()
        all_big = unique_sorted(big_u)
        other_users = all_big[~np.isin(all_big, gt_users)]
        user_ids = np.concatenate([gt_users, other_users])
        n_gt, n_items = len(gt_users), len(videos)
        # user map: sorted lookup over the concatenated order
        order = np.argsort(user_ids, kind="stable")
        sorted_ids = user_ids[order]

        def map_users(x: np.ndarray) -> np.ndarray:
            return order[np.searchsorted(sorted_ids, x)].astype(np.int32)

        su = map_users(small["user_id"].to_numpy())
        si = np.searchsorted(videos, small["video_id"].to_numpy()).astype(np.int32)
        swr = np.clip(small["watch_ratio"].to_numpy(np.float64), 0.0, MAX_WATCH_RATIO)
        key = su.astype(np.int64) * n_items + si
        uniq, inv, counts = unique_sorted(key, return_inverse=True, return_counts=True)
        n_dup = int((counts > 1).sum())
        if n_dup:
            warnings.warn(
                f"kuairec: {files['small_matrix']} lists {n_dup} (user, video) pairs more than once; averaging them",
                stacklevel=2,
            )
        vals = np.bincount(inv, weights=swr) / counts
        gt = np.full((n_gt, n_items), np.nan, dtype=np.float64)
        gt[uniq // n_items, uniq % n_items] = vals
        missing = np.isnan(gt)
        n_missing = int(missing.sum())
        if n_missing:
            col_mean = np.nanmean(np.where(missing.all(0, keepdims=True), 0.0, gt), axis=0)
            glob = float(np.nanmean(gt)) if (~missing).any() else 0.0
            col_mean = np.where(missing.all(0), glob, col_mean)
            gt = np.where(missing, col_mean[None, :], gt)

        in_small = np.isin(big["video_id"].to_numpy(), videos)
        bu = map_users(big_u[in_small])
        bi = np.searchsorted(videos, big["video_id"].to_numpy()[in_small]).astype(np.int32)
        train = pd.DataFrame(
            {
                "user": bu,
                "item": bi,
                "reward": np.clip(big["watch_ratio"].to_numpy(np.float64)[in_small], 0, MAX_WATCH_RATIO).astype(np.float32),
                "time": big["timestamp"].to_numpy(np.float64)[in_small],
            }
        )
        test = pd.DataFrame({"user": su, "item": si, "reward": swr.astype(np.float32)})

        feat_of = dict(zip(cat_vids.tolist(), cat_feats, strict=True))
        no_cat = [int(v) for v in videos if int(v) not in feat_of]
        tag_ids = sorted({t for v in videos for t in feat_of.get(int(v), [])})
        col = {t: j for j, t in enumerate(tag_ids)}
        cats = np.zeros((n_items, len(tag_ids)), dtype=bool)
        for j, v in enumerate(videos):
            for t in feat_of.get(int(v), []):
                cats[j, col[t]] = True
        return LoggedDataset(
            name="kuairec",
            n_users=len(user_ids),
            n_items=n_items,
            train=train,
            test=test,
            ground_truth=gt.astype(np.float32),
            item_categories=cats,
            category_names=[f"tag:{t}" for t in tag_ids],
            reward_kind="watch_ratio",
            positive_threshold=POSITIVE_WATCH_RATIO,
            quit_rule="category",
            meta={
                "source": "KuaiRec 2.0 (Gao et al. 2022), https://kuairec.com/",
                "ground_truth_method": "small_matrix.csv watch_ratio clipped to [0, 5]; missing cells filled "
                "with the video's mean over observed users",
                "gt_missing_cells": n_missing,
                "gt_duplicate_pairs": n_dup,
                "n_big_rows_dropped": int((~in_small).sum()),
                "user_ids": user_ids.tolist(),
                "video_ids": videos.tolist(),
                "videos_without_categories": no_cat,
                "category_method": "item_categories.csv feat tag ids",
                "category_groups": {"feat": list(range(len(tag_ids)))},
                "dorl_feature_ids": [t + 1 for t in tag_ids],
            },
        )

    return cached_dataset(
        "kuairec", files, build, config={"parser": PARSER_VERSION}, use_cache=use_cache, data_root_dir=data_root(data_dir)
    )
