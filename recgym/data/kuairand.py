"""KuaiRand-Pure (Gao et al. 2022, CC BY-SA 4.0): 27,285 users x 7,583 videos.

Files (``<data>/kuairand_pure/``, also searched in ``data/`` and ``KuaiRand-Pure/data/`` as unpacked from
the official archive):

- ``log_standard_4_08_to_4_21_pure.csv``: the biased logs (recommender-chosen exposures) -> ``train``,
  reward ``is_click``, ``time`` = ``time_ms``.
- ``log_random_4_22_to_5_08_pure.csv``: random exposures -> ``test`` (reward ``is_click``), and the data the
  ground truth is completed from.
- ``user_features_pure.csv`` / ``video_features_basic_pure.csv``: one row per id, ids ``0..n-1``; they fix
  ``n_users`` and ``n_items``.

Log header (exactly): ``user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,
is_forward,is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,
is_profile_enter,is_rand,tab``. Repeated (user, video) rows are real repeated exposures and are kept.

Ground truth (as DORL: an MF-completed ``is_click`` matrix for all users x videos): a biased matrix
factorisation ``mu + b_u + c_i + p_u . q_i`` (rank 10, ridge 5 on factors and biases, 10 ALS sweeps,
least squares on the observed 0/1 clicks of the random log; numpy/scipy) predicts every cell; the
prediction is clipped to [0, 1] (a click probability estimate), float32, shape (n_users, n_items), about
0.8 GB for the real set. ``meta["ground_truth_check"]`` holds a held-out check (10 % of the random log):
RMSE and AUC of the completion against the global-mean and item-mean click rates.

Categories: the ``tag`` column (comma-separated tag ids; empty for a few videos): one column per distinct
tag id, named ``tag:<id>``. DORL numbers features ``tag + 1`` (0 = no tag): ``meta["dorl_feature_ids"]``
gives that number for each column, so results can be checked against DORL's ``feature_domination``.
Videos without a tag have no category (an all-False row; ``meta["n_items_without_tag"]``).

Features: ``user_features`` = the numeric columns (raw), one-hot of the string columns
(``user_active_degree`` and the ``*_range`` buckets) and the 18 ``onehot_feat*`` categorical codes as
numbers (missing -> -1); ``item_features`` = numeric video columns (missing -> 0) and one-hot of
``video_type`` / ``upload_type``. Names are in ``meta``. float32 everywhere, int32 ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recgym.data._numeric import fit_biased_mf
from recgym.data.base import LoggedDataset
from recgym.data.cache import cached_dataset, locate
from recgym.data.paths import data_root
from recgym.data.validate import check_in_set, check_range, malformed, read_table

PARSER_VERSION = 1
LOG_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow", "is_comment",
    "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "profile_stay_time",
    "comment_stay_time", "is_profile_enter", "is_rand", "tab",
)  # fmt: skip
USER_COLUMNS = (
    "user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
    "follow_user_num", "follow_user_num_range", "fans_user_num", "fans_user_num_range", "friend_user_num",
    "friend_user_num_range", "register_days", "register_days_range",
) + tuple(f"onehot_feat{k}" for k in range(18))  # fmt: skip
VIDEO_COLUMNS = (
    "video_id", "author_id", "video_type", "upload_dt", "upload_type", "visible_status", "video_duration",
    "server_width", "server_height", "music_id", "music_type", "tag",
)  # fmt: skip
TRAIN_LOG = "log_standard_4_08_to_4_21_pure.csv"
TEST_LOG = "log_random_4_22_to_5_08_pure.csv"
USER_FILE = "user_features_pure.csv"
VIDEO_FILE = "video_features_basic_pure.csv"
GT_CONFIG: dict[str, Any] = {"rank": 10, "reg": 5.0, "reg_bias": 5.0, "n_iters": 10, "holdout": 0.1}


def _read_log(path: Path, n_users: int, n_items: int) -> pd.DataFrame:
    df = read_table(
        path,
        LOG_COLUMNS,
        dtypes={"user_id": "int32", "video_id": "int32", "time_ms": "int64", "is_click": "int8", "is_rand": "int8"},
        usecols=["user_id", "video_id", "time_ms", "is_click"],
    )
    check_range(df["user_id"].to_numpy(), 0, n_users - 1, path, "user_id")
    check_range(df["video_id"].to_numpy(), 0, n_items - 1, path, "video_id")
    check_in_set(df["is_click"].to_numpy(), [0, 1], path, "is_click")
    return pd.DataFrame(
        {
            "user": df["user_id"].to_numpy(np.int32),
            "item": df["video_id"].to_numpy(np.int32),
            "reward": df["is_click"].to_numpy(np.float32),
            "time": df["time_ms"].to_numpy(np.int64),
        }
    )


def _check_ids(ids: np.ndarray, path: Path, field: str) -> None:
    bad = ids != np.arange(len(ids))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise malformed(path, r + 2, field, f"ids must be 0..n-1 in order; row {r} has {ids[r]}")


def _user_features(path: Path) -> tuple[np.ndarray, list[str]]:
    numeric = ["is_lowactive_period", "is_live_streamer", "is_video_author", "follow_user_num", "fans_user_num",
               "friend_user_num", "register_days"]  # fmt: skip
    codes = [f"onehot_feat{k}" for k in range(18)]
    df = read_table(path, USER_COLUMNS, dtypes={"user_id": "int64", **dict.fromkeys(numeric + codes, "float64")})
    _check_ids(df["user_id"].to_numpy(), path, "user_id")
    cols: list[np.ndarray] = []
    names: list[str] = []
    for c in numeric:
        cols.append(np.nan_to_num(df[c].to_numpy(np.float64), nan=0.0))
        names.append(c)
    for c in ("user_active_degree", "follow_user_num_range", "fans_user_num_range", "friend_user_num_range",
              "register_days_range"):  # fmt: skip
        vals = df[c].astype(str).to_numpy()
        for v in sorted(set(vals)):
            cols.append((vals == v).astype(np.float64))
            names.append(f"{c}={v}")
    for c in codes:
        cols.append(np.nan_to_num(df[c].to_numpy(np.float64), nan=-1.0))
        names.append(c)
    return np.stack(cols, axis=1).astype(np.float32), names


def _video_features(path: Path) -> tuple[np.ndarray, list[str], np.ndarray, list[str], list[int], int]:
    numeric = ["visible_status", "video_duration", "server_width", "server_height", "music_type"]
    df = read_table(path, VIDEO_COLUMNS, dtypes={"video_id": "int64", **dict.fromkeys(numeric, "float64")})
    _check_ids(df["video_id"].to_numpy(), path, "video_id")
    cols, names = [], []
    for c in numeric:
        cols.append(np.nan_to_num(df[c].to_numpy(np.float64), nan=0.0))
        names.append(c)
    for c in ("video_type", "upload_type"):
        vals = df[c].astype(str).to_numpy()
        for v in sorted(set(vals)):
            cols.append((vals == v).astype(np.float64))
            names.append(f"{c}={v}")
    feats = np.stack(cols, axis=1).astype(np.float32)
    # tags: "" / NaN -> none, else comma-separated ints
    tags_per_item: list[list[int]] = []
    for r, raw in enumerate(df["tag"].to_numpy()):
        s = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw).strip()
        if s in ("", "nan"):
            tags_per_item.append([])
            continue
        try:
            tags_per_item.append([int(float(t)) for t in s.split(",")])
        except ValueError:
            raise malformed(path, r + 2, "tag", f"expected comma-separated integer tag ids, got {s!r}") from None
    tag_ids = sorted({t for ts in tags_per_item for t in ts})
    col_of = {t: j for j, t in enumerate(tag_ids)}
    cats = np.zeros((len(df), len(tag_ids)), dtype=bool)
    for r, ts in enumerate(tags_per_item):
        for t in ts:
            cats[r, col_of[t]] = True
    n_untagged = sum(1 for ts in tags_per_item if not ts)
    return feats, names, cats, [f"tag:{t}" for t in tag_ids], [t + 1 for t in tag_ids], n_untagged


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def complete_click_matrix(test: pd.DataFrame, n_users: int, n_items: int, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """MF-completed click matrix from random-exposure logs, plus a held-out check (see module docstring)."""
    u = test["user"].to_numpy()
    i = test["item"].to_numpy()
    y = test["reward"].to_numpy(np.float64)
    c = GT_CONFIG
    kw = {"rank": c["rank"], "reg": c["reg"], "reg_bias": c["reg_bias"], "n_iters": c["n_iters"], "seed": seed}
    rng = np.random.default_rng(seed)
    hold = rng.random(len(y)) < c["holdout"]
    check: dict[str, Any] = {"holdout_fraction": c["holdout"], "n_heldout": int(hold.sum())}
    if hold.any() and (~hold).any():
        m = fit_biased_mf(u[~hold], i[~hold], y[~hold], n_users, n_items, **kw)
        pred = np.clip(m.predict(u[hold], i[hold]), 0, 1)
        g = float(y[~hold].mean())
        cnt = np.bincount(i[~hold], minlength=n_items)
        imean = np.where(cnt > 0, np.bincount(i[~hold], weights=y[~hold], minlength=n_items) / np.maximum(cnt, 1), g)
        for name, p in (("completion", pred), ("global_mean", np.full(hold.sum(), g)), ("item_mean", imean[i[hold]])):
            check[f"rmse_{name}"] = float(np.sqrt(np.mean((p - y[hold]) ** 2)))
            check[f"auc_{name}"] = _auc(p, y[hold])
    model = fit_biased_mf(u, i, y, n_users, n_items, **kw)
    gt = model.full(n_users)
    np.clip(gt, 0.0, 1.0, out=gt)
    return gt, check


def load_kuairand(
    data_dir: str | os.PathLike[str] | None = None, *, seed: int = 0, use_cache: bool = True
) -> LoggedDataset:
    """Load KuaiRand-Pure (reward ``is_click``, category quit rule, MF-completed ground truth)."""
    files = {
        "train": locate("kuairand", TRAIN_LOG, data_dir),
        "test": locate("kuairand", TEST_LOG, data_dir),
        "user_features": locate("kuairand", USER_FILE, data_dir),
        "video_features": locate("kuairand", VIDEO_FILE, data_dir),
    }

    def build() -> LoggedDataset:
        ufeat, unames = _user_features(files["user_features"])
        ifeat, inames, cats, cat_names, dorl_ids, n_untagged = _video_features(files["video_features"])
        n_users, n_items = ufeat.shape[0], ifeat.shape[0]
        train = _read_log(files["train"], n_users, n_items)
        test = _read_log(files["test"], n_users, n_items)
        gt, check = complete_click_matrix(test, n_users, n_items, seed)
        return LoggedDataset(
            name="kuairand",
            n_users=n_users,
            n_items=n_items,
            train=train,
            test=test,
            ground_truth=gt,
            item_categories=cats,
            category_names=cat_names,
            item_features=ifeat,
            user_features=ufeat,
            reward_kind="click",
            positive_threshold=1.0,
            quit_rule="category",
            meta={
                "source": "KuaiRand-Pure (Gao et al. 2022), https://kuairand.com/",
                "ground_truth_method": (
                    "MF-completed is_click matrix: biased MF (rank {rank}, ridge {reg}, {n_iters} ALS sweeps, "
                    "least squares on 0/1 clicks) fitted on the random-exposure log "
                    f"{TEST_LOG}, predictions clipped to [0, 1]"
                ).format(**GT_CONFIG),
                "ground_truth_config": dict(GT_CONFIG, seed=seed),
                "ground_truth_check": check,
                "category_method": "video tags (video_features_basic_pure.csv, column tag)",
                "category_groups": {"feat": list(range(len(cat_names)))},
                "dorl_feature_ids": dorl_ids,
                "n_items_without_tag": n_untagged,
                "user_feature_names": unames,
                "item_feature_names": inames,
            },
        )

    return cached_dataset(
        "kuairand",
        files,
        build,
        config={"parser": PARSER_VERSION, "seed": seed, "gt": GT_CONFIG},
        use_cache=use_cache,
        data_root_dir=data_root(data_dir),
    )
