"""recgym.metrics against hand-computed cases, in numpy and torch, and DORL's Coat majority categories."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from recgym import metrics as M
from tests.conftest import require_data

# 3 users x 5 items. Rankings: u0 -> 0,2,4,3,1; u1 -> 3,1,2,0,4 (3,1,2,0,4 minus excluded 3 -> 1,2,0,4);
# u2 has no ground truth.
SCORES = np.array(
    [
        [0.9, 0.1, 0.8, 0.3, 0.5],
        [0.2, 0.7, 0.6, 0.9, 0.1],
        [0.5, 0.4, 0.3, 0.2, 0.1],
    ]
)
GT = np.zeros((3, 5), dtype=bool)
GT[0, [1, 2]] = True
GT[1, 0] = True
EXCL = np.zeros((3, 5), dtype=bool)
EXCL[1, 3] = True

L2, L3 = 1 / math.log2(3), 1 / math.log2(4)
# k = 3 with exclusion: u0 top [0,2,4] one hit at rank 2 of |GT|=2; u1 top [1,2,0] hit at rank 3 of |GT|=1.
EXPECTED_K3 = {
    "Recall@3": (0.5 + 1.0, 2),
    "Precision@3": (1 / 3 + 1 / 3, 2),
    "NDCG@3": (L2 / (1 + L2) + L3 / 1.0, 2),
    "MRR@3": (0.5 + 1 / 3, 2),
}


def _as(kind, x):
    return torch.as_tensor(x) if kind == "torch" else x


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_topk(kind):
    top = M.topk_from_scores(_as(kind, SCORES), 3, _as(kind, EXCL))
    top = np.asarray(top)
    np.testing.assert_array_equal(top, [[0, 2, 4], [1, 2, 0], [0, 1, 2]])
    # Excluded items rank last even when k covers the whole row.
    full = np.asarray(M.topk_from_scores(_as(kind, SCORES), 5, _as(kind, EXCL)))
    assert full[1, -1] == 3


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("average", ["all", "with_gt"])
def test_ranking_hand_computed(kind, average):
    s, g, e = _as(kind, SCORES), _as(kind, GT), _as(kind, EXCL)
    denom = 3 if average == "all" else 2  # u2 has no ground truth: counted as 0 under "all"
    fns = {"Recall@3": M.recall_at_k, "Precision@3": M.precision_at_k, "NDCG@3": M.ndcg_at_k, "MRR@3": M.mrr}
    for name, fn in fns.items():
        value = fn(s, g, 3, e, average=average)
        if kind == "torch":
            assert isinstance(value, torch.Tensor) and value.ndim == 0
        else:
            assert isinstance(value, float)
        total, _ = EXPECTED_K3[name]
        assert float(value) == pytest.approx(total / denom), name
    report = M.ranking_report(s, g, e, ks=(2, 3), average=average)
    assert set(report) == {f"{m}@{k}" for m in ("Recall", "Precision", "NDCG", "MRR") for k in (2, 3)}
    for name, (total, _) in EXPECTED_K3.items():
        assert report[name] == pytest.approx(total / denom)
    # k = 2: only u0 hits (item 2 at rank 2); u1's top-2 is [1, 2].
    assert report["Recall@2"] == pytest.approx(0.5 / denom)
    assert report["NDCG@2"] == pytest.approx(L2 / (1 + L2) / denom)
    assert report["Precision@2"] == pytest.approx(0.5 / denom)
    assert report["MRR@2"] == pytest.approx(0.5 / denom)


def test_exclusion_changes_result():
    # Without excluding item 3, u1's top-3 is [3, 1, 2]: no hit.
    assert M.recall_at_k(SCORES, GT, 3) == pytest.approx(0.5 / 3)
    assert M.recall_at_k(SCORES, GT, 3, EXCL) == pytest.approx(1.5 / 3)


def test_idcg_uses_min_gt_k():
    # |GT| = 3 > K = 2 and both top-2 items are hits: NDCG must be exactly 1, recall 2/3.
    s = np.array([[0.9, 0.8, 0.1, 0.2]])
    g = np.array([[True, True, True, False]])
    assert M.ndcg_at_k(s, g, 2) == pytest.approx(1.0)
    assert M.recall_at_k(s, g, 2) == pytest.approx(2 / 3)
    assert M.mrr(s, g) == pytest.approx(1.0)


def test_numpy_torch_agree_on_random_data():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(40, 60))
    g = rng.random((40, 60)) < 0.1
    e = rng.random((40, 60)) < 0.2
    g &= ~e
    a = M.ranking_report(s, g, e, ks=(5, 10))
    b = M.ranking_report(torch.as_tensor(s), torch.as_tensor(g), torch.as_tensor(e), ks=(5, 10))
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-12)


def test_ranking_bad_input():
    with pytest.raises(ValueError, match="k must be"):
        M.recall_at_k(SCORES, GT, 6)
    with pytest.raises(ValueError, match="gt_mask shape"):
        M.recall_at_k(SCORES, GT[:2], 2)
    with pytest.raises(ValueError, match="NaN"):
        M.recall_at_k(np.full((2, 3), np.nan), np.ones((2, 3), bool), 2)
    with pytest.raises(ValueError, match="average"):
        M.recall_at_k(SCORES, GT, 2, average="users")


# Two episodes: lengths 3 and 2 (the 100.0 reward past episode 0's end must be ignored).
ITEMS = np.array([[3, 1, 3, -1], [0, 3, -1, -1]])
REWARDS = np.array([[1.0, 2.0, 0.5, 100.0], [4.0, 0.0, 0.0, 0.0]])
LENGTHS = np.array([3, 2])
CATS = np.zeros((10, 3), dtype=bool)
CATS[0, 0] = True
CATS[1, 1] = True
CATS[3, [1, 2]] = True


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_episode_metrics_hand_computed(kind):
    it, rw, ln = _as(kind, ITEMS), _as(kind, REWARDS), _as(kind, LENGTHS)
    assert float(M.r_cumu(rw, ln)) == pytest.approx((3.5 + 4.0) / 2)
    assert float(M.length(ln)) == pytest.approx(2.5)
    # Ratio of means 7.5 / 5 = 1.5, not the mean of per-episode averages (3.5/3 + 4/2) / 2 = 1.583.
    assert float(M.r_avg(rw, ln)) == pytest.approx(1.5)
    assert float(M.coverage(it, 10, ln)) == pytest.approx(3 / 10)  # distinct {0, 1, 3}
    assert float(M.cv_turn(it, ln)) == pytest.approx(3 / 5)
    cats = _as(kind, CATS)
    assert float(M.mcd(it, cats, [2], ln)) == pytest.approx(3 / 5)  # item 3 three times
    assert float(M.mcd(it, cats, [0], ln)) == pytest.approx(1 / 5)
    assert float(M.mcd(it, cats, [0, 1], ln)) == pytest.approx(5 / 5)
    # Lengths inferred from the -1 padding give the same numbers.
    assert float(M.cv_turn(it)) == pytest.approx(3 / 5)
    rep = M.episode_report(it, rw, ln, 10, cats, [2])
    assert rep == pytest.approx(
        {"R_cumu": 3.75, "R_avg": 1.5, "Length": 2.5, "CV": 0.3, "CV_turn": 0.6, "MCD": 0.6}
    )
    if kind == "torch":
        assert isinstance(M.r_cumu(rw, ln), torch.Tensor)


def test_episode_bad_input():
    with pytest.raises(ValueError, match="padding"):
        M.cv_turn(ITEMS, np.array([4, 2]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        M.r_cumu(REWARDS, np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="majority"):
        M.mcd(ITEMS, CATS, [5], LENGTHS)


def test_majority_categories_hand_computed():
    items = np.array([0, 0, 1, 3, 3, 3])
    rewards = np.array([5.0, 1.0, 4.0, 5.0, 4.0, 2.0])
    # Positives (>= 4): items 0, 1, 3, 3 -> counts cat0 1, cat1 3, cat2 2 (shares 1/6, 1/2, 1/3).
    dom = M.category_domination(items, rewards, CATS, 4.0)
    assert [c for c, _ in dom] == [1, 2, 0]
    assert [s for _, s in dom] == pytest.approx([1 / 2, 1 / 3, 1 / 6])
    # Cumulative 0.5, 0.833, 1.0: DORL keeps the prefix that stays <= 0.8.
    np.testing.assert_array_equal(M.majority_categories(items, rewards, CATS, 4.0), [1])
    np.testing.assert_array_equal(M.majority_categories(items, rewards, CATS, 4.0, share=0.85), [1, 2])
    # All interactions: cat0 2, cat1 4, cat2 3 -> cumulative 0.444, 0.778, 1.0.
    np.testing.assert_array_equal(M.majority_categories(items, rewards, CATS, None), [1, 2])
    # At least one category even when the first share already exceeds `share`.
    np.testing.assert_array_equal(M.majority_categories(items, rewards, CATS, 4.0, share=0.3), [1])
    # torch inputs give the same answer.
    t = M.majority_categories(torch.as_tensor(items), torch.as_tensor(rewards), torch.as_tensor(CATS), 4.0)
    np.testing.assert_array_equal(t, [1])


# Coat item_features.ascii columns (user_item_features/item_features_map.txt): gender 0-1, jackettype 2-17,
# color 18-30, onfrontpage 31-32. DORL's feature value is the index inside the group.
COAT_GROUPS = {"gender_i": (0, 2), "jackettype": (2, 18), "color": (18, 31), "onfrontpage": (31, 33)}


def _dorl_majority(pairs, top_rate=0.8):
    # DORL get_feat_dominate_dict: normalise, walk the cumulative shares, stop at the first one > top_rate.
    values = np.array([p[1] for p in pairs])
    cum = np.cumsum(values / values.sum())
    ind = 0
    for v in cum:
        if v > top_rate:
            break
        ind += 1
    return [int(p[0]) for p in pairs[: max(ind, 1)]]


def test_coat_majority_matches_dorl():
    root = require_data(
        "coat/train.ascii", "coat/user_item_features/item_features.ascii", "coat/reference_dorl/feature_domination.json"
    )
    train = np.loadtxt(root / "coat/train.ascii")
    feats = np.loadtxt(root / "coat/user_item_features/item_features.ascii") > 0
    ref = json.loads((root / "coat/reference_dorl/feature_domination.json").read_text())
    users, items = np.nonzero(train)
    rewards = train[users, items]
    assert len(items) == 6960 and set(ref) == set(COAT_GROUPS)
    for group, (a, b) in COAT_GROUPS.items():
        cats = feats[:, a:b]
        # DORL counts every logged Coat rating (no positive filter) for the domination table.
        dom = M.category_domination(items, rewards, cats, None)
        # Same (value, share) pairs; the order may differ only inside ties (color 6 and 8 share 0.025:
        # DORL breaks ties by first appearance in the logs, we by lower id).
        assert dict(dom) == pytest.approx({int(v): s for v, s in ref[group]}, abs=1e-12), group
        assert [s for _, s in dom] == pytest.approx([s for _, s in ref[group]], abs=1e-12), group
        majority = M.majority_categories(items, rewards, cats, None, share=0.8)
        assert majority.tolist() == _dorl_majority(ref[group]), group
    # Spot values: gender {0}, onfrontpage {1} (0.85 > 0.8 alone, kept as the minimum of one).
    assert M.majority_categories(items, rewards, feats[:, 0:2], None).tolist() == [0]
    assert M.majority_categories(items, rewards, feats[:, 31:33], None).tolist() == [1]


def test_coat_majority_through_loader():
    # Same check through the Coat loader (its `meta["category_groups"]` maps DORL's group names to columns).
    root = require_data("coat/train.ascii", "coat/reference_dorl/feature_domination.json")
    pytest.importorskip("recgym.data.coat")
    from recgym.data import load_dataset

    ds = load_dataset("coat", data_dir=root)
    ref = json.loads((root / "coat/reference_dorl/feature_domination.json").read_text())
    groups = ds.meta["category_groups"]
    assert set(groups) == set(ref)
    items, rewards = ds.train["item"].to_numpy(), ds.train["reward"].to_numpy()
    for group, cols in groups.items():
        cats = ds.item_categories[:, cols]
        majority = M.majority_categories(items, rewards, cats, None)
        assert majority.tolist() == _dorl_majority(ref[group]), group
    # With the dataset's own positive threshold (ratings >= 4) the set changes: the filter matters.
    jt = ds.item_categories[:, groups["jackettype"]]
    positives = M.majority_categories(items, rewards, jt, ds.positive_threshold)
    assert positives.tolist() != _dorl_majority(ref["jackettype"])


def _naive_topn(gt_lists, ranked, k):
    # Per-user loop written from the protocol's definitions (sums divided by the number of evaluated users).
    p = r = n = m = 0.0
    for gt, rank in zip(gt_lists, ranked, strict=True):
        if not gt:
            continue
        hits = [j for j in range(k) if rank[j] in gt]
        p += len(hits) / k
        r += len(hits) / len(gt)
        dcg = sum(1 / math.log2(j + 2) for j in hits)
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(gt), k)))
        n += dcg / idcg
        m += 1 / (hits[0] + 1) if hits else 0.0
    u = len(ranked)
    return {"Precision": p / u, "Recall": r / u, "NDCG": n / u, "MRR": m / u}


def test_ranking_matches_naive_loop():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(30, 25))
    g = rng.random((30, 25)) < 0.15
    g[:3] = False  # some users without ground truth
    ranked = np.argsort(-s, axis=1, kind="stable")
    gt_lists = [set(np.flatnonzero(row)) for row in g]
    rep = M.ranking_report(s, g, ks=(5, 10))
    for k in (5, 10):
        for name, value in _naive_topn(gt_lists, ranked, k).items():
            assert rep[f"{name}@{k}"] == pytest.approx(value, abs=1e-12), (name, k)


def test_ranking_per_user_hand_values_and_mean_matches_report() -> None:
    from recgym.metrics import ranking_per_user

    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4], [0.5, 0.4, 0.3, 0.2]])
    gt = np.array([[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    per = ranking_per_user(scores, gt, ks=(2,))
    # user 0: top-2 = items 0, 1 -> one hit of two; hit at rank 2: (1/log2 3) / (1 + 1/log2 3)
    assert per["Recall@2"].tolist() == [0.5, 0.0, 0.0]
    assert per["NDCG@2"][0] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert per["n_gt"].tolist() == [2.0, 1.0, 0.0]
    rep = M.ranking_report(scores, gt, ks=(2,))
    assert per["Recall@2"].mean() == pytest.approx(rep["Recall@2"])
    assert per["NDCG@2"].mean() == pytest.approx(rep["NDCG@2"])


def test_paired_difference_hand_values() -> None:
    from scipy import stats

    from recgym.metrics import paired_difference

    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 2.0, 2.0, 2.0])
    d = paired_difference(a, b)
    # differences 1, 0, 1, 2: mean 1, sample sd sqrt(2/3); t(0.975, 3) = 3.182446
    sd = np.sqrt(2 / 3)
    half = 3.1824463 * sd / 2
    assert d["mean"] == pytest.approx(1.0) and d["sd"] == pytest.approx(sd) and d["n"] == 4
    assert d["ci_low"] == pytest.approx(1 - half, rel=1e-6) and d["ci_high"] == pytest.approx(1 + half, rel=1e-6)
    assert d["relative"] == pytest.approx(1 / 1.5) and (d["n_better"], d["n_worse"]) == (3, 0)
    # the interval is the one-sample t interval of the differences
    lo, hi = stats.t.interval(0.9, 3, loc=1.0, scale=sd / 2)
    d90 = paired_difference(a, b, level=0.9)
    assert (d90["ci_low"], d90["ci_high"]) == pytest.approx((lo, hi))
    # identical models: zero difference, zero-width interval
    same = paired_difference(a, a)
    assert (same["mean"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference(a, b[:3])
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference(a[:1], b[:1])
    with pytest.raises(ValueError, match="level"):
        paired_difference(a, b, level=95)
    with pytest.raises(ValueError, match="finite"):
        paired_difference(np.array([1.0, np.nan]), np.array([0.0, 0.0]))
