"""World models: known-spread uncertainty, kNN by hand, DeepFM ensemble reduction, caching, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from recgym.worldmodels import (
    NotFittedError,
    WorldModelCacheError,
    cache_path,
    fit_or_load,
    load_world_model,
    world_model_class,
)
from recgym.worldmodels.deepfm import DeepFMEnsemble
from recgym.worldmodels.diffusion import ContextDenoiser, DiffusionWorldModel, Schedule
from recgym.worldmodels.knn import KNNShaping
from recgym.worldmodels.report import quality
from tests.worldmodels.helpers import tiny_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread avoids oversubscription on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY_DIFF = {"epochs": 3, "n_samples": 4, "steps": 5, "hidden": 16, "embed_dim": 8}
TINY_FM = {"epochs": 1, "n_members": 2, "dnn": (8,), "batch_size": 256}


class _CountBelief(nn.Module):
    """A mock denoiser: the belief of every entry is N(|context|, ~0): each chain returns its context size."""

    @staticmethod
    def belief(t, ctx, ctx_mask, users):  # noqa: ANN001, ANN205
        mu = ctx_mask.sum(1, keepdim=True).expand_as(ctx).clone()
        return mu, torch.full_like(mu, -30.0)


def test_diffusion_reads_logged_entries_only_from_chains_that_hide_them() -> None:
    s, k = 6, 2
    m = DiffusionWorldModel({"n_samples": s, "folds": k, "steps": 4, "predict_chunk_elems": 2 * s * 5})
    m.net = _CountBelief()
    m.loc, m.scale = 1.0, 2.0
    mask = torch.tensor([[1.0, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
    # folds of the logged entries: user 0 -> {0: items 0,1; 1: item 2}, user 1 -> item 0 in fold 1, user 2 -> 2 + 2
    fold = torch.tensor([[0, 0, 1, 0, 1], [1, 0, 0, 0, 0], [0, 1, 0, 1, 0]])
    m.fold_of = lambda shape, gen, device: fold[: shape[0]] if shape[0] == 2 else fold[2:]  # chunks of 2 rows
    sched = Schedule(4, 1.0, 0.001, 0.995, torch.device("cpu"))
    mean, unc = m.sample_statistics(torch.zeros(3, 5), mask, torch.arange(3), sched, torch.Generator().manual_seed(0))
    # standardised sample = context size of the chain's fold (fold 0 hides fold 0): user 0 -> 1 (fold 0), 2 (fold 1)
    want0 = torch.tensor([1.0, 1.0, 2.0, 1.5, 1.5])  # logged: own fold's chains only; unlogged: all chains
    assert torch.allclose(mean[0], 1.0 + 2.0 * want0, atol=1e-4)
    sd = math.sqrt(6 * 0.25 / 5)  # unbiased std of three 1s and three 2s
    assert torch.allclose(unc[0], 2.0 * torch.tensor([0, 0, 0, sd, sd]), atol=1e-3)
    # user 1: fold 0 keeps item 0 (context 1), fold 1 hides it (context 0); item 0 is read from fold 1 only
    assert torch.allclose(mean[1], 1.0 + 2.0 * torch.tensor([0.0, 0.5, 0.5, 0.5, 0.5]), atol=1e-4)
    assert torch.allclose(mean[2], torch.full((5,), 1.0 + 2.0 * 2.0), atol=1e-4)
    assert float(unc[2].max()) < 1e-3


def test_posterior_mean_by_hand_and_the_chain_samples_the_belief() -> None:
    x_t, ab = torch.tensor([0.3]), torch.tensor(0.5)
    got = ContextDenoiser.posterior_mean(x_t, ab, torch.tensor([1.0]), torch.tensor([0.0]))
    assert float(got) == pytest.approx(1.0 + math.sqrt(0.5) / 1.0 * (0.3 - math.sqrt(0.5)), abs=1e-6)

    class _Const(nn.Module):
        @staticmethod
        def belief(t, ctx, ctx_mask, users):  # noqa: ANN001, ANN205
            return torch.full_like(ctx, 0.5), torch.full_like(ctx, math.log(0.25))


    m = DiffusionWorldModel({"n_samples": 400, "folds": 2, "steps": 20})
    m.net = _Const()
    sched = Schedule(20, 1.0, 0.001, 0.995, torch.device("cpu"))
    smp, tgt = m.reverse_samples(torch.zeros(1, 50), torch.zeros(1, 50), torch.zeros(1, 50, dtype=torch.long),
                                 torch.arange(1), sched, torch.Generator().manual_seed(0))
    assert smp.shape == (400, 1, 50) and bool((tgt == 1).all())
    # ancestral sampling with the exact posterior mean draws (close to) the belief N(0.5, 0.5^2)
    assert float(smp.mean()) == pytest.approx(0.5, abs=0.02)
    assert float(smp.std()) == pytest.approx(0.5, abs=0.03)


def test_diffusion_does_not_copy_the_logged_rating_it_predicts() -> None:
    """Ratings with no structure at all: a model that saw a pair's own rating would reproduce it; this one can
    only predict it from the user's other ratings, so its mean at logged pairs is unrelated to the rating."""
    import dataclasses

    rng = np.random.default_rng(0)
    base = tiny_dataset(n_users=60, n_items=30, per_user=12)
    train = base.train.copy()
    train["reward"] = rng.integers(1, 6, size=len(train)).astype(np.float32)
    ds = dataclasses.replace(base, train=train)
    m = DiffusionWorldModel({**TINY_DIFF, "epochs": 20}).fit(ds)
    mean, _ = m.predict()
    pred = mean[train["user"].to_numpy().copy(), train["item"].to_numpy().copy()].numpy()
    assert abs(np.corrcoef(pred, train["reward"].to_numpy())[0, 1]) < 0.2
    assert float(mean.min()) >= 1.0 and float(mean.max()) <= 5.0  # clipped to the training reward range


