"""MovieLens-1M: DiffRec's clean / noisy splits, or the raw GroupLens ``ratings.dat``.

DiffRec split (default when present, ``<data>/ml-1m/diffrec/ml-1m_{clean,noisy}/``): ``train_list.npy``,
``valid_list.npy``, ``test_list.npy`` (int64 ``(user, item)`` pairs, 0-based, a per-user temporal 7:1:2
split; clean keeps ratings >= 4, noisy adds the low ratings to train/valid as noise) and ``item_emb.npy``
(float32 item embeddings, used as ``item_features``). Clean: 5,949 users x 2,810 items, 403,277 / 110,722 /
57,532 rows. Rewards are 1.0 (implicit feedback).

Ground truth: the binary matrix of all *observed* interactions (train + valid + test) for all users. It
is not a completion: unobserved cells are 0 ("not known to be liked"), as in DiffRec's top-K protocol.
For ``noisy`` it includes the noise interactions of train/valid (the split does not say which they are).

Categories: the DiffRec split ships no map from its item ids to MovieLens movie ids, so genres cannot be
attached. We use 10 k-means clusters (seed 0) of the unit-normalised ``item_emb`` rows (L-DiffRec clusters
items on the same embeddings; without the normalisation the clusters follow the embedding norm, i.e.
popularity, with sizes 5..759); ``meta["category_method"]`` says so.

Raw (``source="raw"``, or ``ratings_path=...``, or when only ``<data>/ml-1m/raw/ratings.dat`` exists):
``ratings.dat`` ``UserID::MovieID::Rating::Timestamp``, ``movies.dat`` ``MovieID::Title::Genres``
(ISO-8859-1, genres ``|``-separated) and optional ``users.dat`` ``UserID::Gender::Age::Occupation::Zip``.
We follow DiffRec's recipe: clean keeps ratings >= 4; noisy keeps all ratings in train/valid and only >= 4
in test; each user's interactions sorted by (timestamp, movie id) are split 70/10/20 %; ids are remapped to
0..n-1 in increasing original-id order over the kept interactions. Categories are the 18 genres;
ground truth = binary matrix of ratings >= 4 in any split; ``user_features`` = one-hot gender, age and
occupation from ``users.dat`` when present.

EasyRL4Rec (``source="easyrl4rec"``, dataset name ``ml1m_easyrl4rec``): the MovieLens env of EasyRL4Rec, whose
(N, M) = (7, 75) preset assumes its rating ground truth (item distances with a median of about 101). On the
binary DiffRec ground truth above nearly every item pair is closer than 75 (every episode ends at step 2),
so this is a separate dataset built from ``ratings.dat`` the way EasyRL4Rec's ``provide_MF_results.py`` and
``MovieLensData.py`` do, and the DiffRec side keeps its binary matrix:

- all 1,000,209 ratings, split at random 90 / 10 % (scikit-learn's ``train_test_split(test_size=0.1,
  random_state=42)``: a ``RandomState(42)`` permutation, the first ``ceil(0.1 n)`` rows are the 10 % part;
  reproduced with numpy, row for row);
- ground truth: a 6-factor MF without biases (embeddings initialised N(0, 1), MSE, SGD lr 0.1, momentum 0.9,
  batch 128, 80 epochs; numpy, seeded) fitted on the 90 % part and predicted for every user id 1..max x movie
  id 1..max (6,040 x 3,952), clipped to [0, 5] (``MovieLensData.load_mat``); movie ids never rated keep
  their random initial factors, as there. ``meta["ground_truth_check"]`` has the MF's RMSE / MAE on the 10 %
  part (what its script prints);
- the swap: ``provide_MF_results.py`` writes the 90 % part to ``movielens-1m-test.csv`` and the 10 % part to
  ``movielens-1m-train.csv`` ("needs to change train and test"), and EasyRL4Rec trains its user models and
  agents on the latter. We reproduce what the code does: ``train`` = the 10 % part, ``test`` = the 90 % part
  the ground-truth MF was fitted on (both sorted by user, then timestamp, as ``MovieLensData.get_df``).
  Rewards are the ratings 1..5, positive >= 4; categories are the 18 genres (ids absent from ``movies.dat``
  have none); distance quit rule over all 6,040 rows.

EasyRL4Rec's MF is unseeded (each install regenerates its own ``rating_matrix.csv``), so no run reproduces
its matrix bit for bit; ours is the same procedure with ``seed``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recgym.data._numeric import kmeans, unique_sorted
from recgym.data.base import LoggedDataset
from recgym.data.cache import cached_dataset, locate
from recgym.data.paths import DataNotFoundError, data_root, dataset_dir
from recgym.data.validate import (
    check_in_set,
    check_no_duplicates,
    check_range,
    malformed,
    read_table,
)

PARSER_VERSION = 1
N_CLUSTERS = 10
# Counts of DiffRec's released ML-1M splits (its repository's data/ml-1m_{clean,noisy}); checked when a file's
# checksum differs from the release (`recgym.data.cache`).
DIFFREC_COUNTS: dict[str, dict[str, int]] = {
    "clean": {"n_users": 5949, "n_items": 2810, "train_rows": 403_277, "valid_rows": 110_722, "test_rows": 57_532},
    "noisy": {"n_users": 5949, "n_items": 3494, "train_rows": 429_993, "valid_rows": 130_772, "test_rows": 57_532},
}
GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
AGES = (1, 18, 25, 35, 45, 50, 56)
DIFFREC_HINT = (
    "the DiffRec split ships with DiffRec (https://github.com/YiyanXu/DiffRec, datasets/ml-1m_clean.rar and "
    "ml-1m_noisy.rar): unpack into {folder}; or get the raw ratings with `recgym data download ml1m` and "
    "load with source='raw'"
)


def load_ml1m(
    data_dir: str | os.PathLike[str] | None = None,
    variant: str = "clean",
    ratings_path: str | os.PathLike[str] | None = None,
    *,
    source: str = "auto",
    use_cache: bool = True,
    seed: int = 0,
) -> LoggedDataset:
    """Load MovieLens-1M (``variant`` clean|noisy) from the DiffRec split or from raw ``ratings.dat``.

    ``source``: ``auto`` (DiffRec split if present, else raw), ``diffrec``, ``raw`` (``ratings_path``
    implies raw unless ``source="easyrl4rec"``) or ``easyrl4rec`` (EasyRL4Rec's split and MF rating ground
    truth from ``ratings.dat``; ``seed`` seeds its MF). See the module docstring.
    """
    if variant not in ("clean", "noisy"):
        raise ValueError(f"variant={variant!r}, expected 'clean' or 'noisy'")
    if source not in ("auto", "diffrec", "raw", "easyrl4rec"):
        raise ValueError(f"source={source!r}, expected 'auto', 'diffrec', 'raw' or 'easyrl4rec'")
    if source == "easyrl4rec":
        if variant != "clean":
            raise ValueError(f"variant={variant!r}: the EasyRL4Rec dataset keeps every rating (no clean/noisy variant)")
        return _load_easyrl4rec(data_dir, ratings_path, use_cache, seed)
    if ratings_path is not None:
        source = "raw"
    name = "ml1m" if variant == "clean" else "ml1m_noisy"
    split_dir = dataset_dir("ml1m", data_dir) / "diffrec" / f"ml-1m_{variant}"
    raw_ratings = dataset_dir("ml1m", data_dir) / "raw" / "ratings.dat"
    if source == "auto":
        source = "diffrec" if (split_dir / "train_list.npy").is_file() or not raw_ratings.is_file() else "raw"
    if source == "raw":
        return _load_raw(data_dir, variant, name, ratings_path, use_cache)
    return _load_diffrec(data_dir, variant, name, split_dir, use_cache)


# ----------------------------------------------------------------------------------------------- DiffRec


def _diffrec_file(split_dir: Path, fname: str, name: str) -> Path:
    p = split_dir / fname
    if not p.is_file():
        raise DataNotFoundError(
            f"{name}: missing file {fname!r} (searched {split_dir}); " + DIFFREC_HINT.format(folder=split_dir)
        )
    return p


def _read_pairs(path: Path) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise malformed(path, None, None, f"not a numeric .npy array ({e})") from e
    if a.ndim != 2 or a.shape[1] != 2 or not np.issubdtype(a.dtype, np.integer):
        raise malformed(path, None, None, f"expected an integer (n, 2) array of (user, item), got {a.dtype} {a.shape}")
    # "line" = row of the array (1-based) for .npy files
    check_range(a[:, 0], 0, np.iinfo(np.int32).max, path, "user (row)", line_of=1)
    check_range(a[:, 1], 0, np.iinfo(np.int32).max, path, "item (row)", line_of=1)
    check_no_duplicates(a[:, 0], a[:, 1], path, line_of=1)
    return a.astype(np.int64)


def _load_diffrec(
    data_dir: str | os.PathLike[str] | None, variant: str, name: str, split_dir: Path, use_cache: bool
) -> LoggedDataset:
    files = {s: _diffrec_file(split_dir, f"{s}_list.npy", name) for s in ("train", "valid", "test")}
    files["item_emb"] = _diffrec_file(split_dir, "item_emb.npy", name)

    def build() -> LoggedDataset:
        parts = {s: _read_pairs(files[s]) for s in ("train", "valid", "test")}
        emb = np.load(files["item_emb"], allow_pickle=False)
        if emb.ndim != 2 or not np.isfinite(emb).all():
            raise malformed(files["item_emb"], None, None, f"expected a finite 2-D float array, got {emb.shape}")
        n_items = emb.shape[0]
        allp = np.concatenate(list(parts.values()))
        n_users = int(allp[:, 0].max()) + 1
        for s, a in parts.items():
            check_range(a[:, 1], 0, n_items - 1, files[s], "item (row)", line_of=1)
        key = allp[:, 0] * n_items + allp[:, 1]
        if len(unique_sorted(key)) != len(key):
            raise malformed(files["test"], None, None, "train/valid/test share (user, item) pairs")
        gt = np.zeros((n_users, n_items), dtype=np.float32)
        gt[allp[:, 0], allp[:, 1]] = 1.0
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        labels = kmeans(unit, N_CLUSTERS, seed=0)
        cats = np.zeros((n_items, N_CLUSTERS), dtype=bool)
        cats[np.arange(n_items), labels] = True

        def frame(a: np.ndarray) -> pd.DataFrame:
            return pd.DataFrame(
                {"user": a[:, 0].astype(np.int32), "item": a[:, 1].astype(np.int32), "reward": np.ones(len(a), np.float32)}
            )

        return LoggedDataset(
            name=name,
            n_users=n_users,
            n_items=n_items,
            train=frame(parts["train"]),
            valid=frame(parts["valid"]),
            test=frame(parts["test"]),
            ground_truth=gt,
            item_categories=cats,
            category_names=[f"cluster:{c}" for c in range(N_CLUSTERS)],
            item_features=emb.astype(np.float32),
            reward_kind="binary",
            positive_threshold=1.0,
            quit_rule="distance",
            meta={
                "source": f"DiffRec ml-1m_{variant} split (Wang et al. 2023)",
                "ground_truth_method": "observed-positive matrix: 1 for every (user, item) in train, valid or "
                "test, 0 elsewhere; not a completion"
                + (" (noisy: includes the noise interactions of train/valid)" if variant == "noisy" else ""),
                "category_method": f"no DiffRec-id -> MovieLens-id map ships, so no genres: {N_CLUSTERS} "
                "k-means clusters (seed 0) of the unit-normalised rows of item_emb.npy",
                "variant": variant,
            },
        )

    return cached_dataset(
        name, files, build, config={"parser": PARSER_VERSION, "k": N_CLUSTERS, "categories": "unit-kmeans"}, use_cache=use_cache,
        data_root_dir=data_root(data_dir), published=DIFFREC_COUNTS[variant],
    )


# ----------------------------------------------------------------------------------------------- raw


def _read_movies(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Sorted MovieID array and its bool (n, 18) genre matrix from ``movies.dat`` (ISO-8859-1)."""
    ids, rows = [], []
    gidx = {g: k for k, g in enumerate(GENRES)}
    with open(path, encoding="iso-8859-1") as f:
        for ln, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("::")
            if len(parts) != 3:
                raise malformed(path, ln, None, f"expected 3 '::'-separated fields, found {len(parts)}")
            try:
                mid = int(parts[0])
            except ValueError:
                raise malformed(path, ln, "MovieID", f"expected an integer, got {parts[0]!r}") from None
            row = np.zeros(len(GENRES), dtype=bool)
            for g in parts[2].split("|"):
                if g not in gidx:
                    raise malformed(path, ln, "Genres", f"unknown genre {g!r}; expected one of {list(GENRES)}")
                row[gidx[g]] = True
            ids.append(mid)
            rows.append(row)
    if not ids:
        raise malformed(path, 1, None, "file is empty")
    idarr = np.array(ids, dtype=np.int64)
    check_no_duplicates(idarr, np.zeros_like(idarr), path, line_of=1, fields=("MovieID", "MovieID"))
    order = np.argsort(idarr, kind="stable")  # sorted by id, whatever the file order
    return idarr[order], np.stack(rows)[order]


