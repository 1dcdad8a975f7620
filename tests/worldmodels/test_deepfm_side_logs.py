"""DORL's DeepFM user model trained on KuaiRec's side logs (big-matrix rows on videos outside the action space)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.data.base import LoggedDataset
from recgym.data.kuairec import load_kuairec
from recgym.envs.item_actions import log_item_embeddings
from recgym.worldmodels import dataset_fingerprint
from recgym.worldmodels.deepfm import DeepFMEnsemble, _EnsembleDeepFM
from tests.data.fixtures_kuai import write_kuairec_fixture
from tests.worldmodels.helpers import tiny_dataset

# no weight decay and no negatives: an item-table row moves only if a logged row of that item trained it
FM = {"n_members": 2, "embed_dim": 4, "dnn": (16,), "epochs": 3, "batch_size": 64, "weight_decay": 0.0,
      "n_negatives": 0}


@pytest.fixture(scope="module")
def kuairec(tmp_path_factory: pytest.TempPathFactory) -> LoggedDataset:
    fx = write_kuairec_fixture(tmp_path_factory.mktemp("kuairec-side"))
    ds = load_kuairec(fx.root, use_cache=False)
    assert ds.n_side_items == 6 and len(ds.side_train) > 0
    return ds


def _initial_net(m: DeepFMEnsemble, ds: LoggedDataset) -> _EnsembleDeepFM:
    """The fit's initial weights: `fit` seeds torch, then builds the net before any other draw."""
    torch.manual_seed(m.seed)
    c = m.config
    return _EnsembleDeepFM(c.n_members, ds.n_users, ds.n_items + m.n_side_items, 0, int(m.item_feats.shape[1]),
                           c.embed_dim, tuple(c.dnn))


def test_side_items_get_trained_table_rows_and_predictions_stay_on_actions(kuairec: LoggedDataset) -> None:
    ds = kuairec
    m = DeepFMEnsemble(FM, seed=1).fit(ds)
    n, n_side = ds.n_items, ds.n_side_items
    assert m.n_side_items == n_side
    assert m.net.item_emb.shape == (2, n + n_side, 4) and m.net.item_lin.shape == (2, n + n_side)
    # feature rows: action items' categories, then the side items' (normalised multi-hot)
    feats = np.concatenate([ds.item_categories, ds.side_item_categories]).astype(np.float32)
    expect = feats / np.maximum(feats.sum(1, keepdims=True), 1e-8)
    np.testing.assert_allclose(m.item_feats.numpy(), expect, rtol=1e-6)
    init = _initial_net(m, ds)
    moved = (m.net.item_emb.detach() - init.item_emb).abs().amax(dim=(0, 2))
    assert (moved[n:] > 1e-4).all()  # every side item has logged rows: all were trained
    untouched = np.setdiff1d(np.arange(n), ds.train["item"].to_numpy())  # action items with no train rows
    assert torch.equal(moved[untouched], torch.zeros(len(untouched)))
    mean, unc = m.predict()
    assert mean.shape == unc.shape == (ds.n_users, ds.n_items)
    with torch.no_grad():  # predictions are the table's action rows 0..n_items-1
        u = torch.tensor([[0, 3, ds.n_users - 1]] * 2)
        i = torch.tensor([[0, 5, n - 1]] * 2)
        mu, _ = m.net(u, i, None, m.item_feats)
    assert torch.allclose(mean[u[0], i[0]], mu.mean(0), atol=1e-5)
    # the side logs change what the model predicts for the action items (shared user / tag embeddings)
    off = DeepFMEnsemble({**FM, "side_logs": False}, seed=1).fit(ds)
    assert not torch.allclose(off.predict()[0], mean, atol=1e-3)
    # action-item embeddings for continuous agents: the action rows only
    emb = log_item_embeddings(ds, world_model=m)
    assert emb.shape == (n, 4)
    torch.testing.assert_close(emb, torch.nn.functional.normalize(m.net.item_emb[0, :n].detach(), dim=1))


def test_side_logs_off_is_the_fit_without_side_logs(kuairec: LoggedDataset) -> None:
    cfg = {**FM, "epochs": 2, "n_negatives": 2, "weight_decay": 1e-6}
    off = DeepFMEnsemble({**cfg, "side_logs": False}, seed=4).fit(kuairec)
    bare = DeepFMEnsemble(cfg, seed=4).fit(replace(kuairec, side_train=None, side_item_categories=None))
    assert off.n_side_items == bare.n_side_items == 0 and off.net.item_emb.shape[1] == kuairec.n_items
    assert torch.equal(off.predict()[0], bare.predict()[0]) and torch.equal(off.predict()[1], bare.predict()[1])
    on = DeepFMEnsemble(cfg, seed=4).fit(kuairec)  # default side_logs=True
    assert on.n_side_items == kuairec.n_side_items and not torch.equal(on.predict()[0], off.predict()[0])


def test_side_log_model_round_trips_and_is_keyed_by_the_option(kuairec: LoggedDataset, tmp_path: Path) -> None:
    from recgym.worldmodels import cache_path, load_world_model

    m = DeepFMEnsemble(FM, seed=2).fit(kuairec)
    m.save(tmp_path / "m.pt")
    back = load_world_model(tmp_path / "m.pt", dataset=kuairec, config=FM)
    assert back.n_side_items == kuairec.n_side_items and torch.equal(back.net.item_emb, m.net.item_emb)
    assert torch.equal(back.predict()[0], m.predict()[0])
    assert cache_path("deepfm", kuairec, FM) != cache_path("deepfm", kuairec, {**FM, "side_logs": False})


def test_side_logs_with_dense_item_features_are_refused(kuairec: LoggedDataset) -> None:
    ds = replace(kuairec, item_features=np.ones((kuairec.n_items, 3), np.float32))
    with pytest.raises(ValueError, match=r"item_features has no rows for the 6 side items; set "
                                         r"DeepFMConfig.side_logs=False"):
        DeepFMEnsemble(FM).fit(ds)
    assert DeepFMEnsemble({**FM, "side_logs": False}).fit(ds).n_side_items == 0


def test_fingerprint_without_loader_key_covers_side_logs() -> None:
    ds = tiny_dataset(n_users=10, n_items=8, per_user=3)
    side = ds.train.assign(item=ds.train["item"] % 2)
    cats = np.zeros((2, 3), bool)
    with_side = replace(ds, side_train=side, side_item_categories=cats)
    assert dataset_fingerprint(with_side) != dataset_fingerprint(ds)
    other = replace(ds, side_train=side.assign(reward=side["reward"] + 1), side_item_categories=cats)
    assert dataset_fingerprint(other) != dataset_fingerprint(with_side)
