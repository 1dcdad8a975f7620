"""EasyRL4Rec's ML-1M environment data (``load_ml1m(source="easyrl4rec")``) on a fixture in the exact GroupLens
format (``UserID::MovieID::Rating::Timestamp``, ``MovieID::Title::Genres``, ``UserID::Gender::Age::...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recgym.data.ml1m import EASYRL4REC_MF, easyrl4rec_split, fit_sgd_mf, load_ml1m
from recgym.envs.rec import GroundTruthRecEnv

N_USERS, N_MOVIES = 40, 60
UNLISTED, UNRATED = 45, 50  # 45: not in movies.dat (never rated); 50: listed, never rated


def _write(root: Path, seed: int = 0) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    d = root / "ml-1m" / "raw"
    d.mkdir(parents=True)
    genres = ["Action", "Comedy", "Drama", "Romance", "Sci-Fi", "Children's"]
    movies = [f"{m}::Movie {m} (199{m % 10})::{genres[m % 6]}|{genres[(m + 2) % 6]}"
              for m in range(1, N_MOVIES + 1) if m != UNLISTED]
    (d / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("iso-8859-1"))
    ages = (1, 18, 25, 35, 45, 50, 56)
    users = [f"{u}::{'FM'[u % 2]}::{ages[u % 7]}::{u % 21}::{10000 + u}" for u in range(1, N_USERS + 1)]
    (d / "users.dat").write_text("\n".join(users) + "\n")
    x, y = rng.normal(0, 0.6, (N_USERS, 2)), rng.normal(0, 0.6, (N_MOVIES, 2))
    rows = []
    rated = [m for m in range(1, N_MOVIES + 1) if m not in (UNLISTED, UNRATED)]
    for u in range(1, N_USERS + 1):
        for m in rng.choice(rated, size=30, replace=False):
            r = int(np.clip(np.round(3 + 2 * x[u - 1] @ y[m - 1] + rng.normal(0, 0.3)), 1, 5))
            rows.append((u, int(m), r, 978300000 + int(rng.integers(0, 10**6))))
    rows.append((N_USERS, N_MOVIES, 4, 978300000))  # the largest ids are rated: shape (40, 60)
    (d / "ratings.dat").write_text("\n".join(f"{u}::{m}::{r}::{t}" for u, m, r, t in rows) + "\n")
    return rows


@pytest.fixture()
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "data"


def test_split_is_scikit_learn_train_test_split() -> None:
    # train_test_split(np.arange(25), test_size=0.1, random_state=42) with scikit-learn 1.9.1
    part90, part10 = easyrl4rec_split(25)
    assert part10.tolist() == [8, 16, 0]
    assert part90.tolist() == [23, 11, 9, 13, 1, 22, 5, 2, 12, 15, 3, 4, 20, 17, 21, 18, 24, 7, 10, 14, 19, 6]
    part90, part10 = easyrl4rec_split(1_000_209)  # real ratings.dat: 900,188 / 100,021 rows
    assert (len(part90), len(part10)) == (900_188, 100_021)


def test_sgd_momentum_steps_by_hand() -> None:
    u, i, r = np.array([0, 1, 1]), np.array([1, 0, 1]), np.array([4.0, 2.0, 5.0])
    p, q = fit_sgd_mf(u, i, r, 2, 2, factors=3, lr=0.1, momentum=0.9, epochs=2, batch_size=3, seed=7)
    w0 = np.random.default_rng(7).standard_normal((4, 3))
    p0, q0 = w0[:2], w0[2:]

    def grads(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = (2 / 3) * ((p[u] * q[i]).sum(1) - r)
        gp, gq = np.zeros_like(p), np.zeros_like(q)
        for k in range(3):
            gp[u[k]] += e[k] * q[i[k]]
            gq[i[k]] += e[k] * p[u[k]]
        return gp, gq

    gp1, gq1 = grads(p0, q0)
    p1, q1 = p0 - 0.1 * gp1, q0 - 0.1 * gq1  # first step: the buffer is the gradient
    gp2, gq2 = grads(p1, q1)
    np.testing.assert_allclose(p, p1 - 0.1 * (0.9 * gp1 + gp2), rtol=1e-12)
    np.testing.assert_allclose(q, q1 - 0.1 * (0.9 * gq1 + gq2), rtol=1e-12)


def test_easyrl4rec_dataset(root: Path) -> None:
    rows = _write(root)
    ds = load_ml1m(root, source="easyrl4rec", use_cache=False)
    assert ds.name == "ml1m_easyrl4rec" and (ds.n_users, ds.n_items) == (N_USERS, N_MOVIES)
    assert ds.ground_truth.shape == (N_USERS, N_MOVIES) and ds.ground_truth.dtype == np.float32
    # the ground truth is clip(P Q^T, 0, 5) of the MF fitted on the 90 % part, for every id 1..max
    u, m, r, _ = (np.array(c) for c in zip(*rows, strict=True))
    part90, part10 = easyrl4rec_split(len(rows))
    c = EASYRL4REC_MF
    p, q = fit_sgd_mf(u[part90], m[part90], r[part90], N_USERS + 1, N_MOVIES + 1, factors=c["factors"], lr=c["lr"],
                      momentum=c["momentum"], epochs=c["epochs"], batch_size=c["batch_size"], seed=0)
    raw = p[1:] @ q[1:].T
    np.testing.assert_allclose(ds.ground_truth, np.clip(raw, 0, 5), rtol=1e-5, atol=1e-5)
    assert (raw < 0).any() or (raw > 5).any()  # clipping did something (e.g. the never-rated movies)
    assert ds.ground_truth.min() >= 0.0 and ds.ground_truth.max() <= 5.0
    # the swap: train = the 10 % part (EasyRL4Rec's movielens-1m-train.csv), test = the 90 % the MF saw
    assert (len(ds.train), len(ds.test)) == (len(part10), len(part90)) == (121, 1080)
    pairs = {(int(a) - 1, int(b) - 1, float(c)) for a, b, c in zip(u[part10], m[part10], r[part10], strict=True)}
    assert set(zip(ds.train["user"].tolist(), ds.train["item"].tolist(), ds.train["reward"].tolist(), strict=True)) == pairs
    assert (np.diff(ds.train["user"].to_numpy()) >= 0).all()  # sorted by user, then time
    check = ds.meta["ground_truth_check"]
    assert check["n_10pct_part"] == 121 and check["rmse_on_10pct_part"] > 0
    assert ds.meta["ground_truth"]["heldout_rmse"] == check["rmse_on_10pct_part"]
    # the MF learned the 90 % part it was fitted on
    fit_err = np.einsum("nk,nk->n", p[u[part90]], q[m[part90]]) - r[part90]
    assert np.sqrt(np.mean(fit_err**2)) < 0.5
    # genres; an id missing from movies.dat has none
    assert ds.item_categories.shape == (N_MOVIES, 18) and not ds.item_categories[UNLISTED - 1].any()
    assert ds.item_categories[UNRATED - 1].sum() == 2
    assert ds.user_features.shape == (N_USERS, 30)
    assert (ds.reward_kind, ds.quit_rule, ds.positive_threshold) == ("rating", "distance", 4.0)
    # deterministic given the seed; another seed gives another matrix
    np.testing.assert_array_equal(load_ml1m(root, source="easyrl4rec", use_cache=False).ground_truth, ds.ground_truth)
    other = load_ml1m(root, source="easyrl4rec", use_cache=False, seed=1).ground_truth
    assert not np.array_equal(other, ds.ground_truth)
    # EasyRL4Rec's preset applies (ML-1M: N = 7, M = 75) and the protocol says where the ground truth is from
    env = GroundTruthRecEnv(ds, num_envs=2, protocol="easyrl4rec")
    assert (env.protocol["num_leave_compute"], env.protocol["leave_threshold"]) == (7, 75.0)
    assert env.protocol["ground_truth"]["comparable_to_published"] is True
    # the DiffRec / raw side keeps its binary ground truth
    assert set(np.unique(load_ml1m(root, source="raw", use_cache=False).ground_truth)) <= {0.0, 1.0}


def test_easyrl4rec_errors(root: Path) -> None:
    with pytest.raises(ValueError, match="no clean/noisy variant"):
        load_ml1m(root, variant="noisy", source="easyrl4rec")
    rows = _write(root)
    rows[4] = (3, 0, 4, 978300000)
    (root / "ml-1m/raw/ratings.dat").write_text("\n".join(f"{u}::{m}::{r}::{t}" for u, m, r, t in rows) + "\n")
    with pytest.raises(ValueError, match=r"ratings\.dat, line 5, field 'MovieID': value 0 is outside"):
        load_ml1m(root, source="easyrl4rec", use_cache=False)