def _read_users(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    df = read_table(
        path,
        ["user", "gender", "age", "occupation", "zip"],
        sep="::",
        header=False,
        dtypes={"user": "int64", "age": "int64", "occupation": "int64"},
        encoding="iso-8859-1",
    )
    check_in_set(df["gender"].to_numpy(), ["F", "M"], path, "Gender", line_of=1)
    check_in_set(df["age"].to_numpy(), list(AGES), path, "Age", line_of=1)
    check_range(df["occupation"].to_numpy(), 0, 20, path, "Occupation", line_of=1)
    names = ["gender:F", "gender:M"] + [f"age:{a}" for a in AGES] + [f"occupation:{o}" for o in range(21)]
    feat = np.zeros((len(df), len(names)), dtype=np.float32)
    r = np.arange(len(df))
    feat[r, (df["gender"].to_numpy() == "M").astype(int)] = 1
    feat[r, 2 + np.searchsorted(AGES, df["age"].to_numpy())] = 1
    feat[r, 9 + df["occupation"].to_numpy()] = 1
    return df["user"].to_numpy(), feat, names


def _temporal_split(users: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
    """0/1/2 (train/valid/test) per row: each user's rows by (time, item), first 70 %, next 10 %, last 20 %."""
    order = np.lexsort((items, times, users))
    su = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(su)) + 1]
    sizes = np.diff(np.r_[starts, len(su)])
    pos = np.arange(len(su)) - np.repeat(starts, sizes)
    n = np.repeat(sizes, sizes)
    n_tr = np.round(0.7 * n).astype(np.int64)
    n_trva = np.round(0.8 * n).astype(np.int64)
    part = np.where(pos < n_tr, 0, np.where(pos < n_trva, 1, 2))
    out = np.empty(len(users), dtype=np.int64)
    out[order] = part
    return out


