"""The synthetic dataset: shapes, exact ground truth, determinism, MNAR bias, train/test split, known returns."""

from __future__ import annotations

import numpy as np
import pytest

from recgym.data import load_dataset
from recgym.data.synthetic import load_synthetic, optimal_return, random_return


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic")


def test_shapes_and_contract(ds):
    assert (ds.n_users, ds.n_items) == (500, 400)
    assert ds.ground_truth.shape == (500, 400) and ds.ground_truth.dtype == np.float32
    assert ds.n_gt_users == ds.n_users
    assert ds.item_categories.shape == (400, 10) and ds.item_categories.dtype == np.bool_
    assert (ds.item_categories.sum(axis=1) == 1).all()
    assert ds.quit_rule == "distance" and ds.reward_kind == "rating" and ds.positive_threshold == 4.0
    assert ds.meta["user_factors"].shape == (500, 8)
    assert ds.meta["item_factors"].shape == (400, 8)
    assert ds.meta["popularity"].shape == (400,)
    assert np.isclose(ds.meta["popularity"].sum(), 1.0)
    assert ds.meta["config"]["seed"] == 0 and "ground_truth_method" in ds.meta
    gt = ds.ground_truth
    assert gt.min() >= 0.0 and gt.max() <= 5.0
    counts = ds.train.groupby("user").size()
    assert len(counts) == 500 and counts.min() >= 20 and counts.max() <= 40
    assert (ds.test.groupby("user").size() == 10).all()
    assert list(ds.train.columns) == ["user", "item", "reward", "time"]
    assert ds.train["time"].is_unique
    assert not ds.train.duplicated(["user", "item"]).any()


def test_ground_truth_is_exact_function_of_factors(ds):
    m, cfg = ds.meta, ds.meta["config"]
    d = cfg["n_factors"]
    logits = (
        cfg["affinity_scale"] * np.sqrt(d) * m["user_factors"].astype(np.float64) @ m["item_factors"].T
        + m["user_bias"][:, None] + m["item_bias"][None, :] + cfg["global_bias"]
    )
    expected = 5.0 / (1.0 + np.exp(-logits))
    np.testing.assert_allclose(ds.ground_truth, expected, atol=1e-5)
    # Logged and test rewards are GT lookups (reward_noise defaults to 0).
    for df in (ds.train, ds.test):
        np.testing.assert_array_equal(df["reward"].to_numpy(), ds.ground_truth[df["user"], df["item"]])


def test_categories_mean_something(ds):
    # Items cluster by category: same-category item factors are closer than cross-category ones.
    v = ds.meta["item_factors"]
    cat = ds.meta["item_category"]
    dist = np.linalg.norm(v[:, None, :] - v[None, :, :], axis=-1)
    same = cat[:, None] == cat[None, :]
    off = ~np.eye(len(cat), dtype=bool)
    assert dist[same & off].mean() < 0.8 * dist[~same].mean()


def test_deterministic_and_seeds_differ():
    a = load_synthetic(n_users=60, n_items=80, seed=3)
    b = load_synthetic(n_users=60, n_items=80, seed=3)
    c = load_synthetic(n_users=60, n_items=80, seed=4)
    np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
    assert a.train.equals(b.train) and a.test.equals(b.test)
    np.testing.assert_array_equal(a.meta["item_factors"], b.meta["item_factors"])
    assert not np.array_equal(a.ground_truth, c.ground_truth)
    assert not a.train[["user", "item"]].equals(c.train[["user", "item"]])


def test_mnar_bias(ds):
    gt = ds.ground_truth
    assert ds.train["reward"].mean() > gt.mean() + 0.5  # self-selection: logs over-represent liked items
    assert abs(ds.test["reward"].mean() - gt.mean()) < 0.15  # random exposure: unbiased
    counts = np.bincount(ds.train["item"], minlength=ds.n_items)
    pop = ds.meta["popularity"]
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    spearman = np.corrcoef(rank(pop), rank(counts))[0, 1]
    assert spearman > 0.6


def test_test_disjoint_from_train(ds):
    tr = set(zip(ds.train["user"], ds.train["item"], strict=True))
    te = set(zip(ds.test["user"], ds.test["item"], strict=True))
    assert not tr & te
    assert not ds.test.duplicated(["user", "item"]).any()


def test_bad_arguments_named():
    with pytest.raises(ValueError, match="n_items"):
        load_synthetic(n_items=30)  # max_logged + n_test = 50 > 30
    with pytest.raises(TypeError, match="bogus"):
        load_synthetic(bogus=1)
    with pytest.raises(ValueError, match="n_users"):
        load_synthetic(n_users=0)


GT_2x3 = np.array([[1.0, 5.0, 3.0], [2.0, 2.0, 4.0]])


def test_optimal_return_hand_computed():
    r = optimal_return(GT_2x3, max_turn=2, no_repeat=True)
    np.testing.assert_allclose(r.per_user, [8.0, 6.0])  # 5+3, 4+2
    assert r.mean == pytest.approx(7.0)
    r = optimal_return(GT_2x3, max_turn=2, no_repeat=False)
    np.testing.assert_allclose(r.per_user, [10.0, 8.0])
    assert r.mean == pytest.approx(9.0)
    # More turns than items without repeats: the episode uses every item once.
    np.testing.assert_allclose(optimal_return(GT_2x3, 5, True).per_user, [9.0, 8.0])


def test_random_return_hand_computed():
    r = random_return(GT_2x3, max_turn=2, no_repeat=True)
    np.testing.assert_allclose(r.per_user, [2 * 3.0, 2 * 8.0 / 3])
    assert r.mean == pytest.approx((6.0 + 16.0 / 3) / 2)
    np.testing.assert_allclose(random_return(GT_2x3, 5, False).per_user, [15.0, 40.0 / 3])
    np.testing.assert_allclose(random_return(GT_2x3, 5, True).per_user, [9.0, 8.0])


def test_random_return_matches_enumeration():
    # Exhaustive check of the NX formula: average over all ordered 2-item sequences without repeats.
    from itertools import permutations

    for u in range(2):
        vals = [GT_2x3[u, a] + GT_2x3[u, b] for a, b in permutations(range(3), 2)]
        assert random_return(GT_2x3, 2, True).per_user[u] == pytest.approx(np.mean(vals))


def test_returns_reject_bad_input():
    with pytest.raises(ValueError, match="gt"):
        optimal_return(np.zeros(3), 2)
    with pytest.raises(ValueError, match="max_turn"):
        random_return(GT_2x3, -1)
