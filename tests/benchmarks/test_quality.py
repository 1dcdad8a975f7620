"""The greedy-return helpers of `recgym.benchmarks.quality`, on a hand-computed case."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recgym.benchmarks.quality import greedy_returns, parse_sets, reference_returns

GT = np.array([[5.0, 1.0, 3.0], [0.0, 4.0, 2.0]])
DS = SimpleNamespace(ground_truth=GT, n_items=3, train=pd.DataFrame({"item": [2, 2, 1]}))


class _Model:
    def predict(self):
        mean = torch.tensor([[1.0, 3.0, 2.0], [3.0, 2.0, 1.0]])
        unc = torch.tensor([[0.0, 2.5, 0.0], [0.0, 0.0, 0.0]])
        return mean, unc


def test_greedy_returns_hand_computed():
    out = greedy_returns(_Model(), DS, k=2)
    # mean: user 0 -> items 1, 2 (1 + 3); user 1 -> items 0, 1 (0 + 4); mean over users 4
    # mean - unc: user 0 -> items 2, 0 (3 + 5) = 8; user 1 unchanged 4; mean 6
    assert out == {"greedy_mean": 4.0, "greedy_mean_minus_unc": 6.0}


def test_reference_returns_hand_computed():
    out = reference_returns(DS, k=2)
    assert out["optimal"] == pytest.approx((8 + 6) / 2)
    assert out["popularity"] == pytest.approx(((3 + 1) + (2 + 4)) / 2)  # items 2 then 1 for everyone
    assert out["random"] == pytest.approx(2 * GT.mean())


def test_parse_sets_names_the_expected_form():
    assert parse_sets(["diffusion.unobserved_weight=0", "mf.epochs=3"]) == {
        "diffusion": {"unobserved_weight": 0}, "mf": {"epochs": 3}}
    with pytest.raises(ValueError, match="KIND.FIELD=VALUE"):
        parse_sets(["unobserved_weight=0"])
