"""KuaiRand ground truth from DORL's ``MF_results_GT/kuairand_is_click.csv`` (a fixture in its exact format),
the streamed load's memory, and the shared category of untagged videos."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.data import DataNotFoundError
from recgym.data.kuairand import FALLBACK_NOTE, load_kuairand, read_ground_truth_csv
from recgym.envs.rec import GroundTruthRecEnv
from tests.conftest import require_data
from tests.data.fixtures_kuai import KuaiRandFixture, write_kuairand_fixture, write_kuairand_gt_csv

FEATURES = ("kuairand_pure/user_features_pure.csv", "kuairand_pure/video_features_basic_pure.csv")


@pytest.fixture(scope="module")
def kuairand(tmp_path_factory: pytest.TempPathFactory) -> KuaiRandFixture:
    real = require_data(*FEATURES) / "kuairand_pure"
    return write_kuairand_fixture(tmp_path_factory.mktemp("kuairand_gt"), real, n_users=300, n_items=200,
                                  n_train=2_000, n_test=4_000)


@pytest.fixture()
def root(kuairand: KuaiRandFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(kuairand.root / "kuairand_pure", tmp_path / "data" / "kuairand_pure")
    return tmp_path / "data"


def _values(kuairand: KuaiRandFixture) -> np.ndarray:
    v = kuairand.click_prob()
    v[0, 0], v[1, 2] = 1.3, -0.2  # DORL does not clip
    return v


def test_dorl_csv_loaded_as_dorl_reads_it(kuairand: KuaiRandFixture, root: Path) -> None:
    path, expected = write_kuairand_gt_csv(root, _values(kuairand), drop=7, repeat=5)
    ds = load_kuairand(root, use_cache=False, chunk_rows=4_000)  # 15 chunks: repeats across and within chunks
    assert ds.ground_truth.dtype == np.float32 and ds.ground_truth.shape == (300, 200)
    np.testing.assert_allclose(ds.ground_truth, expected, rtol=1e-6, atol=1e-7)
    assert ds.ground_truth[0, 0] == pytest.approx(1.3) or ds.ground_truth[0, 0] == pytest.approx(2.6)
    assert ds.ground_truth.min() < 0
    gt_meta = ds.meta["ground_truth"]
    assert gt_meta["comparable_to_published"] is True
    assert (gt_meta["missing_cells"], gt_meta["duplicate_pairs"]) == (7, 5)
    assert ds.meta["ground_truth_load"]["rows"] == 300 * 200 - 7 + 5
    env = GroundTruthRecEnv(ds, num_envs=2, protocol="dorl")
    assert env.protocol["ground_truth"]["source"].endswith("kuairand_is_click.csv")
    # the chunk size does not change the result; a sorted file (the fast path) neither
    np.testing.assert_array_equal(read_ground_truth_csv(path, 300, 200, chunk_rows=60_000)[0], ds.ground_truth)
    path, expected = write_kuairand_gt_csv(root, _values(kuairand), shuffle=False)
    gt, info = read_ground_truth_csv(path, 300, 200, chunk_rows=7_000)
    np.testing.assert_allclose(gt, expected, rtol=1e-6, atol=1e-7)
    assert (info["missing_cells"], info["duplicate_pairs"]) == (0, 0)


def test_streamed_load_peak_memory(kuairand: KuaiRandFixture, root: Path) -> None:
    """Traced (numpy) memory of the load: the output matrix plus one chunk, not the whole table."""
    path, _ = write_kuairand_gt_csv(root, _values(kuairand))
    n_rows = 300 * 200
    peaks = {}
    for chunk in (2_000, n_rows):
        tracemalloc.start()
        gt, _ = read_ground_truth_csv(path, 300, 200, chunk_rows=chunk)
        peaks[chunk] = tracemalloc.get_traced_memory()[1] - gt.nbytes
        tracemalloc.stop()
        del gt
    # one chunk of the whole file holds the table (16 bytes a row parsed, ~70 with the cell index and
    # temporaries); 2,000-row chunks hold a fixed reader overhead (~0.35 MB here) plus ~70 bytes a chunk row
    assert peaks[n_rows] > 50 * n_rows
    assert peaks[2_000] < peaks[n_rows] / 4


def test_fallback_and_required_file(root: Path) -> None:
    ds = load_kuairand(root, use_cache=False)
    assert ds.meta["ground_truth"]["comparable_to_published"] is False
    assert ds.meta["ground_truth"]["note"] == FALLBACK_NOTE
    assert ds.ground_truth.min() >= 0 and ds.ground_truth.max() <= 1
    with pytest.raises(DataNotFoundError, match=r"kuairand_is_click\.csv.*MF_results_GT.*ground_truth='mf'"):
        load_kuairand(root, ground_truth="dorl_csv", use_cache=False)


def test_dorl_csv_errors_name_line_and_field(kuairand: KuaiRandFixture, root: Path) -> None:
    path, _ = write_kuairand_gt_csv(root, _values(kuairand), shuffle=False)
    lines = path.read_text().splitlines()
    bad = list(lines)
    bad[4500] = "300,3,0.5"  # user 300 does not exist (300 users: 0..299)
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=r"kuairand_is_click\.csv, line 4501, field 'user_id': value 300 is outside"):
        read_ground_truth_csv(path, 300, 200, chunk_rows=1_000)
    bad = list(lines)
    bad[9] = "0,8,abc"
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=r"kuairand_is_click\.csv, line 10, field 'value': expected a number"):
        read_ground_truth_csv(path, 300, 200, chunk_rows=1_000)
    path.write_text("user,item,value\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(ValueError, match=r"line 1: header is \['user', 'item', 'value'\], expected the columns"):
        read_ground_truth_csv(path, 300, 200)


def test_untagged_videos_share_category_minus_one(kuairand: KuaiRandFixture, root: Path) -> None:
    ds = load_kuairand(root, use_cache=False)
    col = ds.meta["untagged_category"]
    assert ds.category_names[col] == "tag:-1" and ds.meta["dorl_feature_ids"][col] == 0
    untagged = np.flatnonzero(ds.item_categories[:, col])
    assert untagged.tolist() == [75, 90]  # the real video file's untagged videos among the first 200
    assert (ds.item_categories[untagged].sum(1) == 1).all() and ds.meta["n_items_without_tag"] == 2
    assert col not in ds.meta["category_groups"]["feat"]  # MCD ignores it, as DORL (features > 0 only)
    assert len(ds.meta["category_groups"]["feat"]) == len(ds.category_names) - 1
    # the category quit rule treats two untagged videos as alike: 90 after 75 ends the episode (N=1, M=0)
    env = GroundTruthRecEnv(ds, num_envs=1, protocol="custom", num_leave_compute=1, leave_threshold=0.0,
                            quit_rule="category")
    env.reset(seed=0)
    env.step(torch.tensor([75]))
    _, _, term, _, _ = env.step(torch.tensor([90]))
    assert bool(term[0])


def test_dorl_majority_as_positions_in_the_feat_group(root: Path) -> None:
    import json

    ds = load_kuairand(root, use_cache=False)
    ids, col = ds.meta["dorl_feature_ids"], ds.meta["untagged_category"]
    assert col == 0  # tag -1 sorts first
    ref = root / "kuairand_pure" / "reference_dorl"
    ref.mkdir()
    # normalised 0.5, 0.25, 0.25: cumulative 0.5, 0.75 <= 0.8: columns 5 and 2, i.e. positions 4 and 1 of "feat"
    (ref / "feature_domination.json").write_text(json.dumps({"feat": [[ids[5], 0.2], [ids[2], 0.1], [ids[7], 0.1]]}))
    ds = load_kuairand(root, use_cache=False)
    assert ds.meta["majority_categories"] == {"feat": [4, 1]}
    assert [ds.meta["category_groups"]["feat"][k] for k in (4, 1)] == [5, 2]
