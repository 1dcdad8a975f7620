"""Real-dataset loaders: shapes and counts on the shared data, error messages, ML-1M raw format on a fixture."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from recgym.data import DataNotFoundError, load_dataset
from recgym.data.coat import load_coat
from recgym.data.ml1m import load_ml1m
from recgym.data.yahoo import ground_truth_heldout_error, load_yahoo
from tests.conftest import require_data

COAT = ("coat/train.ascii", "coat/test.ascii", "coat/rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii")
YAHOO = ("yahoo_r3/ydata-ymusic-rating-study-v1_0-train.txt", "yahoo_r3/ydata-ymusic-rating-study-v1_0-test.txt")
ML1M = ("ml-1m/diffrec/ml-1m_clean/train_list.npy", "ml-1m/diffrec/ml-1m_noisy/train_list.npy")


def _contract(ds) -> None:
    """Invariants every LoggedDataset must satisfy."""
    for df in (ds.train, ds.test) + (() if ds.valid is None else (ds.valid,)):
        assert df["user"].dtype == np.int32 and df["item"].dtype == np.int32
        assert df["reward"].dtype == np.float32
        assert df["user"].min() >= 0 and df["user"].max() < ds.n_users
        assert df["item"].min() >= 0 and df["item"].max() < ds.n_items
    assert ds.ground_truth.dtype == np.float32 and np.isfinite(ds.ground_truth).all()
    assert ds.item_categories.dtype == np.bool_ and ds.item_categories.shape[0] == ds.n_items
    assert len(ds.category_names) == ds.item_categories.shape[1]
    assert ds.meta["ground_truth_method"]
    assert ds.meta["fingerprint"]


# ----------------------------------------------------------------------------------------------- coat


def test_coat_real_counts_and_values() -> None:
    root = require_data(*COAT)
    ds = load_coat(root)
    _contract(ds)
    assert (ds.n_users, ds.n_items) == (290, 300)
    assert len(ds.train) == 6960 and len(ds.test) == 4640
    assert ds.train.groupby("user").size().eq(24).all() and ds.test.groupby("user").size().eq(16).all()
    assert ds.ground_truth.shape == (290, 300)
    assert set(np.unique(ds.ground_truth)) <= {1, 2, 3, 4, 5}
    # first line of train.ascii: user 0 rated item 72 with 2 (read by hand from the file)
    row = ds.train[(ds.train.user == 0) & (ds.train.item == 72)]
    assert row["reward"].tolist() == [2.0]
    assert ds.item_categories.shape == (300, 33) and ds.category_names[0] == "gender:men"
    assert ds.item_categories.sum(1).tolist() == [4] * 300  # one value in each of the 4 one-hot groups
    assert ds.meta["category_groups"]["jackettype"] == list(range(2, 18))
    assert ds.user_features.shape == (290, 14) and ds.item_features.shape == (300, 33)
    assert (ds.reward_kind, ds.positive_threshold, ds.quit_rule) == ("rating", 4.0, "distance")
    assert load_dataset("coat", data_dir=root).train.equals(ds.train)


def _copy_coat(root: Path, dst: Path) -> Path:
    shutil.copytree(root / "coat", dst / "coat")
    for p in (dst / "coat").rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return dst


def test_coat_corrupt_line_names_file_line_and_field(tmp_path: Path) -> None:
    root = _copy_coat(require_data(*COAT), tmp_path)
    f = root / "coat" / "train.ascii"
    lines = f.read_text().splitlines()
    parts = lines[6].split()
    parts[10] = "x"
    lines[6] = " ".join(parts)
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train\.ascii, line 7, field 'column 11'.*'x'") as e:
        load_coat(root)
    assert "checksum differs from the official release" in str(e.value)


def test_coat_bad_rating_and_short_line(tmp_path: Path) -> None:
    root = _copy_coat(require_data(*COAT), tmp_path)
    f = root / "coat" / "test.ascii"
    lines = f.read_text().splitlines()
    parts = lines[2].split()
    parts[0] = "9"
    lines[2] = " ".join(parts)
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"test\.ascii, line 3, field 'column 1': rating 9"):
        load_coat(root)
    lines[2] = " ".join(parts[:-1])
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"test\.ascii, line 3: expected 300 values, found 299"):
        load_coat(root)


def test_missing_file_error_names_file_folder_and_command(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as e:
        load_coat(tmp_path)
    msg = str(e.value)
    assert "'train.ascii'" in msg and str(tmp_path / "coat") in msg and "recgym data download coat" in msg


def test_yahoo_missing_explains_licence(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("yahoo", data_dir=tmp_path)
    msg = str(e.value)
    assert "https://webscope.sandbox.yahoo.com/" in msg and "R3" in msg and "licence" in msg
    assert str(tmp_path / "yahoo_r3") in msg and "ydata-ymusic-rating-study-v1_0-train.txt" in msg


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'netflix'.*coat.*kuairec.*synthetic"):
        load_dataset("netflix")


# ----------------------------------------------------------------------------------------------- yahoo


def test_yahoo_real_counts_and_ground_truth() -> None:
    root = require_data(*YAHOO)
    ds = load_yahoo(root)
    _contract(ds)
    assert (ds.n_users, ds.n_items) == (15400, 1000)
    assert len(ds.train) == 311704 and len(ds.test) == 54000
    assert ds.test["user"].nunique() == 5400 and ds.test["user"].max() == 5399
    assert ds.ground_truth.shape == (5400, 1000)
    assert ds.ground_truth.min() >= 1.0 and ds.ground_truth.max() <= 5.0
    # first line of the train file is "1\t14\t5": 0-based (0, 13) rated 5
    assert ds.train.iloc[0][["user", "item", "reward"]].tolist() == [0, 13, 5.0]
    # the completion is personalised: users do not all rank items the same way
    g = ds.ground_truth[:50] - ds.ground_truth[:50].mean(1, keepdims=True)
    corr = np.corrcoef(g)[np.triu_indices(50, 1)]
    assert corr.mean() < 0.99
    cats = ds.item_categories
    assert cats.shape == (1000, 10) and (cats.sum(1) == 1).all() and cats.sum(0).min() >= 20
    check = ds.meta["ground_truth_check"]
    assert check["n_heldout"] == 10800
    assert check["rmse_completion"] < check["rmse_item_mean"] < check["rmse_global_mean"]
    assert check["mae_completion"] < check["mae_item_mean"]
    if (root / "yahoo_r3" / "yahoo_pseudoGT_ratingM.ascii").is_file():
        assert ds.meta["ground_truth"]["comparable_to_published"] is True
    else:  # the MF fallback: integer ratings like the pseudo-GT file, flagged as not comparable
        assert ds.meta["ground_truth"]["comparable_to_published"] is False
        assert set(np.unique(ds.ground_truth)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
        assert ds.meta["ground_truth"]["heldout_rmse"] == check["rmse_completion"]


def test_yahoo_heldout_check_other_split_beats_baselines() -> None:
    root = require_data(*YAHOO)
    res = ground_truth_heldout_error(root, n_holdout=2, seed=1)
    assert res["rmse_completion"] < res["rmse_item_mean"] - 0.05
    assert res["mae_completion"] < res["mae_item_mean"] - 0.05
    # 8 ratings per user: the MF's factors add little over user + item biases, and must not do worse
    assert res["rmse_completion_unrounded"] <= res["rmse_user_item_bias"] + 0.01


def test_yahoo_corrupt_line(tmp_path: Path) -> None:
    root = require_data(*YAHOO)
    d = tmp_path / "yahoo_r3"
    d.mkdir()
    shutil.copyfile(root / YAHOO[1], d / "ydata-ymusic-rating-study-v1_0-test.txt")
    lines = (root / YAHOO[0]).read_text().splitlines()
    lines[41] = "3\t17\tfive"
    (d / "ydata-ymusic-rating-study-v1_0-train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train\.txt, line 42, field 'rating': expected a number, got 'five'"):
        load_yahoo(tmp_path, use_cache=False)
    lines[41] = "3\t17\t6"
    (d / "ydata-ymusic-rating-study-v1_0-train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train\.txt, line 42, field 'rating': value 6 is not one of"):
        load_yahoo(tmp_path, use_cache=False)
    lines[41] = "3\t17\t5\t9"
    (d / "ydata-ymusic-rating-study-v1_0-train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train\.txt, line 42: expected 3 fields, found 4"):
        load_yahoo(tmp_path, use_cache=False)
    lines[41] = lines[40]
    (d / "ydata-ymusic-rating-study-v1_0-train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 42, field 'user,item': duplicate pair .* first seen on line 41"):
        load_yahoo(tmp_path, use_cache=False)


# ----------------------------------------------------------------------------------------------- ml-1m


def test_ml1m_diffrec_clean_and_noisy() -> None:
    root = require_data(*ML1M)
    ds = load_ml1m(root)
    _contract(ds)
    assert (ds.n_users, ds.n_items) == (5949, 2810)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (403277, 110722, 57532)
    assert ds.ground_truth.shape == (5949, 2810) and ds.ground_truth.sum() == 571531
    assert set(np.unique(ds.ground_truth)) == {0.0, 1.0}
    assert ds.item_features.shape == (2810, 64)
    assert (ds.item_categories.sum(1) == 1).all() and ds.item_categories.shape[1] == 10
    assert "k-means" in ds.meta["category_method"]
    first = np.load(root / ML1M[0])[0]
    assert ds.train.iloc[0][["user", "item"]].tolist() == first.tolist()
    noisy = load_dataset("ml1m_noisy", data_dir=root)
    assert noisy.name == "ml1m_noisy" and (noisy.n_users, noisy.n_items) == (5949, 3494)
    assert (len(noisy.train), len(noisy.valid), len(noisy.test)) == (429993, 130772, 57532)


# Tiny MovieLens-1M raw files in the exact GroupLens format.
_MOVIES = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::Jumanji (1995)::Adventure|Children's|Fantasy",
    "5::Father of the Bride Part II (1995)::Comedy",
    "10::GoldenEye (1995)::Action|Adventure|Thriller",
    "32::Twelve Monkeys (1995)::Drama|Sci-Fi",
    "3952::Contender, The (2000)::Drama|Thriller",
]
_USERS = ["1::F::1::10::48067", "2::M::56::16::70072", "7::M::35::1::06810"]


def _write_ml1m_raw(root: Path, ratings: list[tuple[int, int, int, int]]) -> Path:
    d = root / "ml-1m" / "raw"
    d.mkdir(parents=True)
    (d / "movies.dat").write_bytes(("\n".join(_MOVIES + ["6::Amélie (2001)::Comedy|Romance"]) + "\n").encode("iso-8859-1"))
    (d / "users.dat").write_text("\n".join(_USERS) + "\n")
    (d / "ratings.dat").write_text("\n".join(f"{u}::{m}::{r}::{t}" for u, m, r, t in ratings) + "\n")
    return d / "ratings.dat"


def _ratings() -> list[tuple[int, int, int, int]]:
    # user 1: 10 ratings; user 2: 10 ratings; user 7: 5 ratings (timestamps out of order on purpose)
    rows = []
    movies = [1, 2, 5, 10, 32, 3952, 6]
    t0 = 978300000
    for k, m in enumerate(movies):
        rows.append((1, m, 5 if k % 3 else 3, t0 + 100 - k))
    for k, m in enumerate(movies):
        rows.append((2, m, 4 if k != 4 else 2, t0 + k))
    for k, m in enumerate([32, 10, 1]):
        rows.append((7, m, 4, t0 + 10 * k))
    return rows


def test_ml1m_raw_format_fixture(tmp_path: Path) -> None:
    path = _write_ml1m_raw(tmp_path, _ratings())
    ds = load_ml1m(tmp_path, source="raw", use_cache=False)
    # clean keeps ratings >= 4: user 1 has k%3 != 0 -> 4 of 7; user 2: 6 of 7; user 7: 3
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 4 + 6 + 3
    assert ds.meta["user_ids"] == [1, 2, 7] and ds.n_users == 3
    assert ds.meta["movie_ids"] == [1, 2, 5, 6, 10, 32, 3952]
    # user 2 positives by time: movies 1,2,5,10,3952,6 (32 rated 2 is dropped) -> 70/10/20 % of 6 = 4/1/1
    u2 = 1
    mid = np.array(ds.meta["movie_ids"])
    assert mid[ds.train[ds.train.user == u2]["item"]].tolist() == [1, 2, 5, 10]
    assert mid[ds.valid[ds.valid.user == u2]["item"]].tolist() == [3952]
    assert mid[ds.test[ds.test.user == u2]["item"]].tolist() == [6]
    # genres: Amélie (id 6) is Comedy|Romance, read as ISO-8859-1
    names = ds.category_names
    row = ds.item_categories[ds.meta["movie_ids"].index(6)]
    assert [names[j] for j in np.flatnonzero(row)] == ["genre:Comedy", "genre:Romance"]
    assert ds.ground_truth.shape == (3, 7) and ds.ground_truth.sum() == 13
    assert ds.user_features.shape == (3, 30) and ds.user_features[0, 0] == 1.0  # user 1 is F
    assert "time" in ds.train.columns
    noisy = load_ml1m(variant="noisy", ratings_path=path, use_cache=False)
    assert len(noisy.train) + len(noisy.valid) + len(noisy.test) > 13
    assert noisy.ground_truth.sum() == 13  # GT = ratings >= 4 only


def test_ml1m_raw_errors(tmp_path: Path) -> None:
    rows = _ratings()
    rows[3] = (1, 999, 4, 978300000)
    _write_ml1m_raw(tmp_path, rows)
    with pytest.raises(ValueError, match=r"ratings\.dat, line 4, field 'MovieID': movie 999 is not listed"):
        load_ml1m(tmp_path, source="raw", use_cache=False)
    (tmp_path / "ml-1m/raw/ratings.dat").write_text("1::1::5::978300760\n1::2::x::978300761\n")
    with pytest.raises(ValueError, match=r"ratings\.dat, line 2, field 'rating': expected a number, got 'x'"):
        load_ml1m(tmp_path, source="raw", use_cache=False)
    with pytest.raises(DataNotFoundError, match="ratings.dat"):
        load_ml1m(tmp_path / "nowhere", source="raw")