def _raw_files(
    data_dir: str | os.PathLike[str] | None, name: str, ratings_path: str | os.PathLike[str] | None
) -> dict[str, Path]:
    """``ratings`` (given path or ``<data>/ml-1m/raw/ratings.dat``), ``movies`` and, if present, ``users``."""
    if ratings_path is not None:
        rpath = Path(ratings_path)
        if not rpath.is_file():
            raise DataNotFoundError(
                f"{name}: missing file {rpath.name!r} (searched {rpath.parent}); run `recgym data download ml1m`"
            )
    else:
        rpath = locate("ml1m", "ratings.dat", data_dir, folder="raw")

    def side(fname: str, required: bool) -> Path | None:
        for d in (rpath.parent, dataset_dir("ml1m", data_dir) / "raw"):
            if (d / fname).is_file():
                return d / fname
        if required:
            raise DataNotFoundError(
                f"{name}: missing file {fname!r} (searched {rpath.parent}, {dataset_dir('ml1m', data_dir) / 'raw'}); "
                "run `recgym data download ml1m`"
            )
        return None

    files: dict[str, Path] = {"ratings": rpath, "movies": side("movies.dat", True)}  # type: ignore[dict-item]
    users_path = side("users.dat", False)
    if users_path is not None:
        files["users"] = users_path
    return files


