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

Ground truth (``ground_truth=`` of `load_kuairand`; ``meta["ground_truth"]`` says which one was used):

- ``dorl_csv``: DORL's ``MF_results_GT/kuairand_is_click.csv`` (in its data archive ``environments.tar.gz``,
  linked from DORL-codes' README, under ``environments/KuaiRand_Pure/``; put it in ``<data>/kuairand_pure/``),
  header ``user_id,item_id,value``, one row per (user, video) pair (27,285 x 7,583 = 207 M rows), the matrix
  the published DORL KuaiRand numbers were measured on. Read as DORL's ``KuaiRand.py`` ``load_mat`` does
  (a sparse matrix made dense: a missing pair is 0, a repeated pair is summed, no clipping), but streamed in
  chunks of ``chunk_rows`` rows straight into one float32 matrix (0.83 GB for the real shape), so the load
  never holds the 207 M-row table: `read_ground_truth_csv`. Counts of missing and repeated pairs are in
  ``meta["ground_truth"]``, the rows read and the load time in ``meta["ground_truth_load"]``.
- ``mf`` (the fallback when the file is absent): a biased matrix factorisation ``mu + b_u + c_i + p_u . q_i``
  (rank 10, ridge 5 on factors and biases, 10 ALS sweeps, least squares on the observed 0/1 clicks of the
  random log; numpy/scipy) predicts every cell, clipped to [0, 1] (a click probability estimate), float32.
  ``meta["ground_truth_check"]`` holds a held-out check (10 % of the random log): RMSE and AUC of the
  completion against the global-mean and item-mean click rates. Not DORL's matrix: flagged as "recgym
  fallback, not comparable to published KuaiRand numbers".
- ``auto`` (default): ``dorl_csv`` when the file is there, else ``mf``.

