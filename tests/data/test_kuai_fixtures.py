"""KuaiRand-Pure and KuaiRec loaders on fixtures written at test time in exactly the official formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgym.data import DataNotFoundError, load_dataset
from recgym.data.kuairand import load_kuairand
from recgym.data.kuairec import load_kuairec
from tests.conftest import require_data
from tests.data.fixtures_kuai import (
    KUAIRAND_LOG_HEADER,
    KuaiRandFixture,
    KuaiRecFixture,
    write_kuairand_fixture,
    write_kuairec_fixture,
)

FEATURES = ("kuairand_pure/user_features_pure.csv", "kuairand_pure/video_features_basic_pure.csv")


@pytest.fixture(scope="module")
def kuairand(tmp_path_factory: pytest.TempPathFactory) -> KuaiRandFixture:
    real = require_data(*FEATURES) / "kuairand_pure"
    return write_kuairand_fixture(tmp_path_factory.mktemp("kuairand"), real, n_users=300, n_items=200)


@pytest.fixture()
def kuairec(tmp_path: Path) -> KuaiRecFixture:
    return write_kuairec_fixture(tmp_path)


# ----------------------------------------------------------------------------------------------- KuaiRand


def test_kuairand_fixture_is_official_format(kuairand: KuaiRandFixture) -> None:
    d = kuairand.root / "kuairand_pure"
    for f in ("log_standard_4_08_to_4_21_pure.csv", "log_random_4_22_to_5_08_pure.csv"):
        df = pd.read_csv(d / f)
        assert ",".join(df.columns) == KUAIRAND_LOG_HEADER and len(df.columns) == 19
        assert df["date"].between(20220408, 20220508).all() and (df["hourmin"] % 100 == 0).all()
    assert pd.read_csv(d / "log_random_4_22_to_5_08_pure.csv")["is_rand"].eq(1).all()


def test_kuairand_loads_fixture(kuairand: KuaiRandFixture) -> None:
    ds = load_dataset("kuairand", data_dir=kuairand.root)
    assert (ds.n_users, ds.n_items) == (300, 200)
    assert (len(ds.train), len(ds.test)) == (kuairand.train_rows, kuairand.test_rows)
    assert ds.train["user"].dtype == np.int32 and ds.train["reward"].dtype == np.float32
    assert ds.train["time"].dtype == np.int64 and ds.train["time"].is_monotonic_increasing
    raw = pd.read_csv(kuairand.root / "kuairand_pure" / "log_standard_4_08_to_4_21_pure.csv")
    np.testing.assert_array_equal(ds.train["item"], raw["video_id"])
    np.testing.assert_array_equal(ds.train["reward"], raw["is_click"])
    assert ds.ground_truth.shape == (300, 200) and ds.ground_truth.dtype == np.float32
    assert ds.ground_truth.min() >= 0.0 and ds.ground_truth.max() <= 1.0
    assert (ds.reward_kind, ds.quit_rule, ds.positive_threshold) == ("click", "category", 1.0)
    # categories = the tag column of the real video features
    vids = pd.read_csv(kuairand.root / "kuairand_pure" / "video_features_basic_pure.csv", dtype={"tag": str})
    for v in (0, 5, 7):
        tags = sorted(int(t) for t in vids.loc[v, "tag"].split(","))
        got = sorted(int(ds.category_names[j].split(":")[1]) for j in np.flatnonzero(ds.item_categories[v]))
        assert got == tags
    assert ds.meta["dorl_feature_ids"] == [int(n.split(":")[1]) + 1 for n in ds.category_names]
    assert ds.user_features.shape[0] == 300 and ds.user_features.dtype == np.float32
    assert np.isfinite(ds.user_features).all() and np.isfinite(ds.item_features).all()
    assert "user_active_degree=full_active" in ds.meta["user_feature_names"]


def test_kuairand_ground_truth_recovers_planted_clicks(kuairand: KuaiRandFixture) -> None:
    ds = load_kuairand(kuairand.root)
    check = ds.meta["ground_truth_check"]
    assert check["auc_completion"] > check["auc_item_mean"] + 0.05
    assert check["rmse_completion"] < check["rmse_item_mean"]
    corr = np.corrcoef(ds.ground_truth.ravel(), kuairand.click_prob().ravel())[0, 1]
    assert corr > 0.7
    again = load_kuairand(kuairand.root, use_cache=False)
    np.testing.assert_array_equal(again.ground_truth, ds.ground_truth)  # deterministic


def _break_line(path: Path, line_no: int, field: int, value: str) -> None:
    lines = path.read_text().splitlines()
    parts = lines[line_no - 1].split(",")
    parts[field] = value
    lines[line_no - 1] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n")


def test_kuairand_malformed_logs(tmp_path: Path) -> None:
    real = require_data(*FEATURES) / "kuairand_pure"
    fx = write_kuairand_fixture(tmp_path, real, n_users=50, n_items=40, n_train=300, n_test=300)
    log = fx.root / "kuairand_pure" / "log_standard_4_08_to_4_21_pure.csv"
    good = log.read_text()
    _break_line(log, 17, 5, "yes")
    with pytest.raises(ValueError, match=r"log_standard_4_08_to_4_21_pure\.csv, line 17, field 'is_click': expected"):
        load_kuairand(fx.root, use_cache=False)
    log.write_text(good)
    _break_line(log, 9, 1, "40")  # video 40 does not exist (40 videos: 0..39)
    with pytest.raises(ValueError, match=r"line 9, field 'video_id': value 40 is outside the valid range \[0, 39\]"):
        load_kuairand(fx.root, use_cache=False)
    log.write_text(good)
    _break_line(log, 4, 5, "2")
    with pytest.raises(ValueError, match=r"line 4, field 'is_click': value 2 is not one of \[0, 1\]"):
        load_kuairand(fx.root, use_cache=False)
    log.write_text(good.replace("is_rand,tab", "is_rand", 1))
    with pytest.raises(ValueError, match=r"line 1: header is .* expected \['user_id'"):
        load_kuairand(fx.root, use_cache=False)
    lines = good.splitlines()
    lines[5] = lines[5] + ",7"
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 6: expected 19 fields, found 20"):
        load_kuairand(fx.root, use_cache=False)
    log.unlink()
    with pytest.raises(DataNotFoundError, match=r"log_standard_4_08_to_4_21_pure\.csv.*recgym data download kuairand"):
        load_kuairand(fx.root)


def test_kuairand_official_archive_layout(tmp_path: Path) -> None:
    """Files left in the archive's ``KuaiRand-Pure/data`` sub-folder are found too."""
    real = require_data(*FEATURES) / "kuairand_pure"
    fx = write_kuairand_fixture(tmp_path / "stage", real, n_users=20, n_items=30, n_train=200, n_test=300)
    target = tmp_path / "root" / "kuairand_pure" / "KuaiRand-Pure"
    target.parent.mkdir(parents=True)
    (fx.root / "kuairand_pure").rename(tmp_path / "data")
    target.mkdir()
    (tmp_path / "data").rename(target / "data")
    ds = load_kuairand(tmp_path / "root", use_cache=False)
    assert (ds.n_users, ds.n_items, len(ds.test)) == (20, 30, 300)


