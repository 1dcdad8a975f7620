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
from recgym.worldmodels.diffusion import DiffusionWorldModel, Schedule
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


TINY_DIFF = {"epochs": 3, "n_samples": 4, "steps": 5, "sample_steps": 5, "hidden": 16, "embed_dim": 8}
TINY_FM = {"epochs": 1, "n_members": 2, "dnn": (8,), "batch_size": 256}


class _KnownSpread(nn.Module):
    """A mock denoiser: row block s of the batched S chains predicts the constant s (ignores its input)."""

    def __init__(self, s: int) -> None:
        super().__init__()
        self.s = s

    def forward(self, x_t, t, ctx, mask, users):  # noqa: ANN001
        b = x_t.shape[0] // self.s
        return torch.arange(self.s, dtype=torch.float32).repeat_interleave(b)[:, None].expand_as(x_t).clone()


def test_diffusion_uncertainty_is_the_spread_of_the_samples() -> None:
    s = 5
    m = DiffusionWorldModel({"n_samples": s, "steps": 4, "sample_steps": 4, "predict_chunk_elems": 3 * s * 6})
    m.net = _KnownSpread(s)
    m.scale = 2.0
    x0, mask = torch.zeros(7, 6), torch.zeros(7, 6)
    sched = Schedule(4, 1.0, 0.01, 0.3, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    mean, unc = m.sample_statistics(x0, mask, torch.arange(7), sched, gen)  # chunks of 3 rows
    # samples 0..4 (times scale 2): mean 4, population std 2*sqrt(2)
    assert torch.allclose(mean, torch.full((7, 6), 4.0))
    assert torch.allclose(unc, torch.full((7, 6), 2.0 * math.sqrt(2.0)))


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
    with pytest.raises(ValueError, match="sample_steps"):
        DiffusionWorldModel({"steps": 3, "sample_steps": 5})
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


def test_synthetic_diffusion_uncertainty_higher_far_from_logs() -> None:
    """R3S's claim on the synthetic world: the spread is larger on unlogged pairs than on logged ones,
    and largest on items the logs (almost) never show."""
    from recgym.data import load_dataset

    ds = load_dataset("synthetic", n_users=150, n_items=120, seed=0)
    m = DiffusionWorldModel({"epochs": 40, "n_samples": 8}).fit(ds)
    _, unc = m.predict()
    logged = torch.as_tensor(ds.train_matrix(binary=True)).bool()
    pop = logged.sum(0)
    rare = pop <= torch.quantile(pop.float(), 0.1)
    u_logged = float(unc[logged].mean())
    u_unlogged = float(unc[~logged].mean())
    u_rare = float(unc[:, rare][~logged[:, rare]].mean())
    assert u_unlogged > 1.5 * u_logged
    assert u_rare > u_logged