Categories: the ``tag`` column (comma-separated tag ids; empty for 96 videos): one column per distinct tag
id, named ``tag:<id>``. As in DORL (``KuaiRand.py`` ``load_category``) and EasyRL4Rec (``KuaiRandData.py``),
the untagged videos share one category, tag -1 (column ``tag:-1``, ``meta["untagged_category"]``), so the
category quit rule treats two untagged videos as alike; the MCD metric ignores it (DORL counts only features
> 0): the ``feat`` group of ``meta["category_groups"]`` leaves that column out. DORL numbers features
``tag + 1`` (0 = no tag): ``meta["dorl_feature_ids"]`` gives that number for each column. When
``reference_dorl/feature_domination.json`` (DORL's ``feature_domination.pickle`` as JSON) is in the folder,
``meta["majority_categories"]["feat"]`` holds DORL's majority categories as positions within the ``feat``
group's columns (`recgym.data.kuairec.dorl_majority`).

Features: ``user_features`` = the numeric columns (raw), one-hot of the string columns
(``user_active_degree`` and the ``*_range`` buckets) and the 18 ``onehot_feat*`` categorical codes as
numbers (missing -> -1); ``item_features`` = numeric video columns (missing -> 0) and one-hot of
``video_type`` / ``upload_type``. Names are in ``meta``. float32 everywhere, int32 ids.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recgym.data._numeric import fit_biased_mf
from recgym.data.base import LoggedDataset
from recgym.data.cache import cached_dataset, locate
from recgym.data.kuairec import dorl_majority
from recgym.data.paths import DataNotFoundError, data_root, dataset_dir
from recgym.data.validate import _diagnose, check_in_set, check_no_nan, check_range, malformed, read_table

PARSER_VERSION = 2
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
GT_FOLDER = "MF_results_GT"
GT_FILE = "kuairand_is_click.csv"
GT_COLUMNS = ("user_id", "item_id", "value")
GROUND_TRUTHS = ("auto", "dorl_csv", "mf")
FALLBACK_NOTE = "recgym fallback, not comparable to published KuaiRand numbers"
DOMINATION_FILE = "reference_dorl/feature_domination.json"
UNTAGGED = -1  # DORL / EasyRL4Rec: every untagged video gets tag -1, one category shared by all of them


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
    """Numeric/one-hot video features, the multi-hot tag matrix (untagged videos: tag -1), names, DORL ids."""
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
    n_untagged = sum(1 for ts in tags_per_item if not ts)
    tags_per_item = [ts if ts else [UNTAGGED] for ts in tags_per_item]
    tag_ids = sorted({t for ts in tags_per_item for t in ts})
    col_of = {t: j for j, t in enumerate(tag_ids)}
    cats = np.zeros((len(df), len(tag_ids)), dtype=bool)
    for r, ts in enumerate(tags_per_item):
        for t in ts:
            cats[r, col_of[t]] = True
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


def read_ground_truth_csv(
    path: os.PathLike[str] | str, n_users: int, n_items: int, *, chunk_rows: int = 2_000_000
) -> tuple[np.ndarray, dict[str, Any]]:
    """DORL's ``kuairand_is_click.csv`` (``user_id,item_id,value``) as a dense float32 ``(n_users, n_items)`` matrix.

    Streamed: ``chunk_rows`` rows at a time are parsed and written into the one output matrix, so the load
    holds the matrix plus one chunk (never the 207 M-row table). As DORL's sparse-to-dense reading: a pair
    missing from the file is 0, a repeated pair is summed, values are not clipped. Returns the matrix and
    ``{"rows", "missing_cells", "duplicate_pairs", "seconds", "chunk_rows"}``. Ids outside the feature files'
    ranges, non-numeric or empty fields raise an error naming the file, line and field.
    """
    path = Path(path)
    if int(chunk_rows) < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    with open(path, encoding="utf-8", errors="replace") as f:
        header = [c.strip() for c in f.readline().rstrip("\r\n").split(",")]
    if [c for c in GT_COLUMNS if c not in header]:
        raise malformed(path, 1, None, f"header is {header}, expected the columns {list(GT_COLUMNS)}")
    t0 = time.perf_counter()
    gt = np.full((n_users, n_items), np.nan, dtype=np.float32)  # NaN = not (yet) in the file
    flat = gt.reshape(-1)
    rows = dup = 0
    dtypes = {"user_id": "int32", "item_id": "int32", "value": "float64"}
    try:
        reader = pd.read_csv(path, usecols=list(GT_COLUMNS), dtype=dtypes, chunksize=int(chunk_rows), engine="c")
        for chunk in reader:
            line0 = rows + 2  # line of the chunk's first row (one header line, one row per line)
            u = chunk["user_id"].to_numpy()
            i = chunk["item_id"].to_numpy()
            v = chunk["value"].to_numpy()
            check_range(u, 0, n_users - 1, path, "user_id", line_of=line0)
            check_range(i, 0, n_items - 1, path, "item_id", line_of=line0)
            check_no_nan(v, path, "value", line_of=line0)
            idx = u.astype(np.int64) * n_items + i
            if len(idx) > 1 and not (np.diff(idx) > 0).all():  # repeats within the chunk: sum each run
                order = np.argsort(idx, kind="stable")
                idx, v = idx[order], v[order]
                starts = np.r_[0, np.flatnonzero(np.diff(idx)) + 1]
                dup += len(idx) - len(starts)
                idx, v = idx[starts], np.add.reduceat(v, starts)
            cur = flat[idx]
            seen = ~np.isnan(cur)
            dup += int(seen.sum())
            flat[idx] = np.where(seen, cur + v, v)
            rows += len(chunk)
    except (ValueError, OverflowError, pd.errors.ParserError) as e:
        if str(e).startswith("malformed dataset file"):
            raise
        _diagnose(path, header, sep=",", header=True, dtypes=dtypes)  # names the first bad line and field
        raise malformed(path, None, None, f"cannot parse ({e})") from e
    missing = 0
    for s in range(0, n_users, 1024):  # NaN (never written) -> 0, block by block: no full-size temporaries
        blk = gt[s : s + 1024]
        hole = np.isnan(blk)
        missing += int(hole.sum())
        blk[hole] = 0.0
    info = {"rows": rows, "missing_cells": missing, "duplicate_pairs": dup,
            "seconds": round(time.perf_counter() - t0, 2), "chunk_rows": int(chunk_rows)}
    return gt, info


def ground_truth_csv_path(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """``<data>/kuairand_pure/MF_results_GT/kuairand_is_click.csv`` if it exists, else None."""
    p = dataset_dir("kuairand", data_dir) / GT_FOLDER / GT_FILE
    return p if p.is_file() else None


def load_kuairand(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    ground_truth: str = "auto",
    seed: int = 0,
    use_cache: bool = True,
    chunk_rows: int = 2_000_000,
) -> LoggedDataset:
    """Load KuaiRand-Pure (reward ``is_click``, category quit rule) with the ground truth chosen by
    ``ground_truth``: ``auto`` (DORL's ``kuairand_is_click.csv`` when present, else the MF fallback),
    ``dorl_csv`` (the file is required) or ``mf``. ``chunk_rows``: rows per chunk when streaming the CSV."""
    if ground_truth not in GROUND_TRUTHS:
        raise ValueError(f"ground_truth={ground_truth!r}, expected one of {list(GROUND_TRUTHS)}")
    files = {
        "train": locate("kuairand", TRAIN_LOG, data_dir),
        "test": locate("kuairand", TEST_LOG, data_dir),
        "user_features": locate("kuairand", USER_FILE, data_dir),
        "video_features": locate("kuairand", VIDEO_FILE, data_dir),
    }
    csv_path = ground_truth_csv_path(data_dir)
    if ground_truth == "dorl_csv" and csv_path is None:
        raise DataNotFoundError(
            f"kuairand: missing file {GT_FILE!r} (searched {dataset_dir('kuairand', data_dir) / GT_FOLDER}); it is "
            "DORL's ground truth, in the data archive its README links (https://github.com/chongminggao/DORL-codes, "
            "environments.tar.gz: environments/KuaiRand_Pure/MF_results_GT/); put it there, or use "
            "ground_truth='mf' for recgym's fallback"
        )
    use_csv = csv_path is not None and ground_truth != "mf"
    if use_csv:
        files["ground_truth"] = csv_path  # type: ignore[assignment]
    domination = dataset_dir("kuairand", data_dir) / DOMINATION_FILE
    if domination.is_file():
        files["feature_domination"] = domination

    def build() -> LoggedDataset:
        ufeat, unames = _user_features(files["user_features"])
        ifeat, inames, cats, cat_names, dorl_ids, n_untagged = _video_features(files["video_features"])
        n_users, n_items = ufeat.shape[0], ifeat.shape[0]
        train = _read_log(files["train"], n_users, n_items)
        test = _read_log(files["test"], n_users, n_items)
        extra: dict[str, Any] = {}
        if use_csv:
            gt, info = read_ground_truth_csv(files["ground_truth"], n_users, n_items, chunk_rows=chunk_rows)
            gt_meta = {
                "source": f"DORL {GT_FOLDER}/{GT_FILE}",
                "comparable_to_published": True,
                "note": "the matrix DORL's KuaiRand numbers use; missing pairs 0, repeated pairs summed, no clipping",
                "missing_cells": info["missing_cells"],
                "duplicate_pairs": info["duplicate_pairs"],
            }
            extra["ground_truth_load"] = info
            method = f"DORL's {GT_FOLDER}/{GT_FILE} (user_id,item_id,value), streamed into a dense float32 matrix"
            check = {"auc_vs_random_log": _auc(gt[test["user"].to_numpy(), test["item"].to_numpy()],
                                               test["reward"].to_numpy())}
        else:
            gt, check = complete_click_matrix(test, n_users, n_items, seed)
            gt_meta = {
                "source": "recgym fallback: biased MF (rank 10) on the random-exposure log's clicks, clipped [0, 1]",
                "comparable_to_published": False,
                "note": FALLBACK_NOTE,
                "heldout_auc": check.get("auc_completion"),
                "heldout_rmse": check.get("rmse_completion"),
            }
            method = (
                "MF-completed is_click matrix: biased MF (rank {rank}, ridge {reg}, {n_iters} ALS sweeps, "
                "least squares on 0/1 clicks) fitted on the random-exposure log "
                f"{TEST_LOG}, predictions clipped to [0, 1]; {FALLBACK_NOTE}"
            ).format(**GT_CONFIG)
            extra["ground_truth_config"] = dict(GT_CONFIG, seed=seed)
        untagged_col = cat_names.index(f"tag:{UNTAGGED}") if f"tag:{UNTAGGED}" in cat_names else None
        feat_group = [c for c in range(len(cat_names)) if c != untagged_col]
        if "feature_domination" in files:
            maj = dorl_majority(files["feature_domination"], dorl_ids)
            pos = {c: k for k, c in enumerate(feat_group)}  # positions within the "feat" group's columns
            maj["majority_categories"] = {"feat": [pos[c] for c in maj["majority_categories"]["feat"] if c in pos]}
            extra.update(maj)
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
                "ground_truth": gt_meta,
                "ground_truth_method": method,
                "ground_truth_check": check,
                "category_method": "video tags (video_features_basic_pure.csv, column tag); untagged videos share "
                "tag -1 (DORL, EasyRL4Rec)",
                # MCD ignores the shared untagged category, as DORL counts only features > 0
                "category_groups": {"feat": feat_group},
                "untagged_category": untagged_col,
                "dorl_feature_ids": dorl_ids,
                "n_items_without_tag": n_untagged,
                "user_feature_names": unames,
                "item_feature_names": inames,
                **extra,
            },
        )

    return cached_dataset(
        "kuairand",
        files,
        build,
        config={"parser": PARSER_VERSION, "seed": seed, "gt": "dorl_csv" if use_csv else GT_CONFIG},
        use_cache=use_cache,
        data_root_dir=data_root(data_dir),
    )