def test_schedule_matches_linear_var_definition() -> None:
    sc = Schedule(10, 0.5, 0.01, 0.2, torch.device("cpu"))
    want = 1 - torch.linspace(0.005, 0.1, 10, dtype=torch.float64)
    assert torch.allclose(sc.abar.double()[1:], want[1:], atol=1e-6)
    assert float(sc.post_std.min()) >= 0


def test_knn_by_hand() -> None:
    src = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mean, dist = KNNShaping.shape_rewards(src, None, k=1)
    # user 0's nearest is user 1 (cos 1/sqrt(5)); user 1's nearest is user 0; user 2 is orthogonal to all
    assert torch.allclose(mean[0], src[1])
    assert torch.allclose(mean[1], src[0])
    assert torch.allclose(dist[0], torch.full((3,), 1 - 1 / math.sqrt(5)))
    assert torch.allclose(dist[2], torch.ones(3))  # similarity 0: no weight, maximal distance
    # with an observed mask, only neighbours who logged the item count
    obs = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mean2, dist2 = KNNShaping.shape_rewards(src, obs, k=1)
    assert float(mean2[0, 2]) == 0.0 and float(dist2[0, 2]) == 1.0  # neighbour 1 never logged item 2
    assert float(mean2[1, 2]) == 2.0


def test_deepfm_reduces_members_by_mean_and_max_variance() -> None:
    ds = tiny_dataset()
    m = DeepFMEnsemble(TINY_FM, seed=3).fit(ds)
    mean, unc = m.predict()
    assert mean.shape == (ds.n_users, ds.n_items) and mean.dtype == torch.float32
    u = torch.tensor([[0, 5, 39]] * 2)
    i = torch.tensor([[0, 7, 29]] * 2)
    with torch.no_grad():
        mu, logvar = m.net(u, i, None, m.item_feats)
    assert torch.allclose(mean[u[0], i[0]], mu.mean(0), atol=1e-5)
    assert torch.allclose(unc[u[0], i[0]], torch.exp(logvar).max(0).values, rtol=1e-4)
    m2 = DeepFMEnsemble(TINY_FM, seed=3).fit(ds)
    assert torch.equal(m2.predict()[0], mean)  # same seed, same model


