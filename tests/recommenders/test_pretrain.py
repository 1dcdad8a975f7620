"""DiffRec pre-training: the model-selection rules, the time split, the first-use notice and the cache key."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from recgym.data.base import LoggedDataset
from recgym.recommenders import (
    DiffRecConfig,
    DiffRecSplits,
    checkpoint_path,
    estimate_pretrain_seconds,
    evaluate_diffrec,
    evaluate_scores,
    fit_or_load_diffrec,
    make_splits,
    selection_users,
    train_diffrec,
)

torch.set_num_threads(1)
# 8 epochs, evaluated every epoch: a trajectory with a clear rise, so the selection rules have work to do
BASE = dict(hidden=(64,), steps=5, batch_size=100, max_epochs=8, eval_every=1, patience=8)


@pytest.fixture(scope="module")
def splits() -> DiffRecSplits:
    from recgym.data import load_dataset

    return make_splits(load_dataset("synthetic"), 0.1, 0)  # 500 users x 400 items


@pytest.fixture(scope="module")
def runs(splits: DiffRecSplits) -> dict[str, tuple]:
    full = DiffRecConfig(**BASE, selection="full")
    subset = DiffRecConfig(**BASE, selection="subset", select_users=60, select_candidates=3)
    return {"full": train_diffrec(splits, full), "subset": train_diffrec(splits, subset)}


def test_selection_users(splits: DiffRecSplits) -> None:
    with_valid = set(np.flatnonzero(splits.valid.any(1)).tolist())
    assert selection_users(splits, DiffRecConfig(selection="full", select_users=10)) is None
    assert selection_users(splits, DiffRecConfig(select_users=len(with_valid))) is None  # no fewer: full rule
    a = selection_users(splits, DiffRecConfig(select_users=50, seed=3))
    assert a is not None and len(a) == 50 and len(set(a.tolist())) == 50
    assert np.all(np.diff(a) > 0) and set(a.tolist()) <= with_valid
    assert np.array_equal(a, selection_users(splits, DiffRecConfig(select_users=50, seed=3)))
    assert not np.array_equal(a, selection_users(splits, DiffRecConfig(select_users=50, seed=4)))
    with pytest.raises(ValueError, match="selection"):
        DiffRecConfig(selection="best")
    with pytest.raises(ValueError, match="select_users"):
        DiffRecConfig(select_users=0)


def test_evaluate_on_a_user_subset_is_the_mean_over_those_users() -> None:
    # 3 users, 4 items, one valid item each; scores rank item 3 first for everyone
    train = np.zeros((3, 4), np.float32)
    valid = np.zeros((3, 4), bool)
    valid[0, 3] = valid[1, 2] = valid[2, 3] = True
    sp = DiffRecSplits("hand", train, valid, np.zeros((3, 4), bool), "fp")
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat(3, 1)
    ev = evaluate_scores(lambda x, u: scores[u], sp, ks=(1,), which=("valid",), users=[1, 2])
    assert ev["valid"]["users"] == 2 and ev["valid"]["Recall@1"] == pytest.approx(0.5)  # user 2 hits, user 1 not
    assert evaluate_scores(lambda x, u: scores[u], sp, ks=(1,), which=("valid",), users=[0, 2],
                           batch_size=1)["valid"]["Recall@1"] == 1.0
    with pytest.raises(ValueError, match="n_users=3"):
        evaluate_scores(lambda x, u: scores[u], sp, ks=(1,), users=[3])


def test_full_rule_keeps_the_best_validation_epoch(splits: DiffRecSplits, runs: dict[str, tuple]) -> None:
    model, res = runs["full"]
    scores = {h["epoch"]: h["valid"]["Recall@20"] for h in res.history}
    assert res.best_epoch == max(scores, key=lambda e: (scores[e], -e))
    assert res.valid["Recall@20"] == scores[res.best_epoch]
    # the metrics reported (computed during training) are those of the weights returned
    assert evaluate_diffrec(model, splits) == {"valid": res.valid, "test": res.test}
    assert res.selection == {"rule": "full", "screen_users": None, "best_epoch": res.best_epoch}


def test_subset_rule_screens_then_picks_among_candidates(splits: DiffRecSplits, runs: dict[str, tuple]) -> None:
    full_model, full = runs["full"]
    model, res = runs["subset"]
    # evaluation draws no random numbers: both rules see the same training trajectory
    assert [h["loss"] for h in res.history] == [h["loss"] for h in full.history]
    screen = {h["epoch"]: h["valid"]["Recall@20"] for h in res.history}
    full_valid = {h["epoch"]: h["valid"]["Recall@20"] for h in full.history}
    cands = res.selection["candidates"]
    assert res.selection["screen_users"] == 60 and len(cands) == 3
    # the candidates are the 3 best screened epochs, rescored on the full validation split
    top3 = sorted(screen, key=lambda e: (-screen[e], e))[:3]
    assert [c["epoch"] for c in cands] == top3
    for c in cands:
        assert c["screen"] == screen[c["epoch"]] and c["valid"] == pytest.approx(full_valid[c["epoch"]], abs=1e-12)
    assert res.best_epoch == max(cands, key=lambda c: (c["valid"], -c["epoch"]))["epoch"]
    # the final metrics merge the screened users' with the others' (the same numbers, up to rounding)
    direct = evaluate_diffrec(model, splits)
    for split, got in (("valid", res.valid), ("test", res.test)):
        assert got["users"] == direct[split]["users"]
        assert got == pytest.approx(direct[split], abs=1e-12)
    assert res.eval_seconds > 0 and res.train_seconds > 0
    assert res.train_seconds + res.eval_seconds <= res.wall_seconds


def test_selection_rule_is_part_of_the_cache_key(splits: DiffRecSplits) -> None:
    a, b = DiffRecConfig(selection="full"), DiffRecConfig(selection="subset")
    assert a.hash() != b.hash() and checkpoint_path(splits, a) != checkpoint_path(splits, b)
    assert DiffRecConfig(select_users=500).hash() != b.hash()


def test_estimate_is_positive_and_bounded_by_max_epochs(splits: DiffRecSplits) -> None:
    cfg = DiffRecConfig(**{**BASE, "patience": 1})
    state = torch.random.get_rng_state()
    expected, longest = estimate_pretrain_seconds(splits, cfg)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert 0 < expected < longest  # 2 * patience + 5 = 7 epochs < max_epochs = 8
    expected, longest = estimate_pretrain_seconds(splits, DiffRecConfig(**BASE))
    assert expected == longest  # the typical run is capped at max_epochs


def test_first_use_says_what_it_does_and_records_the_time_split(tmp_path, monkeypatch, caplog) -> None:
    from recgym.data import load_dataset

    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path))
    ds: LoggedDataset = load_dataset("synthetic")
    cfg = DiffRecConfig(**{**BASE, "max_epochs": 2})
    with caplog.at_level(logging.INFO, logger="recgym"):
        model, sp = fit_or_load_diffrec(ds, cfg, progress=False)
    path = checkpoint_path(sp, cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "recgym"]
    assert len(lines) == 2
    assert "pre-training DiffRec for synthetic" in lines[0] and "expected about" in lines[0]
    assert str(path) in lines[0] and "pre-trained in" in lines[1] and str(path) in lines[1]
    meta = model.meta
    assert meta["train_seconds"] > 0 and meta["eval_seconds"] > 0
    assert meta["train_seconds"] + meta["eval_seconds"] <= meta["wall_seconds"]
    assert meta["selection"]["rule"] == "subset" and meta["metrics"]["test"]["users"] > 0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recgym"):
        fit_or_load_diffrec(ds, cfg, progress=False)  # cached now: silent
    assert not [r for r in caplog.records if r.name == "recgym"]


def test_env_config_dict_overrides_the_dataset_defaults(tmp_path, monkeypatch) -> None:
    from recgym.envs.denoise import DiffusionDenoiseEnv
    from recgym.recommenders import default_config

    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path))
    env = DiffusionDenoiseEnv("synthetic", 2, config={"hidden": [16], "steps": 3, "max_epochs": 1,
                                                       "selection": "full"}, progress=False)
    cfg, base = env.model.config, default_config("synthetic")
    assert (cfg.hidden, cfg.steps, cfg.max_epochs, cfg.selection) == ((16,), 3, 1, "full")
    assert (cfg.batch_size, cfg.eval_every, cfg.patience) == (base.batch_size, base.eval_every, base.patience)
