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


def test_shaping_scale_rows_match_the_envs():
    """The probe on a small synthetic world with a tiny DeepFM: mbpo's shaped reward is max(0, mean - MIN_R)
    (no penalties), the ground-truth side is the GT env's, entropies lie in [E_min, E_max]."""
    from recgym.benchmarks.quality import shaping_scale

    kw = {"dataset_kwargs": {"n_users": 40, "n_items": 60, "seed": 0},
          "world_model_config": {"epochs": 1, "n_members": 2, "dnn": (8,)}}
    rows = shaping_scale(["synthetic"], ["mbpo"], episodes=20, env_kwargs=kw)
    assert len(rows) == 1
    r = rows[0]
    assert (r["preset"], r["shift"], r["lambda_u"], r["lambda_ent"]) == ("mbpo", "dorl", 0.0, 0.0)
    assert r["train_reward"] >= 0 and r["eval_reward"] > 0
    assert r["E_min"] <= r["E_loc_mean"] <= r["E_max"] == 2.0 and r["E_loc_std"] >= 0
    # same policy stream and same users: the GT side does not depend on the preset
    again = shaping_scale(["synthetic"], ["mbpo"], episodes=20, env_kwargs=kw)[0]
    assert again["eval_reward"] == r["eval_reward"] and again["train_reward"] == r["train_reward"]
