"""KuaiRec 2.0 (Gao et al. 2022): a fully observed 1,411 x 3,327 user x video matrix plus sparse big logs.

Files (``<data>/kuairec/``, also searched in ``data/``, ``KuaiRec 2.0/data/`` and ``KuaiRec/data/`` as
unpacked from the official archive):

- ``small_matrix.csv`` and ``big_matrix.csv``, header
  ``user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio``;
- ``item_categories.csv``, header ``video_id,feat``, ``feat`` a list literal of tag ids (``[8]``,
  ``"[27, 9]"``).

Ids. The small matrix defines the evaluation env, as in DORL: its users become ids ``0..n_gt_users-1``
(increasing original id) and the other users of the big matrix follow (also increasing). Items (the action
space) are the small-matrix videos (increasing original id). DORL trains its user model on *all* big-matrix
rows (videos outside the small matrix included: they share user and tag embeddings) and recommends only
small-matrix videos. A `LoggedDataset` has one item id space for the logs, the world models and the env's
actions, so big-matrix rows on small-matrix videos are ``train`` and the rows on the other videos are the
dataset's side logs: ``side_train`` (same columns; ``item`` in the side videos' own id space, increasing
original id) and ``side_item_categories`` (their tags over the same columns). Nothing is dropped; world models
that use side logs (the DeepFM ensemble) learn from both, the env never recommends a side video.
``meta["n_side_rows"]`` / ``meta["n_side_videos"]`` count them; the original ids are in ``meta["user_ids"]``,
``meta["video_ids"]`` and ``meta["side_video_ids"]``.

Rewards: ``watch_ratio`` clipped to [0, 5] everywhere (train, side logs, test and ground truth), so the world
models learn the same quantity the env pays. ``train`` / ``side_train`` = big matrix (repeated views kept,
``time`` = ``timestamp`` in seconds, NaN where the file has none); ``test`` = the small matrix rows (fully
observed, unbiased).
Positive: ``watch_ratio >= 2`` (the KuaiRec paper's "like" threshold).

Ground truth: the small matrix's ``watch_ratio`` clipped at 5, read as DORL's ``KuaiEnv.py`` ``load_mat``
does (a sparse matrix made dense): a missing cell is 0 (the real matrix lacks about 0.4 % of its cells) and
a (user, video) pair listed more than once is the sum of its clipped values (with a warning). Both are
counted in ``meta["ground_truth"]`` (and ``meta["gt_missing_cells"]`` / ``meta["gt_duplicate_pairs"]``).

Categories: one column per tag id that ``item_categories.csv`` gives a small-matrix video, named ``tag:<id>``;
``meta["dorl_feature_ids"]`` holds DORL's numbering (``tag + 1``). The columns are the tags of the
small-matrix videos, so the action space's categories (quit rule, diversity metrics) do not depend on the
side videos; a tag that only side videos carry has no column and is left out of ``side_item_categories``
(``meta["side_tags_without_column"]`` lists such tags; DORL's feature embedding covers every tag, but a
category no recommendable video has cannot matter to the env, and in a DORL DeepFM it would only feed the
side videos' feature field). When ``reference_dorl/feature_domination.json``
(DORL's ``feature_domination.pickle`` as JSON: ``{"feat": [[feature id, share], ...]}``) is in the folder,
``meta["majority_categories"]["feat"]`` holds DORL's majority categories as column indices (`dorl_majority`;
the ``feat`` group of ``meta["category_groups"]`` is every column, so these are also its positions): the
shares DORL computed on its normalised watch ratios (threshold 0.6), which recgym's clipped watch ratios
cannot reproduce.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recgym.data._numeric import unique_sorted
from recgym.data.base import LoggedDataset
from recgym.data.cache import cached_dataset, locate
from recgym.data.paths import data_root, dataset_dir
from recgym.data.validate import check_no_nan, check_range, malformed, read_table

PARSER_VERSION = 3  # 3: big-matrix rows on non-small-matrix videos become side logs (were dropped)
DOMINATION_FILE = "reference_dorl/feature_domination.json"
MAJORITY_SHARE = 0.8  # DORL / EasyRL4Rec evaluators' top_rate
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


def dorl_majority(path: os.PathLike[str] | str, dorl_feature_ids: list[int]) -> dict[str, Any]:
    """DORL's majority categories from its ``feature_domination`` (as JSON), as category column indices.

    DORL's evaluator normalises the listed shares, keeps the longest prefix whose cumulative share is <= 0.8
    (at least one feature) and counts a recommendation in the majority when the item has one of them. Feature
    ids are DORL's (``tag + 1``), mapped to columns with ``dorl_feature_ids``; ids with no column are left
    out and counted. Returns ``{"majority_categories": {"feat": [...]}, "majority_source": ...}``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(int(f), float(v)) for f, v in data["feat"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise malformed(path, None, "feat", f'expected {{"feat": [[feature id, share], ...]}} ({e})') from e
    if not pairs or any(v < 0 for _, v in pairs) or sum(v for _, v in pairs) <= 0:
        raise malformed(path, None, "feat", "expected a non-empty list of non-negative shares")
    shares = np.array([v for _, v in pairs]) / sum(v for _, v in pairs)
    n = max(1, int((np.cumsum(shares) <= MAJORITY_SHARE + 1e-12).sum()))
    col_of = {f: c for c, f in enumerate(dorl_feature_ids)}
    kept = [col_of[f] for f, _ in pairs[:n] if f in col_of]
    return {
        "majority_categories": {"feat": kept},
        "majority_source": f"DORL feature_domination ({path.name}): top {n} features by share, cumulative share "
        f"<= {MAJORITY_SHARE}; {n - len(kept)} without a category column here",
    }


def load_kuairec(data_dir: str | os.PathLike[str] | None = None, *, use_cache: bool = True) -> LoggedDataset:
    """Load KuaiRec (reward ``watch_ratio`` clipped at 5, category quit rule, small matrix as ground truth)."""
    files = {
        "small_matrix": locate("kuairec", "small_matrix.csv", data_dir),
        "big_matrix": locate("kuairec", "big_matrix.csv", data_dir),
        "item_categories": locate("kuairec", "item_categories.csv", data_dir),
    }
    domination = dataset_dir("kuairec", data_dir) / DOMINATION_FILE
    if domination.is_file():
        files["feature_domination"] = domination

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
                f"kuairec: {files['small_matrix']} lists {n_dup} (user, video) pairs more than once; summing them "
                "(as DORL's KuaiEnv.py)",
                stacklevel=2,
            )
        gt = np.zeros((n_gt, n_items), dtype=np.float64)  # DORL: missing cells 0, repeated pairs summed
        gt[uniq // n_items, uniq % n_items] = np.bincount(inv, weights=swr)
        n_missing = n_gt * n_items - len(uniq)

        big_v = big["video_id"].to_numpy()
        in_small = np.isin(big_v, videos)
        big_wr = np.clip(big["watch_ratio"].to_numpy(np.float64), 0, MAX_WATCH_RATIO).astype(np.float32)
        big_t = big["timestamp"].to_numpy(np.float64)

        def logs(rows: np.ndarray, vids: np.ndarray) -> pd.DataFrame:
            return pd.DataFrame(
                {
                    "user": map_users(big_u[rows]),
                    "item": np.searchsorted(vids, big_v[rows]).astype(np.int32),
                    "reward": big_wr[rows],
                    "time": big_t[rows],
                }
            )

        train = logs(in_small, videos)
        side_videos = unique_sorted(big_v[~in_small])
        side_train = logs(~in_small, side_videos) if len(side_videos) else None
        test = pd.DataFrame({"user": su, "item": si, "reward": swr.astype(np.float32)})

        feat_of = dict(zip(cat_vids.tolist(), cat_feats, strict=True))
        no_cat = [int(v) for v in videos if int(v) not in feat_of]
        tag_ids = sorted({t for v in videos for t in feat_of.get(int(v), [])})
        col = {t: j for j, t in enumerate(tag_ids)}

        def categories(vids: np.ndarray) -> np.ndarray:
            out = np.zeros((len(vids), len(tag_ids)), dtype=bool)
            for j, v in enumerate(vids):
                for t in feat_of.get(int(v), []):
                    if t in col:  # side-only tags have no column (module docstring)
                        out[j, col[t]] = True
            return out

        cats = categories(videos)
        side_cats = categories(side_videos) if side_train is not None else None
        side_only_tags = sorted({t for v in side_videos for t in feat_of.get(int(v), [])} - set(col))
        n_side = 0 if side_train is None else len(side_train)
        return LoggedDataset(
            name="kuairec",
            n_users=len(user_ids),
            n_items=n_items,
            train=train,
            test=test,
            side_train=side_train,
            side_item_categories=side_cats,
            ground_truth=gt.astype(np.float32),
            item_categories=cats,
            category_names=[f"tag:{t}" for t in tag_ids],
            reward_kind="watch_ratio",
            positive_threshold=POSITIVE_WATCH_RATIO,
            quit_rule="category",
            meta={
                "source": "KuaiRec 2.0 (Gao et al. 2022), https://kuairec.com/",
                "ground_truth": {
                    "source": "KuaiRec small_matrix.csv watch_ratio (fully observed)",
                    "comparable_to_published": True,
                    "note": "read as DORL's KuaiEnv.py: clipped at 5, missing cells 0, repeated pairs summed; "
                    f"training logs: big_matrix.csv rows on small-matrix videos in train, the {n_side} rows on "
                    f"{len(side_videos)} other videos in the side logs (side_train; DORL's user model sees all "
                    "rows, the env recommends only small-matrix videos)",
                    "missing_cells": n_missing,
                    "duplicate_pairs": n_dup,
                },
                "ground_truth_method": "small_matrix.csv watch_ratio clipped to [0, 5]; missing cells 0, repeated "
                "pairs summed (DORL KuaiEnv.py load_mat)",
                "gt_missing_cells": n_missing,
                "gt_duplicate_pairs": n_dup,
                "n_side_rows": n_side,
                "n_side_videos": len(side_videos),
                "user_ids": user_ids.tolist(),
                "video_ids": videos.tolist(),
                "side_video_ids": side_videos.tolist(),
                "videos_without_categories": no_cat,
                "side_videos_without_categories": int(sum(int(v) not in feat_of for v in side_videos)),
                "side_tags_without_column": side_only_tags,
                "category_method": "item_categories.csv feat tag ids",
                "category_groups": {"feat": list(range(len(tag_ids)))},
                "dorl_feature_ids": [t + 1 for t in tag_ids],
                **(dorl_majority(files["feature_domination"], [t + 1 for t in tag_ids])
                   if "feature_domination" in files else {}),
            },
        )

    return cached_dataset(
        "kuairec", files, build, config={"parser": PARSER_VERSION}, use_cache=use_cache, data_root_dir=data_root(data_dir)
    )