def _read_ratings(rpath: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) as int64 arrays, in file order, checked."""
    df = read_table(
        rpath,
        ["user", "movie", "rating", "time"],
        sep="::",
        header=False,
        dtypes={"user": "int64", "movie": "int64", "rating": "int64", "time": "int64"},
    )
    u, m, r, t = (df[c].to_numpy() for c in ("user", "movie", "rating", "time"))
    check_range(u, 1, np.iinfo(np.int32).max, rpath, "UserID", line_of=1)
    check_range(m, 1, np.iinfo(np.int32).max, rpath, "MovieID", line_of=1)
    check_in_set(r, [1, 2, 3, 4, 5], rpath, "Rating", line_of=1)
    check_range(t, 0, np.iinfo(np.int64).max, rpath, "Timestamp", line_of=1)
    check_no_duplicates(u, m, rpath, line_of=1, fields=("UserID", "MovieID"))
    return u, m, r, t


def _check_known_movies(m: np.ndarray, movie_ids: np.ndarray, rpath: Path, movies_path: Path) -> None:
    known = np.isin(m, movie_ids)
    if not known.all():
        row = int(np.flatnonzero(~known)[0])
        raise malformed(rpath, row + 1, "MovieID", f"movie {m[row]} is not listed in {movies_path}")


def _load_raw(
    data_dir: str | os.PathLike[str] | None,
    variant: str,
    name: str,
    ratings_path: str | os.PathLike[str] | None,
    use_cache: bool,
) -> LoggedDataset:
    files = _raw_files(data_dir, name, ratings_path)
    rpath = files["ratings"]

    def build() -> LoggedDataset:
        u, m, r, t = _read_ratings(rpath)
        movie_ids, genres = _read_movies(files["movies"])
        _check_known_movies(m, movie_ids, rpath, files["movies"])
        positive = r >= 4
        keep = positive if variant == "clean" else np.ones(len(r), dtype=bool)
        u, m, r, t, positive = u[keep], m[keep], r[keep], t[keep], positive[keep]
        part = _temporal_split(u, t, m)
        if variant == "noisy":  # DiffRec's noisy test keeps only real positives
            drop = (part == 2) & ~positive
            u, m, r, t, positive, part = (x[~drop] for x in (u, m, r, t, positive, part))
        uid = unique_sorted(u)
        mid = unique_sorted(m)
        uu = np.searchsorted(uid, u).astype(np.int32)
        ii = np.searchsorted(mid, m).astype(np.int32)
        cats = genres[np.searchsorted(movie_ids, mid)] if len(mid) else np.zeros((0, len(GENRES)), bool)
        gt = np.zeros((len(uid), len(mid)), dtype=np.float32)
        gt[uu[positive], ii[positive]] = 1.0
        user_feat, meta_extra = None, {}
        if "users" in files:
            ufile_ids, ufeat, unames = _read_users(files["users"])
            pos = np.searchsorted(ufile_ids, uid)
            ok = (pos < len(ufile_ids)) & (ufile_ids[np.minimum(pos, len(ufile_ids) - 1)] == uid)
            if (np.diff(ufile_ids) > 0).all() and ok.all():
                user_feat = ufeat[pos]
                meta_extra["user_feature_names"] = unames
            else:
                meta_extra["user_features_note"] = "users.dat does not cover every user: no user features"

        def frame(sel: np.ndarray) -> pd.DataFrame:
            return pd.DataFrame(
                {"user": uu[sel], "item": ii[sel], "reward": np.ones(int(sel.sum()), np.float32), "time": t[sel]}
            )

        meta: dict[str, Any] = {
            "source": "MovieLens-1M raw ratings.dat (GroupLens)",
            "variant": variant,
            "split": "per-user temporal 70/10/20 % by (timestamp, movie id); clean keeps ratings >= 4, noisy "
            "keeps all ratings in train/valid and ratings >= 4 in test (DiffRec recipe)",
            "ground_truth_method": "observed-positive matrix: 1 where the user rated the movie >= 4 (any split)",
            "category_method": "MovieLens genres from movies.dat",
            "user_ids": uid.tolist(),
            "movie_ids": mid.tolist(),
            **meta_extra,
        }
        return LoggedDataset(
            name=name,
            n_users=len(uid),
            n_items=len(mid),
            train=frame(part == 0),
            valid=frame(part == 1),
            test=frame(part == 2),
            ground_truth=gt,
            item_categories=cats.astype(bool),
            category_names=[f"genre:{g}" for g in GENRES],
            user_features=user_feat,
            reward_kind="binary",
            positive_threshold=1.0,
            quit_rule="distance",
            meta=meta,
        )

    return cached_dataset(
        name, files, build, config={"parser": PARSER_VERSION, "source": "raw", "variant": variant},
        use_cache=use_cache, data_root_dir=data_root(data_dir),
    )


# ----------------------------------------------------------------------------------------------- EasyRL4Rec

EASYRL4REC_MF: dict[str, Any] = {
    "factors": 6, "lr": 0.1, "momentum": 0.9, "epochs": 80, "batch_size": 128, "test_size": 0.1, "split_seed": 42,
}  # fmt: skip


def easyrl4rec_split(n: int, test_size: float = 0.1, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(part_90, part_10)`` of scikit-learn's ``train_test_split(test_size, random_state=seed)``.

    Its shuffle split draws one ``RandomState(seed).permutation(n)``; the first ``ceil(test_size * n)`` rows
    are its test part, the next ``floor((1 - test_size) * n)`` its train part, each in permutation order.
    """
    n_test = int(np.ceil(test_size * n))
    n_train = int(np.floor((1.0 - test_size) * n))
    perm = np.random.RandomState(seed).permutation(n)
    return perm[n_test : n_test + n_train], perm[:n_test]