@pytest.mark.slow
def test_kuairand_full_real_features_memory_layout(tmp_path: Path) -> None:
    """With the complete real feature files the ground truth is 27,285 x 7,583 float32 (as in DORL); 0.8 GB,
    so it is marked slow."""
    real = require_data(*FEATURES) / "kuairand_pure"
    fx = write_kuairand_fixture(tmp_path, real, n_users=None, n_items=None, n_train=500, n_test=2000)
    ds = load_kuairand(fx.root, use_cache=False)
    assert (ds.n_users, ds.n_items) == (27285, 7583)
    assert ds.ground_truth.shape == (27285, 7583) and ds.ground_truth.dtype == np.float32
    assert ds.item_categories.shape[0] == 7583 and ds.meta["n_items_without_tag"] == 96
    assert ds.user_features.shape[0] == 27285


# ----------------------------------------------------------------------------------------------- KuaiRec


def test_kuairec_loads_fixture(kuairec: KuaiRecFixture) -> None:
    ds = load_kuairec(kuairec.root)
    n_gt, n_items = len(kuairec.small_users), len(kuairec.small_videos)
    assert ds.n_gt_users == n_gt and ds.n_items == n_items
    assert ds.n_users == n_gt + len(kuairec.big_only_users)
    # ids: ground-truth users first, then the other big-matrix users, each in increasing original id
    assert ds.meta["user_ids"] == kuairec.small_users.tolist() + kuairec.big_only_users.tolist()
    assert ds.meta["video_ids"] == kuairec.small_videos.tolist()
    wr = kuairec.watch_ratio
    observed = ~np.isnan(wr)
    np.testing.assert_allclose(ds.ground_truth[observed], np.minimum(wr[observed], 5.0), rtol=1e-6)
    assert ds.ground_truth.max() <= 5.0 and (wr[observed] > 5).any()
    # missing cells -> 0, as DORL's KuaiEnv.py (a sparse matrix made dense)
    assert (ds.ground_truth[~observed] == 0).all()
    assert ds.meta["gt_missing_cells"] == int((~observed).sum()) == 4
    gt_meta = ds.meta["ground_truth"]
    assert gt_meta["comparable_to_published"] is True and gt_meta["missing_cells"] == 4
    n_side = kuairec.big_rows - kuairec.big_rows_on_small_videos
    assert f"the {n_side} rows on {ds.n_side_items} other videos in the side logs" in gt_meta["note"]
    assert len(ds.test) == int(observed.sum())
    # train: big-matrix rows on small-matrix videos only (in file order)
    assert len(ds.train) == kuairec.big_rows_on_small_videos
    big_all = pd.read_csv(kuairec.root / "kuairec" / "big_matrix.csv")
    big = big_all[big_all.video_id.isin(kuairec.small_videos)]
    uid = np.array(ds.meta["user_ids"])
    np.testing.assert_array_equal(uid[ds.train["user"]], big["user_id"])
    np.testing.assert_array_equal(np.array(ds.meta["video_ids"])[ds.train["item"]], big["video_id"])
    np.testing.assert_allclose(ds.train["reward"], np.minimum(big["watch_ratio"], 5), rtol=1e-6)
    assert ds.train["time"].isna().sum() == big["timestamp"].isna().sum()
    # categories from the list literals
    for j, v in enumerate(kuairec.small_videos):
        got = sorted(int(ds.category_names[c].split(":")[1]) for c in np.flatnonzero(ds.item_categories[j]))
        assert got == sorted(kuairec.tags[int(v)])
    assert (ds.reward_kind, ds.quit_rule) == ("watch_ratio", "category")


