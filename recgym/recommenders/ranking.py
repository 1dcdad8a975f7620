"""Binary interaction splits and the ranking protocol shared by DiffRec, EASE and MostPop.

Protocol of "Diffusion Recommender Models" (arXiv:2304.04971; the public DiffRec code, ``main.py``'s
evaluation): every model scores all items from a user's training row; the validation ranking masks the training
items, the test ranking masks training + validation items; Recall@K = hits / |ground truth| and NDCG@K has
binary gains with the ideal DCG over ``min(|ground truth|, K)``; both are averaged over the users that have
ground truth in that split. The metrics themselves are `recgym.metrics.ranking_report`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recgym.data.base import LoggedDataset
from recgym.metrics import ranking_report


@dataclass
class DiffRecSplits:
    """Binary interaction matrices in DiffRec's layout (dense numpy, ``(n_users, n_items)``).

    ``train`` is the model input (float32 0/1); ``valid`` / ``test`` are bool ground-truth matrices. Test
    items already in train or valid are dropped from the test ground truth (they are masked when ranking).
    ``fingerprint`` hashes the dataset name, sizes and the three matrices.
    """

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])


def _positives(df: Any, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    if df is None or len(df) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keep = df["reward"].to_numpy(np.float64) >= threshold
    return df["user"].to_numpy(np.int64)[keep], df["item"].to_numpy(np.int64)[keep]


def make_splits(dataset: LoggedDataset, valid_fraction: float = 0.1, split_seed: int = 0) -> DiffRecSplits:
    """Binary train / valid / test matrices of a `LoggedDataset` for DiffRec.

    An interaction counts when its reward is at least ``dataset.positive_threshold``. If the dataset has a
    validation split (ML-1M DiffRec) it is used as is; otherwise ``valid_fraction`` of each user's positive
    training items (users with at least 2) is moved to validation with a seeded generator.
    """
    n_u, n_i = dataset.n_users, dataset.n_items
    thr = float(dataset.positive_threshold)
    train = np.zeros((n_u, n_i), dtype=np.float32)
    tu, ti = _positives(dataset.train, thr)
    train[tu, ti] = 1.0
    valid = np.zeros((n_u, n_i), dtype=bool)
    if dataset.valid is not None and len(dataset.valid):
        vu, vi = _positives(dataset.valid, thr)
        valid[vu, vi] = True
    elif valid_fraction > 0:
        rng = np.random.default_rng(split_seed)
        for u in range(n_u):
            items = np.flatnonzero(train[u])
            if len(items) < 2:
                continue
            n_v = min(len(items) - 1, max(1, int(round(valid_fraction * len(items)))))
            pick = rng.choice(items, size=n_v, replace=False)
            valid[u, pick] = True
            train[u, pick] = 0.0
    valid &= train == 0
    test = np.zeros((n_u, n_i), dtype=bool)
    su, si = _positives(dataset.test, thr)
    test[su, si] = True
    test &= (train == 0) & ~valid
    h = hashlib.sha256()
    h.update(f"{dataset.name}|{n_u}|{n_i}".encode())
    for m in (train > 0, valid, test):
        h.update(np.packbits(m).tobytes())
    return DiffRecSplits(dataset.name, train, valid, test, h.hexdigest()[:16],
                         meta={"valid_fraction": valid_fraction, "split_seed": split_seed,
                               "valid_source": "dataset" if dataset.valid is not None else "carved from train"})


def evaluate_scores(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], splits: DiffRecSplits,
                    ks: Iterable[int] = (10, 20), device: str | torch.device = "cpu",
                    batch_size: int = 1000, which: Sequence[str] = ("valid", "test"),
                    users: np.ndarray | Sequence[int] | None = None) -> dict[str, dict[str, float]]:
    """DiffRec protocol: ``score_fn(train_rows, user_ids) -> scores`` is called on batches of training rows.

    ``valid`` masks train; ``test`` masks train + valid; metrics are averaged over users with ground truth.
    Every split in ``which`` is ranked from the same scores, so asking for both costs one ``score_fn`` pass.
    ``users`` (user ids) restricts the evaluation to those users (model selection on a subset); by default
    every user is scored.
    """
    device = torch.device(device)
    ks = tuple(sorted(set(int(k) for k in ks)))
    if ks[-1] > splits.n_items:
        raise ValueError(f"K={ks[-1]} exceeds the catalogue size n_items={splits.n_items}")
    for w in which:
        if w not in ("valid", "test"):
            raise ValueError(f"which={w!r}, expected 'valid' or 'test'")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}, expected >= 1")
    if users is None:
        rows = np.arange(splits.n_users)
    else:
        rows = np.asarray(users, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= splits.n_users):
            raise ValueError(f"users must be ids in [0, n_users={splits.n_users}), got {rows.min()}..{rows.max()}")
    contiguous = users is None
    sums: dict[str, dict[str, float]] = {w: {} for w in which}
    counts = dict.fromkeys(which, 0)
    for lo in range(0, len(rows), batch_size):
        hi = min(len(rows), lo + batch_size)
        idx = slice(lo, hi) if contiguous else rows[lo:hi]
        x = torch.from_numpy(splits.train[idx]).to(device)
        scores = score_fn(x, torch.as_tensor(rows[lo:hi], device=device))
        train_mask = x > 0
        for w in which:
            gt = torch.from_numpy(splits.valid[idx] if w == "valid" else splits.test[idx]).to(device)
            mask = train_mask if w == "valid" else train_mask | torch.from_numpy(splits.valid[idx]).to(device)
            # average="all" over the batch rows, times the rows = the sum over users (no-GT users add 0)
            rep = ranking_report(scores, gt, exclude_mask=mask, ks=ks, average="all")
            counts[w] += int(gt.any(1).sum())
            for key in (f"{m}@{k}" for m in ("Recall", "NDCG") for k in ks):
                sums[w][key] = sums[w].get(key, 0.0) + rep[key] * (hi - lo)
    return {w: {k: (v / counts[w] if counts[w] else float("nan")) for k, v in sums[w].items()} | {"users": counts[w]}
            for w in which}


# ----------------------------------------------------------------------------------------------- per user


def evaluate_scores_per_user(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], splits: DiffRecSplits,
                             ks: Iterable[int] = (10, 20), device: str | torch.device = "cpu",
                             batch_size: int = 1000, which: Sequence[str] = ("valid", "test"),
                             ) -> dict[str, dict[str, np.ndarray]]:
    """The protocol of `evaluate_scores`, per user: ``{split: {"users", "Recall@K", "NDCG@K"}}`` (numpy).

    Only the users with ground truth in the split are kept (``users``: their ids, ascending), so the mean of
    each array is `evaluate_scores`'s number and two models' arrays pair up user by user
    (`recgym.metrics.paired_difference`).
    """
    from recgym.metrics import ranking_per_user

    device = torch.device(device)
    ks = tuple(sorted(set(int(k) for k in ks)))
    if ks[-1] > splits.n_items:
        raise ValueError(f"K={ks[-1]} exceeds the catalogue size n_items={splits.n_items}")
    for w in which:
        if w not in ("valid", "test"):
            raise ValueError(f"which={w!r}, expected 'valid' or 'test'")
    parts: dict[str, dict[str, list[np.ndarray]]] = {w: {} for w in which}
    n = splits.n_users
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        x = torch.from_numpy(splits.train[lo:hi]).to(device)
        scores = score_fn(x, torch.arange(lo, hi, device=device))
        train_mask = x > 0
        for w in which:
            gt = torch.from_numpy(splits.valid[lo:hi] if w == "valid" else splits.test[lo:hi]).to(device)
            mask = train_mask if w == "valid" else train_mask | torch.from_numpy(splits.valid[lo:hi]).to(device)
            per = ranking_per_user(scores, gt, exclude_mask=mask, ks=ks)
            keep = (per.pop("n_gt") > 0).cpu().numpy()
            parts[w].setdefault("users", []).append(np.arange(lo, hi)[keep])
            for key, v in per.items():
                parts[w].setdefault(key, []).append(v.cpu().numpy()[keep])
    return {w: {k: np.concatenate(v) for k, v in d.items()} for w, d in parts.items()}