def fit_sgd_mf(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_user_rows: int,
    n_item_rows: int,
    *,
    factors: int = 6,
    lr: float = 0.1,
    momentum: float = 0.9,
    epochs: int = 80,
    batch_size: int = 128,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``r_ui ~ p_u . q_i`` (no biases) by mini-batch SGD with momentum on the mean squared error.

    The model and optimiser of EasyRL4Rec's ``provide_MF_results.py``: embedding tables (``n_user_rows``,
    ``n_item_rows`` rows, indexed by raw id) initialised N(0, 1), each epoch a new shuffle into batches of
    ``batch_size`` (the last one shorter), gradients of the batch-mean MSE, heavy-ball momentum as torch's SGD
    (``v = momentum * v + g``; ``w -= lr * v``, applied to every row each step, so rows outside the batch keep
    moving while their buffer decays). Deterministic given ``seed``. Returns ``(P, Q)`` float64.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_user_rows + n_item_rows, factors))
    v = np.zeros_like(w)
    tmp = np.empty_like(w)
    u_rows = np.asarray(users, dtype=np.int64)
    i_rows = np.asarray(items, dtype=np.int64) + n_user_rows
    r = np.asarray(ratings, dtype=np.float64)
    n = len(r)
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, batch_size):
            b = order[s : s + batch_size]
            rows = np.concatenate((u_rows[b], i_rows[b]))
            x = w[rows]
            pu, qi = x[: len(b)], x[len(b) :]
            g = (2.0 / len(b)) * (np.einsum("bk,bk->b", pu, qi) - r[b])
            v *= momentum
            np.add.at(v, rows, np.concatenate((g[:, None] * qi, g[:, None] * pu)))
            np.multiply(v, lr, out=tmp)
            w -= tmp
    return w[:n_user_rows], w[n_user_rows:]


