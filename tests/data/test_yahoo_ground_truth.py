"""Yahoo! R3 ground truths on a scaled fixture in the exact original formats.

Webscope files: tab-separated ``user item rating`` (1-based). RL4Rec's ``yahoo_pseudoGT_ratingM.ascii``: a
whitespace-separated matrix, one row per user, one column per song; here 15 users x 20 songs of which the first
6 are the test users (the real file: 15,400 x 1,000, first 5,400 kept). The extra rows are built so that item
distances over all rows and over the first 6 rows disagree, which is what the checks look at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.data import DataNotFoundError
from recgym.data.yahoo import FALLBACK_NOTE, PSEUDO_GT_FILE, load_yahoo, read_pseudo_gt
from recgym.envs.rec import GroundTruthRecEnv

# the scaled fixture is not the release: the loader says so in a warning, expected here
pytestmark = pytest.mark.filterwarnings(r"ignore:yahoo.*differ\(s\) from the official release:UserWarning")

N_USERS, N_GT, N_ITEMS = 15, 6, 20
TRAIN = "ydata-ymusic-rating-study-v1_0-train.txt"
TEST = "ydata-ymusic-rating-study-v1_0-test.txt"


def _write_logs(root: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    d = root / "yahoo_r3"
    d.mkdir(parents=True, exist_ok=True)
    train = []
    for u in range(1, N_USERS + 1):
        for i in rng.choice(N_ITEMS, size=8, replace=False):
            train.append(f"{u}\t{i + 1}\t{rng.integers(1, 6)}")
    test = []
    for u in range(1, N_GT + 1):
        for i in rng.choice(N_ITEMS, size=10, replace=False):
            test.append(f"{u}\t{i + 1}\t{rng.integers(1, 6)}")
    (d / TRAIN).write_text("\n".join(train) + "\n")
    (d / TEST).write_text("\n".join(test) + "\n")


def _pseudo_gt(seed: int = 1) -> np.ndarray:
    """15 x 20 ratings: items 0 and 1 equal on the first 6 rows, 4 apart on the other 9 (distance 0 vs 12)."""
    rng = np.random.default_rng(seed)
    m = rng.integers(1, 6, size=(N_USERS, N_ITEMS)).astype(np.float64)
    m[:, 1] = m[:, 0]
    m[N_GT:, 0], m[N_GT:, 1] = 1.0, 5.0
    return m


def _write_pseudo_gt(root: Path, m: np.ndarray, fmt: str = "{:.0f}") -> Path:
    p = root / "yahoo_r3" / PSEUDO_GT_FILE
    p.write_text("\n".join(" ".join(fmt.format(v) for v in row) for row in m) + "\n")
    return p


def _all_row_distances(m: np.ndarray) -> np.ndarray:
    return np.sqrt(((m[:, :, None] - m[:, None, :]) ** 2).sum(0))


@pytest.fixture()
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "cache"))
    # a scaled fixture under the release's file names: its counts are not the published ones, on purpose
    monkeypatch.setenv("RECGYM_ALLOW_MODIFIED_DATA", "1")
    _write_logs(tmp_path / "data")
    return tmp_path / "data"


def test_pseudo_gt_distances_over_all_rows_first_rows_kept(root: Path) -> None:
    m = _pseudo_gt()
    m[2, 3], m[3, 4], m[4, 5] = 3.4, 0.0, 7.0  # RL4Rec's reading: clip(round(x), 1, 5)
    _write_pseudo_gt(root, m, "{:g}")
    ds = load_yahoo(root, use_cache=False)
    read = np.clip(np.round(m), 1, 5)
    assert ds.ground_truth.shape == (N_GT, N_ITEMS)
    np.testing.assert_array_equal(ds.ground_truth, read[:N_GT])
    assert (ds.ground_truth[2, 3], ds.ground_truth[3, 4], ds.ground_truth[4, 5]) == (3.0, 1.0, 5.0)
    assert ds.distance_source.shape == (N_USERS, N_ITEMS)
    np.testing.assert_array_equal(ds.distance_source, read)
    gt_meta = ds.meta["ground_truth"]
    assert gt_meta["comparable_to_published"] is True and gt_meta["file_rows"] == N_USERS
    assert gt_meta["cells_changed_by_round_clip"] == 3 and gt_meta["distance_rows"] == N_USERS
    # the env's quit rule measures distances over all 15 rows, not over the 6 kept ones
    env = GroundTruthRecEnv(ds, num_envs=1, protocol="custom", num_leave_compute=1, leave_threshold=1.0)
    np.testing.assert_allclose(env._item_dist.numpy(), _all_row_distances(read), rtol=1e-6, atol=1e-5)
    assert env.protocol["ground_truth"]["comparable_to_published"] is True
    # items 0 and 1: identical for the evaluation users (distance 0 there) but 4 * sqrt(9) = 12 apart overall,
    # so recommending 1 right after 0 does not end the episode with M = 10 ...
    env = GroundTruthRecEnv(ds, num_envs=1, protocol="custom", num_leave_compute=1, leave_threshold=10.0)
    env.reset(seed=0)
    env.step(torch.tensor([0]))
    _, _, term, trunc, _ = env.step(torch.tensor([1]))
    assert not bool(term[0]) and not bool(trunc[0])
    # ... while M = 13 (above 12) does
    env = GroundTruthRecEnv(ds, num_envs=1, protocol="custom", num_leave_compute=1, leave_threshold=13.0)
    env.reset(seed=0)
    env.step(torch.tensor([0]))
    _, _, term, _, _ = env.step(torch.tensor([1]))
    assert bool(term[0])


def test_pseudo_gt_survives_the_parsed_cache(root: Path) -> None:
    m = _pseudo_gt()
    _write_pseudo_gt(root, m)
    first = load_yahoo(root)
    again = load_yahoo(root)
    assert again.meta["fingerprint"] == first.meta["fingerprint"]
    np.testing.assert_array_equal(again.ground_truth, m[:N_GT])
    np.testing.assert_array_equal(again.distance_source, m)


def test_fallback_without_the_file_is_flagged(root: Path) -> None:
    ds = load_yahoo(root, use_cache=False)
    assert ds.distance_source is None and ds.ground_truth.shape == (N_GT, N_ITEMS)
    g = ds.ground_truth
    assert set(np.unique(g)) <= {1.0, 2.0, 3.0, 4.0, 5.0}  # rounded and clipped like the file
    gt_meta = ds.meta["ground_truth"]
    assert gt_meta["comparable_to_published"] is False and gt_meta["note"] == FALLBACK_NOTE
    assert gt_meta["heldout_rmse"] == ds.meta["ground_truth_check"]["rmse_completion"] > 0
    env = GroundTruthRecEnv(ds, num_envs=2, protocol="dorl")
    assert env.protocol["ground_truth"]["note"] == FALLBACK_NOTE
    # the fallback is deterministic and does not depend on the (absent) file's name being cached
    np.testing.assert_array_equal(load_yahoo(root, use_cache=False).ground_truth, g)
    # ground_truth="mf_test" ignores a present file; "pseudo_gt" requires it
    with pytest.raises(DataNotFoundError, match=r"yahoo_pseudoGT_ratingM\.ascii.*--accept-licence"):
        load_yahoo(root, ground_truth="pseudo_gt", use_cache=False)
    _write_pseudo_gt(root, _pseudo_gt())
    np.testing.assert_array_equal(load_yahoo(root, ground_truth="mf_test", use_cache=False).ground_truth, g)
    with pytest.raises(ValueError, match=r"ground_truth='best'.*'auto', 'pseudo_gt', 'mf_test'"):
        load_yahoo(root, ground_truth="best")


def test_pseudo_gt_errors_name_file_and_line(root: Path, tmp_path: Path) -> None:
    m = _pseudo_gt()
    p = _write_pseudo_gt(root, m)
    lines = p.read_text().splitlines()
    lines[7] = " ".join(lines[7].split()[:-1])
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"yahoo_pseudoGT_ratingM\.ascii, line 8: expected 20 values, found 19"):
        load_yahoo(root, use_cache=False)
    p.write_text("\n".join(" ".join(str(int(v)) for v in row) for row in m[:4]) + "\n")
    with pytest.raises(ValueError, match=r"found 4 rows, expected at least 6"):
        read_pseudo_gt(p, N_ITEMS, N_GT)


def _flat(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace() and ch not in "│╭╮╰╯─┃━┏┓┗┛┡┩└┘┌┐├┤")


def test_cli_info_says_which_ground_truth(root: Path) -> None:
    from typer.testing import CliRunner

    from recgym.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["data", "info", "yahoo", "--data-dir", str(root)])
    assert res.exit_code == 0, res.output
    flat = _flat(res.output)
    assert "ground_truth_comparable_to_publishedNO" in flat
    assert _flat(FALLBACK_NOTE) in flat and "ground_truth_heldout_rmse" in flat
    _write_pseudo_gt(root, _pseudo_gt())
    res = runner.invoke(app, ["data", "info", "yahoo", "--data-dir", str(root)])
    assert res.exit_code == 0, res.output
    flat = _flat(res.output)
    assert "ground_truth_comparable_to_publishedyes" in flat and "RL4Recyahoo_pseudoGT_ratingM.ascii" in flat
    assert "ground_truth_distance_rows15" in flat
    m = np.clip(np.round(_pseudo_gt()), 1, 5)
    median = float(np.median(_all_row_distances(m)[np.triu_indices(N_ITEMS, 1)]))
    assert f"item_distance_median{median:.4g}" in flat  # over all 15 rows


def test_cli_download_yahoo_accept_licence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import recgym.data.download as dl
    from recgym.cli import app

    calls = []

    def fake(name, data_dir=None, force=False, **kw):
        calls.append((name, kw.get("accept_licence")))
        return Path(data_dir) / "yahoo_r3"

    monkeypatch.setattr(dl, "download", fake)
    res = CliRunner().invoke(app, ["data", "download", "yahoo", "--data-dir", str(tmp_path), "--accept-licence"])
    assert res.exit_code == 0, res.output
    assert calls == [("yahoo", True)] and "pseudo ground truth" in res.output
