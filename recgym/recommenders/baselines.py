"""Non-diffusion baselines scored by the DiffRec ranking protocol: MostPop and EASE.

EASE is "Embarrassingly Shallow Autoencoders for Sparse Data" (Steck, arXiv:1905.03375): the closed-form item-item
model ``B = I - P diagMat(1 / diag(P))`` with ``P = (X^T X + lambda I)^-1`` and a zero diagonal; its lambda is
tuned on the validation split. Both are what DiffRec is compared with in `recgym pretrain diffrec`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from recgym.recommenders.ranking import DiffRecSplits, evaluate_scores


class MostPop:
    """Scores every item by its training popularity (same ranking for all users)."""

    def __init__(self) -> None:
        self.pop: torch.Tensor | None = None

    def fit(self, train: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> MostPop:
        self.pop = torch.as_tensor(np.asarray(train), dtype=torch.float32).sum(0).to(device)
        return self

    def score(self, x: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        if self.pop is None:
            raise RuntimeError("MostPop.score called before fit")
        return self.pop.to(x.device).expand(x.shape[0], -1)


class EASE:
    """EASE (Steck 2019): ``B = I - P diagMat(1 / diag(P))``, ``P = (X^T X + lambda I)^-1``, scores ``X B``."""

    def __init__(self, lam: float = 500.0) -> None:
        if lam <= 0:
            raise ValueError(f"EASE lambda={lam}, expected > 0")
        self.lam = float(lam)
        self.B: torch.Tensor | None = None

    def fit(self, train: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> EASE:
        X = torch.as_tensor(np.asarray(train), dtype=torch.float64, device=device)
        G = X.T @ X
        G += self.lam * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
        P = torch.linalg.inv(G)
        B = -P / torch.diag(P)[None, :]
        B.fill_diagonal_(0.0)
        self.B = B.to(torch.float32)
        return self

    def score(self, x: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        if self.B is None:
            raise RuntimeError("EASE.score called before fit")
        return x @ self.B.to(x.device)


def tune_ease(splits: DiffRecSplits, lambdas: Sequence[float] = (50, 100, 200, 500, 1000, 2000),
              ks: Iterable[int] = (10, 20), device: str | torch.device = "cpu",
              select_k: int = 20) -> tuple[EASE, dict[str, dict[str, float]], dict[float, float]]:
    """Fit EASE for each lambda, keep the best validation Recall@select_k; returns (model, eval, grid)."""
    grid: dict[float, float] = {}
    best: tuple[float, EASE | None] = (-1.0, None)
    for lam in lambdas:
        m = EASE(lam).fit(splits.train, device)
        r = evaluate_scores(m.score, splits, ks, device, which=("valid",))["valid"][f"Recall@{select_k}"]
        grid[float(lam)] = r
        if r > best[0]:
            best = (r, m)
    assert best[1] is not None
    return best[1], evaluate_scores(best[1].score, splits, ks, device), grid


def baselines(splits: DiffRecSplits, ks: Iterable[int] = (10, 20), device: str | torch.device = "cpu"
              ) -> dict[str, dict[str, Any]]:
    """EASE (lambda tuned on valid) and MostPop on the DiffRec protocol, with their fit times."""
    out: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    pop = MostPop().fit(splits.train, device)
    out["MostPop"] = evaluate_scores(pop.score, splits, ks, device) | {"train_seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    ease, ev, grid = tune_ease(splits, ks=ks, device=device)
    out["EASE"] = ev | {"train_seconds": time.perf_counter() - t0, "lambda": ease.lam, "grid": grid}
    return out