def test_kuairec_other_videos_are_side_logs(kuairec: KuaiRecFixture) -> None:
    """Big-matrix rows on videos outside the small matrix are kept as side logs (DORL's user model sees them)."""
    ds = load_kuairec(kuairec.root)
    big = pd.read_csv(kuairec.root / "kuairec" / "big_matrix.csv")
    other = big[~big.video_id.isin(kuairec.small_videos)]
    assert 0 < len(other) and len(ds.train) + len(ds.side_train) == kuairec.big_rows  # nothing dropped
    side_vids = np.unique(other["video_id"])
    assert ds.meta["side_video_ids"] == side_vids.tolist() and ds.n_side_items == len(side_vids) == 6
    assert (ds.meta["n_side_rows"], ds.meta["n_side_videos"]) == (len(other), 6)
    assert "n_big_rows_dropped" not in ds.meta
    st = ds.side_train
    assert list(st.columns) == ["user", "item", "reward", "time"]
    assert st["user"].dtype == np.int32 and st["item"].dtype == np.int32 and st["reward"].dtype == np.float32
    # rows in file order; items in the side videos' own id space (increasing original id)
    np.testing.assert_array_equal(np.array(ds.meta["user_ids"])[st["user"]], other["user_id"])
    np.testing.assert_array_equal(side_vids[st["item"]], other["video_id"])
    np.testing.assert_allclose(st["reward"], np.minimum(other["watch_ratio"], 5), rtol=1e-6)
    np.testing.assert_array_equal(st["time"].isna(), other["timestamp"].isna())
    np.testing.assert_allclose(st["time"].dropna(), other["timestamp"].dropna())
    # side tags over the same columns; tags that no small-matrix video has get no column
    col_tags = [int(n.split(":")[1]) for n in ds.category_names]
    side_tags = {t for v in side_vids for t in kuairec.tags[int(v)]}
    assert ds.meta["side_tags_without_column"] == sorted(side_tags - set(col_tags))
    assert ds.meta["side_tags_without_column"], "the fixture should exercise a side-only tag"
    assert ds.side_item_categories.shape == (6, len(col_tags)) and ds.side_item_categories.dtype == np.bool_
    for j, v in enumerate(side_vids):
        got = sorted(col_tags[c] for c in np.flatnonzero(ds.side_item_categories[j]))
        assert got == sorted(t for t in kuairec.tags[int(v)] if t in col_tags)
    assert ds.summary()["side_train_rows"] == len(other) and ds.summary()["n_side_items"] == 6
    # the parsed cache keeps the side logs
    again = load_kuairec(kuairec.root)
    pd.testing.assert_frame_equal(again.side_train, st)
    np.testing.assert_array_equal(again.side_item_categories, ds.side_item_categories)