def _load_easyrl4rec(
    data_dir: str | os.PathLike[str] | None, ratings_path: str | os.PathLike[str] | None, use_cache: bool, seed: int
) -> LoggedDataset:
    name = "ml1m_easyrl4rec"
    files = _raw_files(data_dir, name, ratings_path)
    rpath = files["ratings"]

    def build() -> LoggedDataset:
        u, m, r, t = _read_ratings(rpath)
        movie_ids, genres = _read_movies(files["movies"])
        _check_known_movies(m, movie_ids, rpath, files["movies"])
        c = EASYRL4REC_MF
        part90, part10 = easyrl4rec_split(len(r), c["test_size"], c["split_seed"])
        n_users, n_items = int(u.max()), int(m.max())  # ids 1..max, as EasyRL4Rec's tables (max + 1 rows)
        p, q = fit_sgd_mf(u[part90], m[part90], r[part90], n_users + 1, n_items + 1, factors=c["factors"],
                          lr=c["lr"], momentum=c["momentum"], epochs=c["epochs"], batch_size=c["batch_size"],
                          seed=seed)
        err = np.einsum("nk,nk->n", p[u[part10]], q[m[part10]]) - r[part10]
        check = {
            "rmse_on_10pct_part": float(np.sqrt(np.mean(err**2))),
            "mae_on_10pct_part": float(np.mean(np.abs(err))),
            "n_10pct_part": len(part10),
            "note": "unclipped MF predictions on the 10% part (EasyRL4Rec's script reports these as its test error)",
        }
        gt = np.clip(p[1:] @ q[1:].T, 0.0, 5.0).astype(np.float32)  # users 1..max x movies 1..max
        cats = np.zeros((n_items, len(GENRES)), dtype=bool)
        listed = movie_ids <= n_items
        cats[movie_ids[listed] - 1] = genres[listed]

        def frame(rows: np.ndarray) -> pd.DataFrame:
            rows = rows[np.lexsort((t[rows], u[rows]))]  # by user, then timestamp (MovieLensData.get_df)
            return pd.DataFrame({"user": (u[rows] - 1).astype(np.int32), "item": (m[rows] - 1).astype(np.int32),
                                 "reward": r[rows].astype(np.float32), "time": t[rows]})

        user_feat, meta_extra = None, {}
        if "users" in files:
            ufile_ids, ufeat, unames = _read_users(files["users"])
            if np.array_equal(ufile_ids, np.arange(1, n_users + 1)):
                user_feat, meta_extra["user_feature_names"] = ufeat, unames
            else:
                meta_extra["user_features_note"] = f"users.dat does not list users 1..{n_users} in order: no user features"
        meta: dict[str, Any] = {
            "source": "MovieLens-1M raw ratings.dat (GroupLens), EasyRL4Rec's MovieLens environment",
            "ground_truth": {
                "source": "EasyRL4Rec's ML-1M ground truth, rebuilt: 6-factor MF (SGD lr 0.1, momentum 0.9, 80 "
                "epochs) on the 90% part of ratings.dat, clipped [0, 5]",
                "comparable_to_published": True,
                "note": "same procedure as EasyRL4Rec's provide_MF_results.py (its MF is unseeded, so no run gives "
                f"its exact matrix; seed {seed} here); train = the 10% part, as its swapped file names make it",
                "heldout_rmse": check["rmse_on_10pct_part"],
            },
            "ground_truth_method": "EasyRL4Rec provide_MF_results.py: MF fitted on the 90% random part, predicted "
            "for all user x movie ids, clipped to [0, 5] (MovieLensData.load_mat)",
            "ground_truth_config": dict(c, seed=seed),
            "ground_truth_check": check,
            "split": "train_test_split(test_size=0.1, random_state=42) of all ratings in file order; train = the "
            "10% part (EasyRL4Rec's movielens-1m-train.csv), test = the 90% part (its movielens-1m-test.csv, on "
            "which the ground-truth MF is fitted): the swap of provide_MF_results.py, reproduced",
            "category_method": "MovieLens genres from movies.dat (ids it does not list have none)",
            **meta_extra,
        }
        return LoggedDataset(
            name=name,
            n_users=n_users,
            n_items=n_items,
            train=frame(part10),
            test=frame(part90),
            ground_truth=gt,
            item_categories=cats,
            category_names=[f"genre:{g}" for g in GENRES],
            user_features=user_feat,
            reward_kind="rating",
            positive_threshold=4.0,
            quit_rule="distance",
            meta=meta,
        )

    return cached_dataset(
        name, files, build, config={"parser": PARSER_VERSION, "source": "easyrl4rec", "mf": EASYRL4REC_MF, "seed": seed},
        use_cache=use_cache, data_root_dir=data_root(data_dir),
    )