def test_predict_before_fit_and_nan_are_errors() -> None:
    m = world_model_class("mf")()
    with pytest.raises(NotFittedError, match="before fit"):
        m.predict()
    m = world_model_class("mf")({"epochs": 5}).fit(tiny_dataset())
    m._mean = m._mean.clone()
    m._mean[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        m.predict()


def test_bad_config_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown DiffusionConfig field"):
        DiffusionWorldModel({"epochz": 3})
    with pytest.raises(ValueError, match="folds"):
        DiffusionWorldModel({"folds": 1})
    with pytest.raises(ValueError, match="ctx_drop"):
        DiffusionWorldModel({"ctx_drop": 0.0})
    with pytest.raises(ValueError, match="unknown world model kind"):
        world_model_class("gan")


def test_cache_round_trip_mismatch_and_corruption(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = tiny_dataset(seed=1, name="tinyc")
    m1 = fit_or_load("diffusion", ds, TINY_DIFF, progress=False)
    path = cache_path("diffusion", ds, TINY_DIFF)
    assert path.is_file()
    cls = world_model_class("diffusion")

    def boom(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("refitted although a valid cache exists")

    monkeypatch.setattr(cls, "_fit", boom)
    m2 = fit_or_load("diffusion", ds, TINY_DIFF, progress=False)
    assert torch.equal(m1.predict()[0], m2.predict()[0]) and torch.equal(m1.predict()[1], m2.predict()[1])
    # a cache from another dataset or config is refused with a clear error
    other = tiny_dataset(seed=2, name="tinyc")
    with pytest.raises(WorldModelCacheError, match="another dataset"):
        load_world_model(path, dataset=other)
    with pytest.raises(WorldModelCacheError, match="config"):
        load_world_model(path, config={**TINY_DIFF, "epochs": 4})
    with pytest.raises(WorldModelCacheError, match="expected 'mf'"):
        world_model_class("mf")().load(path)
    monkeypatch.undo()
    # 200 garbled bytes in the middle of the file, same size: the file still loads with torch (weights of 1e24),
    # only its digest tells; it is refitted with a warning naming it
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 200] = bytes(b ^ 0x5A for b in data[mid:mid + 200])
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=rf"unusable diffusion world-model cache: {path}: sha256 .* does not match"):
        m4 = fit_or_load("diffusion", ds, TINY_DIFF, progress=False)
    assert torch.equal(m4.predict()[0], m1.predict()[0])
    # a corrupt cache is rebuilt, not trusted
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unusable diffusion world-model cache"):
        m3 = fit_or_load("diffusion", ds, TINY_DIFF, progress=False)
    assert torch.equal(m3.predict()[0], m1.predict()[0])  # same seed -> same refit
    assert load_world_model(path).fitted


def test_quality_report_values() -> None:
    ds = tiny_dataset()
    m = world_model_class("mf")({"epochs": 5}).fit(ds)
    q = quality(m, ds)
    mean = m.predict()[0].numpy()
    y = ds.test["reward"].to_numpy()
    pred = mean[ds.test["user"].to_numpy(), ds.test["item"].to_numpy()]
    assert q["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - y) ** 2))), rel=1e-5)
    assert 0.0 <= q["auc"] <= 1.0 and q["n"] == len(y)


def test_ranking_quality_by_hand() -> None:
    import types

    import pandas as pd

    from recgym.worldmodels.report import ranking_quality

    train = pd.DataFrame({"user": [0, 1], "item": [0, 3], "reward": [4.0, 4.0]})
    test = pd.DataFrame({"user": [0, 0, 0, 1, 1, 1], "item": [0, 1, 2, 0, 1, 2], "reward": [4.0, 5, 1, 3, 1, 2]})
    ds = types.SimpleNamespace(train=train, n_gt_users=2)
    mean = np.array([[9.0, 2, 1, 0], [1, 3, 2, 8]])
    unc = np.array([[0.0, 1, 0, 0], [2, 0, 1, 0]])
    q = ranking_quality(mean, unc, ds, test, k_top=1)
    # (0, 0) is logged: dropped. User 0 ranks item 1 (r 5) over item 2 (r 1): NDCG 1, Spearman 1. User 1 ranks
    # r = 1, 2, 3 (m 3, 2, 1): DCG 1 + 3 / log2(3) + 7 / 2 against 7 + 3 / log2(3) + 1 / 2, Spearman -1.
    l3 = math.log2(3)
    assert q["ndcg5"] == pytest.approx((1 + (1 + 3 / l3 + 3.5) / (7 + 3 / l3 + 0.5)) / 2)
    assert q["user_spearman"] == pytest.approx(0.0)
    assert q["pearson"] == pytest.approx(np.corrcoef([2, 1, 1, 3, 2], [5, 1, 3, 1, 2])[0, 1])
    assert q["top30_logged"] == 1.0  # each user's top item is the one they logged
    assert ranking_quality(mean, unc, ds, test, k_top=4)["top30_logged"] == 0.25


def test_synthetic_diffusion_uncertainty_higher_far_from_logs_and_where_it_errs() -> None:
    """R3S's claim on the synthetic world (whose true rewards are known): the spread is larger on unlogged pairs
    than on logged ones (predicted without their rating, as every pair is), larger still on items the logs
    (almost) never show, and it ranks the pairs by the size of the model's true error."""
    from scipy import stats

    from recgym.data import load_dataset

    ds = load_dataset("synthetic", n_users=150, n_items=120, seed=0)
    m = DiffusionWorldModel({"epochs": 40, "n_samples": 8}).fit(ds)
    mean, unc = m.predict()
    logged = torch.as_tensor(ds.train_matrix(binary=True)).bool()
    pop = logged.sum(0)
    rare = pop <= torch.quantile(pop.float(), 0.1)
    u_logged = float(unc[logged].mean())
    u_unlogged = float(unc[~logged].mean())
    u_rare = float(unc[:, rare][~logged[:, rare]].mean())
    assert u_unlogged > 1.03 * u_logged  # measured 0.72 vs 0.67
    assert u_rare > u_unlogged  # measured 0.77
    err = (mean - torch.as_tensor(ds.ground_truth)).abs()
    assert stats.spearmanr(unc.flatten(), err.flatten())[0] > 0.1  # measured 0.14


def test_deepfm_trains_on_its_feature_rows_and_keeps_them() -> None:
    """The feature fields see the dataset's rows (normalised), not zero placeholders, and a saved model keeps them."""
    import dataclasses
    import tempfile

    ds = tiny_dataset(n_users=12, n_items=9, per_user=3)
    uf = np.arange(24, dtype=np.float32).reshape(12, 2) + 1
    ds = dataclasses.replace(ds, user_features=uf)
    m = DeepFMEnsemble(TINY_FM, seed=0).fit(ds)
    np.testing.assert_allclose(m.user_feats.numpy(), uf / uf.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(m.item_feats.numpy(), ds.item_categories.astype(np.float32))  # one tag each
    with tempfile.TemporaryDirectory() as d:
        m.save(f"{d}/m.pt")
        back = load_world_model(f"{d}/m.pt")
    assert torch.equal(back.user_feats, m.user_feats) and torch.equal(back.item_feats, m.item_feats)
