"""DiffRec: schedule, posterior, log-prob, training, the ranking protocol, EASE / MostPop, the checkpoint cache."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from recgym.data.base import LoggedDataset
from recgym.recommenders import (
    EASE,
    CheckpointMismatchError,
    DiffRec,
    DiffRecConfig,
    DiffRecSplits,
    MostPop,
    checkpoint_path,
    diffrec_schedule,
    evaluate_diffrec,
    evaluate_scores,
    fit_or_load_diffrec,
    make_splits,
    train_diffrec,
    tune_ease,
)
from recgym.recommenders.train import _ImportanceSampler
from tests.conftest import require_data

torch.set_num_threads(1)
TINY = DiffRecConfig(hidden=(32,), steps=5, batch_size=50, max_epochs=4, eval_every=2, patience=10)


def _splits(train: np.ndarray, valid: np.ndarray, test: np.ndarray, name: str = "hand") -> DiffRecSplits:
    return DiffRecSplits(name, train.astype(np.float32), valid.astype(bool), test.astype(bool), "fp-" + name)


@pytest.fixture(scope="module")
def synth() -> LoggedDataset:
    from recgym.data import load_dataset

    return load_dataset("synthetic")  # 500 users x 400 items


# ----------------------------------------------------------------------------------------------- schedule


def test_diffrec_schedule_hand_values() -> None:
    cfg = dict(hidden=(8,), steps=3, noise_scale=0.1, noise_min=0.1, noise_max=0.3)
    s = diffrec_schedule(DiffRecConfig(**cfg, beta_fixed=False))
    # 1 - alpha_bar is linear: 0.01, 0.02, 0.03
    assert np.allclose(1 - s.array("alphas_cumprod"), [0.01, 0.02, 0.03], atol=1e-12)
    assert np.allclose(s.array("betas"), [0.01, 1 - 0.98 / 0.99, 1 - 0.97 / 0.98], atol=1e-12)
    fixed = diffrec_schedule(DiffRecConfig(**cfg))
    assert fixed.array("betas")[0] == 1e-5 and np.allclose(fixed.array("betas")[1:], s.array("betas")[1:])
    linear = diffrec_schedule(DiffRecConfig(**cfg, noise_schedule="linear", beta_fixed=False))
    assert np.allclose(linear.array("betas"), [0.01, 0.02, 0.03], atol=1e-12)
    # the ML-1M schedule: posterior std about 8e-4, far below any useful exploration noise
    ml = diffrec_schedule(DiffRecConfig())
    std = np.exp(0.5 * ml.array("posterior_log_variance_clipped"))
    assert np.all((std > 7e-4) & (std < 9e-4))
    with pytest.raises(ValueError, match="noise_schedule"):
        DiffRecConfig(noise_schedule="cosine")


class _Oracle(nn.Module):
    """A 'denoiser' that always predicts the given x0."""

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__()
        self.x0 = x0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.x0.expand_as(x)


def test_posterior_mean_of_noiseless_path_is_sqrt_alpha_bar_prev() -> None:
    # with x_t = sqrt(ab_t) x0 and a perfect x0 prediction, mu = sqrt(ab_{t-1}) x0 (algebra of q(x_{t-1}|x_t,x0))
    model = DiffRec(6, DiffRecConfig(hidden=(8,), steps=10, noise_scale=0.5, noise_min=0.01, noise_max=0.2))
    x0 = torch.rand(1, 6, generator=torch.Generator().manual_seed(0))
    ab = model.schedule.array("alphas_cumprod")
    ab_prev = model.schedule.array("alphas_cumprod_prev")
    for t in (9, 5, 1, 0):
        x_t = math.sqrt(ab[t]) * x0
        mu = model.posterior_mean(x_t, t, denoiser=_Oracle(x0))
        assert torch.allclose(mu, math.sqrt(ab_prev[t]) * x0, atol=1e-6)


def test_log_prob_is_the_gaussian_posterior_and_reductions() -> None:
    model = DiffRec(7, DiffRecConfig(hidden=(8,), steps=4))
    model.denoiser.eval()
    g = torch.Generator().manual_seed(1)
    x_t = torch.rand(3, 7, generator=g)
    t = torch.tensor([3, 1, 0])
    mu = model.posterior_mean(x_t, t)
    x_prev = mu + 1e-3 * torch.randn(3, 7, generator=g)
    std = model.posterior_std(t)
    ref = torch.distributions.Normal(mu, std[:, None]).log_prob(x_prev)
    assert torch.allclose(model.log_prob(x_prev, x_t, t, reduce="sum"), ref.sum(1), rtol=1e-5)
    assert torch.allclose(model.log_prob(x_prev, x_t, t), ref.mean(1), rtol=1e-5)  # default "mean"
    assert torch.allclose(model.log_prob(x_prev, x_t, t, reduce="none"), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="reduce"):
        model.log_prob(x_prev, x_t, t, reduce="max")
    # t = 0 uses the clipped variance of t = 1 (its own is 0)
    assert torch.equal(model.posterior_std(0), model.posterior_std(1))


def test_denoiser_architecture_matches_reference() -> None:
    model = DiffRec(50, DiffRecConfig())
    shapes = [tuple(layer.weight.shape) for layer in model.denoiser.layers]
    assert shapes == [(600, 60), (200, 600), (600, 200), (50, 600)]
    assert tuple(model.denoiser.emb_layer.weight.shape) == (10, 10)
    assert model.denoiser.drop.p == 0.5 and model.steps == 40


def test_chain_is_deterministic_and_start_noise() -> None:
    model = DiffRec(9, TINY)
    h = (torch.rand(4, 9, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    a, b = model.predict(h), model.predict(h)
    assert torch.equal(a, b)
    # manual chain of posterior means from the clean history
    model.denoiser.eval()
    x = h.clone()
    for t in reversed(range(model.steps)):
        x = model.posterior_mean(x, t)
    assert torch.equal(x, a)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.start_state(h, 2, g1), model.start_state(h, 2, g2))
    assert not torch.equal(model.start_state(h, 2, torch.Generator().manual_seed(4)), h)
    with pytest.raises(ValueError, match="start_noise"):
        model.start_state(h, model.steps + 1)


def test_importance_sampler_keeps_last_ten_losses_in_order() -> None:
    s = _ImportanceSampler(2, torch.device("cpu"))
    s.update(torch.tensor([0] * 7 + [1] * 3), torch.arange(10.0))
    s.update(torch.tensor([0] * 6 + [1] * 8), torch.arange(100.0, 114.0))
    # sequential semantics: t=0 saw 0..6 then 100..105 -> last ten = 3..6, 100..105
    assert s.loss_hist[0].tolist() == [3, 4, 5, 6, 100, 101, 102, 103, 104, 105]
    # t=1 saw 7, 8, 9 then 106..113 -> last ten = 8, 9, 106..113
    assert s.loss_hist[1].tolist() == [8, 9, *range(106, 114)] and int(s.count[1]) == 10
    assert s.warm
    t, pt = s.sample(1000, torch.Generator().manual_seed(0), torch.device("cpu"))
    # p_t proportional to RMS of the history (t=0 smaller) mixed with 0.001 uniform
    assert 0.3 < float((t == 0).float().mean()) < 0.5 and torch.all(pt > 0)


# ----------------------------------------------------------------------------------------------- protocol


def test_evaluation_protocol_hand_computed() -> None:
    # 2 users, 5 items. user 0: train {0}, valid {1, 2}, test {3}; user 1: train {4}, valid {}, test {0}
    train = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]])
    valid = np.array([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    test = np.array([[0, 0, 0, 1, 0], [1, 0, 0, 0, 0]])
    sp = _splits(train, valid, test)
    scores = torch.tensor([[9.0, 1.0, 5.0, 8.0, 7.0], [1.0, 2.0, 3.0, 4.0, 9.0]])
    res = evaluate_scores(lambda x, u: scores[u], sp, ks=(1, 2))
    # valid, user 0 (user 1 has no GT and is excluded): ranking without item 0 -> 3, 4, 2, 1
    assert res["valid"]["users"] == 1
    assert res["valid"]["Recall@1"] == 0.0 and res["valid"]["Recall@2"] == 0.0
    # test, mask train+valid: user 0 ranks 3 first (hit), user 1 ranks 3, 2, 1, 0 (no hit at 2)
    assert res["test"]["users"] == 2
    assert res["test"]["Recall@1"] == pytest.approx(0.5) and res["test"]["NDCG@2"] == pytest.approx(0.5)
    res3 = evaluate_scores(lambda x, u: scores[u], sp, ks=(4,))
    # valid user 0 @4: hits at ranks 3 (item 2) and 4 (item 1), |GT| = 2
    ndcg = (1 / math.log2(4) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert res3["valid"]["Recall@4"] == pytest.approx(1.0) and res3["valid"]["NDCG@4"] == pytest.approx(ndcg)
    with pytest.raises(ValueError, match="catalogue"):
        evaluate_scores(lambda x, u: scores[u], sp, ks=(6,))
    # batching does not change the numbers
    assert evaluate_scores(lambda x, u: scores[u], sp, ks=(1, 2), batch_size=1) == res


def test_ease_and_mostpop() -> None:
    x = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]], dtype=np.float32)
    ease = EASE(lam=0.5).fit(x)
    g = x.T.astype(np.float64) @ x + 0.5 * np.eye(4)
    p = np.linalg.inv(g)
    b = np.eye(4) - p / np.diag(p)[None, :]
    assert torch.allclose(ease.B, torch.tensor(b, dtype=torch.float32), atol=1e-5)
    assert torch.all(torch.diag(ease.B) == 0)
    pop = MostPop().fit(x).score(torch.zeros(2, 4))
    assert pop[0].tolist() == [2.0, 3.0, 3.0, 2.0] and torch.equal(pop[0], pop[1])
    with pytest.raises(ValueError, match="lambda"):
        EASE(0.0)


def test_make_splits_carves_valid_from_train(synth: LoggedDataset) -> None:
    a = make_splits(synth, 0.2, 0)
    b = make_splits(synth, 0.2, 0)
    c = make_splits(synth, 0.2, 1)
    assert a.fingerprint == b.fingerprint and a.fingerprint != c.fingerprint
    assert not np.any((a.train > 0) & a.valid) and not np.any(a.test & (a.valid | (a.train > 0)))
    pos = synth.train[synth.train["reward"] >= synth.positive_threshold]
    full = np.zeros_like(a.train, dtype=bool)
    full[pos["user"], pos["item"]] = True
    assert np.array_equal(full, (a.train > 0) | a.valid)
    assert a.meta["valid_source"] == "carved from train"


def test_ml1m_style_valid_split_is_used_as_is() -> None:
    tr = pd.DataFrame({"user": [0, 0, 1], "item": [0, 1, 2], "reward": [1.0, 1.0, 1.0]})
    va = pd.DataFrame({"user": [0], "item": [2], "reward": [1.0]})
    te = pd.DataFrame({"user": [1], "item": [0], "reward": [1.0]})
    ds = LoggedDataset("ml1m", 2, 3, tr, te, None, np.zeros((3, 0), bool), [], "binary", 1.0, "distance", valid=va)
    sp = make_splits(ds)
    assert sp.train.tolist() == [[1, 1, 0], [0, 0, 1]] and sp.valid.tolist() == [[False, False, True], [False] * 3]
    assert sp.test.tolist() == [[False] * 3, [True, False, False]]


# ----------------------------------------------------------------------------------------------- training + cache


def test_training_learns_and_is_deterministic(synth: LoggedDataset) -> None:
    sp = make_splits(synth, 0.1, 0)
    cfg = DiffRecConfig(hidden=(200,), steps=10, batch_size=100, max_epochs=10, eval_every=5)
    m1, r1 = train_diffrec(sp, cfg)
    m2, r2 = train_diffrec(sp, cfg)
    for (k, v), (_, w) in zip(m1.denoiser.state_dict().items(), m2.denoiser.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    assert r1.valid == r2.valid and r1.best_epoch in (5, 10)
    pop = evaluate_scores(MostPop().fit(sp.train).score, sp)
    assert r1.valid["Recall@20"] > pop["valid"]["Recall@20"] + 0.02
    assert r1.history[0]["loss"] > r1.history[-1]["loss"]
    assert evaluate_diffrec(m1, sp) == {"valid": r1.valid, "test": r1.test}


def test_checkpoint_cache_roundtrip_and_mismatch(synth: LoggedDataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path))
    sp = make_splits(synth, TINY.valid_fraction, TINY.split_seed)
    model, _ = fit_or_load_diffrec(synth, TINY, progress=False)
    path = checkpoint_path(sp, TINY)
    assert path.is_file() and path.parent == tmp_path / "diffrec" and sp.fingerprint in path.name
    assert not [p for p in os.listdir(path.parent) if p.endswith(".tmp")]
    again, _ = fit_or_load_diffrec(synth, TINY, progress=False)
    x = torch.from_numpy(sp.train[:5])
    assert torch.equal(model.predict(x), again.predict(x))
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        DiffRec.load(path, expect_fingerprint="another")
    with pytest.raises(CheckpointMismatchError, match="steps"):
        DiffRec.load(path, expect_fingerprint=sp.fingerprint, expect_config=DiffRecConfig(**{**TINY.to_dict(),
                                                                                             "steps": 6}))
    # 200 garbled bytes in the middle of the file, same size: refitted with a warning naming the file
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 200] = bytes(b ^ 0x5A for b in data[mid:mid + 200])
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=rf"unusable DiffRec cache: {path}: sha256 .* does not match"):
        garbled, _ = fit_or_load_diffrec(synth, TINY, progress=False)
    assert torch.equal(garbled.predict(x), model.predict(x))
    # a corrupt cache is rebuilt (with a warning), not trusted
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unusable DiffRec cache"):
        rebuilt, _ = fit_or_load_diffrec(synth, TINY, progress=False)
    assert torch.equal(rebuilt.predict(x), model.predict(x))
    assert DiffRec.load(path).meta["fingerprint"] == sp.fingerprint


def test_tune_ease_picks_best_validation_lambda(synth: LoggedDataset) -> None:
    sp = make_splits(synth, 0.1, 0)
    ease, ev, grid = tune_ease(sp, lambdas=(1.0, 50.0, 5000.0))
    assert grid[ease.lam] == max(grid.values()) and ev["valid"]["Recall@20"] == pytest.approx(grid[ease.lam])


@pytest.mark.slow
def test_ml1m_pretraining_reaches_reference_accuracy() -> None:
    require_data("ml-1m/diffrec/ml-1m_clean/train_list.npy")
    from recgym.recommenders import pretrain

    _, metrics = pretrain("ml1m", progress=False)
    assert metrics["test"]["Recall@20"] >= 0.17 and metrics["test"]["NDCG@20"] >= 0.11