def test_bad_side_logs_are_clear_errors(kuairec: KuaiRecFixture) -> None:
    from dataclasses import replace

    ds = load_kuairec(kuairec.root, use_cache=False)
    st, sc = ds.side_train, ds.side_item_categories
    with pytest.raises(ValueError, match=r"kuairec: side_train is given without side_item_categories"):
        replace(ds, side_item_categories=None)
    with pytest.raises(ValueError, match=r"side_item_categories is given without side_train"):
        replace(ds, side_train=None)
    with pytest.raises(ValueError, match=r"side_item_categories must be bool \(n_side_items, n_categories=\d+\)"):
        replace(ds, side_item_categories=sc[:, 1:])
    with pytest.raises(ValueError, match=r"side_item_categories must be bool .* got float32"):
        replace(ds, side_item_categories=sc.astype(np.float32))
    bad = st.assign(item=st["item"].where(st.index != 3, 6))
    with pytest.raises(ValueError, match=r"side_train item ids span \[0, 6\], expected the side items' own id "
                                         r"space \[0, n_side_items=6\)"):
        replace(ds, side_train=bad)
    with pytest.raises(ValueError, match=rf"side_train user ids span .* expected \[0, n_users={ds.n_users}\)"):
        replace(ds, side_train=st.assign(user=-1))
    with pytest.raises(ValueError, match=r"side_train lacks column\(s\) \['reward'\]"):
        replace(ds, side_train=st.drop(columns="reward"))
    with pytest.raises(ValueError, match=r"side_train rewards contain NaN/inf"):
        replace(ds, side_train=st.assign(reward=np.nan))
    # no side logs at all is the default of every other dataset
    assert replace(ds, side_train=None, side_item_categories=None).n_side_items == 0


def test_kuairec_malformed(kuairec: KuaiRecFixture) -> None:
    cats = kuairec.root / "kuairec" / "item_categories.csv"
    good = cats.read_text()
    lines = good.splitlines()
    lines[3] = '2,"[27, x]"'
    cats.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"item_categories\.csv, line 4, field 'feat': expected a list literal"):
        load_kuairec(kuairec.root, use_cache=False)
    cats.write_text(good)
    small = kuairec.root / "kuairec" / "small_matrix.csv"
    lines = small.read_text().splitlines()
    parts = lines[5].split(",")
    parts[-1] = "-0.5"
    lines[5] = ",".join(parts)
    small.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"small_matrix\.csv, line 6, field 'watch_ratio': value -0.5 is outside"):
        load_kuairec(kuairec.root, use_cache=False)
    parts[-1] = ""
    lines[5] = ",".join(parts)
    small.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"small_matrix\.csv, line 6, field 'watch_ratio': value nan is not a finite"):
        load_kuairec(kuairec.root, use_cache=False)


def test_kuairec_duplicate_small_pairs_are_summed(kuairec: KuaiRecFixture) -> None:
    small = kuairec.root / "kuairec" / "small_matrix.csv"
    lines = small.read_text().splitlines()
    first = lines[1].split(",")
    dup = first[:-1] + ["7.5"]  # clipped to 5 first, then summed (DORL clips the rows, then builds the matrix)
    small.write_text("\n".join(lines + [",".join(dup)]) + "\n")
    with pytest.warns(UserWarning, match="more than once; summing them"):
        ds = load_kuairec(kuairec.root, use_cache=False)
    assert ds.meta["gt_duplicate_pairs"] == ds.meta["ground_truth"]["duplicate_pairs"] == 1
    expected = min(float(first[-1]), 5.0) + 5.0
    assert ds.ground_truth[0, 0] == pytest.approx(expected, rel=1e-6)
    assert len(ds.test) == len(lines)  # both rows stay in the test log


def test_kuairec_majority_from_dorl_feature_domination(kuairec: KuaiRecFixture) -> None:
    import json

    from recgym.data.kuairec import dorl_majority

    ds = load_kuairec(kuairec.root, use_cache=False)
    assert "majority_categories" not in ds.meta
    ids = ds.meta["dorl_feature_ids"]  # tag + 1, one per category column
    ref = kuairec.root / "kuairec" / "reference_dorl"
    ref.mkdir()
    # DORL's format (shares need not sum to 1: its evaluator normalises them); normalised 0.5, 0.25, 0.125,
    # 0.0625, 0.0625: cumulative 0.5, 0.75 <= 0.8 < 0.875, so the first two features; 99 has no column here
    shares = [[ids[3], 0.08], [99, 0.04], [ids[0], 0.02], [ids[1], 0.01], [ids[2], 0.01]]
    (ref / "feature_domination.json").write_text(json.dumps({"feat": shares}))
    ds = load_kuairec(kuairec.root, use_cache=False)
    assert ds.meta["majority_categories"] == {"feat": [3]}
    assert "1 without a category column" in ds.meta["majority_source"]
    real = require_data("kuairec/reference_dorl/feature_domination.json") / "kuairec"
    out = dorl_majority(real / "reference_dorl" / "feature_domination.json", list(range(1, 32)))
    # the real file: features 29, 9, 12, 7, 10, 27, 8, 6, 18, 2 reach a cumulative 0.766 (the next: 0.801)
    assert out["majority_categories"]["feat"] == [28, 8, 11, 6, 9, 26, 7, 5, 17, 1]
    (ref / "feature_domination.json").write_text('{"feat": "x"}')
    with pytest.raises(ValueError, match=r"feature_domination\.json, field 'feat': expected"):
        load_kuairec(kuairec.root, use_cache=False)
