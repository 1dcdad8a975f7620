"""Per-user DiffRec-protocol metrics: the arrays behind `evaluate_scores`'s means, paired user by user."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recgym.metrics import paired_difference
from recgym.recommenders.ranking import DiffRecSplits, evaluate_scores, evaluate_scores_per_user


def _hand_splits() -> DiffRecSplits:
    # 3 users, 5 items. user 0: train {0}, valid {1, 2}, test {3}; user 1: train {4}, no valid, test {0};
    # user 2: train {1}, valid {3}, no test
    train = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0]], dtype=np.float32)
    valid = np.array([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 0]], dtype=bool)
    test = np.array([[0, 0, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
    return DiffRecSplits("hand", train, valid, test, "fp-hand")


def test_per_user_hand_values_and_means() -> None:
    sp = _hand_splits()
    scores = torch.tensor([[9.0, 1.0, 5.0, 8.0, 7.0], [1.0, 2.0, 3.0, 4.0, 9.0], [0.0, 9.0, 1.0, 2.0, 3.0]])
    per = evaluate_scores_per_user(lambda x, u: scores[u], sp, ks=(1, 2), batch_size=2)
    # only users with ground truth in the split, in id order
    assert per["valid"]["users"].tolist() == [0, 2] and per["test"]["users"].tolist() == [0, 1]
    # valid: user 0 ranks 3, 4, 2, ... (no hit in 2); user 2 ranks 4, 3 (hit at rank 2 of |GT| = 1)
    assert per["valid"]["Recall@2"].tolist() == [0.0, 1.0]
    assert per["valid"]["NDCG@2"][1] == pytest.approx(1 / np.log2(3))
    # test (train + valid masked): user 0 ranks 3 first (hit); user 1 ranks 3, 2 (no hit)
    assert per["test"]["Recall@1"].tolist() == [1.0, 0.0]
    avg = evaluate_scores(lambda x, u: scores[u], sp, ks=(1, 2))
    for w in ("valid", "test"):
        for m in ("Recall@1", "Recall@2", "NDCG@1", "NDCG@2"):
            assert per[w][m].mean() == pytest.approx(avg[w][m])
    only = evaluate_scores_per_user(lambda x, u: scores[u], sp, ks=(2,), which=("test",))
    assert set(only) == {"test"} and set(only["test"]) == {"users", "Recall@2", "NDCG@2"}
    with pytest.raises(ValueError, match="which"):
        evaluate_scores_per_user(lambda x, u: scores[u], sp, ks=(2,), which=("train",))


def test_paired_difference_of_two_scorers() -> None:
    sp = _hand_splits()
    good = torch.tensor([[0.0, 1.0, 5.0, 8.0, 7.0], [9.0, 2.0, 3.0, 4.0, 0.0], [0.0, 0.0, 1.0, 2.0, 3.0]])
    bad = -good
    a = evaluate_scores_per_user(lambda x, u: good[u], sp, ks=(1,), which=("test",))["test"]
    b = evaluate_scores_per_user(lambda x, u: bad[u], sp, ks=(1,), which=("test",))["test"]
    d = paired_difference(a["Recall@1"], b["Recall@1"])
    assert a["Recall@1"].tolist() == [1.0, 1.0] and b["Recall@1"].tolist() == [0.0, 0.0]
    assert d["mean"] == 1.0 and d["ci_low"] == d["ci_high"] == 1.0 and d["n_better"] == 2
