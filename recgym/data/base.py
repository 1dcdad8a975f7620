"""The dataset contract shared by every loader: `LoggedDataset`.

Everything above the data layer (world models, envs, agents) reads datasets only through this class, so
loaders differ in parsing, never in shape. Ids are 0-based and contiguous. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recgym.data.registry import QUIT_RULES

REWARD_KINDS = ("rating", "click", "watch_ratio", "binary", "latent")


@dataclass
class LoggedDataset:
    """A recommendation dataset split the way the interactive-recommendation protocol needs it.

    Attributes:
        name: canonical name in `recgym.data.registry` (``coat``, ``yahoo``, ``kuairand``, ``kuairec``, ``ml1m``,
            ``ml1m_noisy``, ``synthetic``, or a name registered later).
        n_users, n_items: sizes of the id spaces (ids are ``0..n-1``).
        train: biased logs, columns ``user, item, reward`` (+ ``time`` when the source has it). The only
            interactions world models and offline agents may see.
        test: unbiased / random-exposure interactions (``user, item, reward``), never used for training.
        valid: optional validation interactions (ML-1M DiffRec split), same columns.
        ground_truth: float32 ``(n_gt_users, n_items)`` complete reward matrix for the evaluation env; row ``u``
            is user id ``u`` (ground-truth users are ids ``0..n_gt_users-1``). ``None`` if the set has none.
        item_categories: bool ``(n_items, n_categories)`` multi-hot item -> category matrix (quit rule, MCD).
        category_names: one name per column of ``item_categories``.
        item_features / user_features: optional float32 side information, one row per id.
        reward_kind: one of ``REWARD_KINDS``; ``positive_threshold``: reward >= it counts as a positive.
        quit_rule: ``distance`` (Coat/Yahoo/ML-1M/synthetic) or ``category`` (KuaiRec/KuaiRand), as in DORL.
        distance_source: optional ``(n_rows, n_items)`` matrix whose item columns define the distance quit
            rule's item distances when they are not those of ``ground_truth``: the Yahoo pseudo-ground truth
            has more rows than evaluation users and DORL measures distances over all of them (its
            ``Yahoo.py`` ``load_mat``). ``None``: distances over ``ground_truth`` (`quit_distance_source`).
        meta: provenance (source files, their sha256, how the ground truth was obtained, ...);
            ``meta["ground_truth"]`` = ``{"source", "comparable_to_published", "note"}`` says whether the
            ground truth is the one the published numbers used (envs copy it into their protocol).
        side_train: optional "side logs": logged rows on items *outside* the action space (KuaiRec's big-matrix
            rows on videos not in the small matrix), columns ``user, item, reward`` (+ ``time``) like ``train``.
            ``user`` is in the dataset's user id space; ``item`` is in the side logs' OWN id space
            ``0..n_side_items-1`` (side item ``j`` is not action item ``j``). A world model may learn from them
            (`recgym.worldmodels.deepfm` does, as DORL's user model); envs never recommend side items and
            nothing else reads them. ``None`` (every dataset but KuaiRec): no side logs.
        side_item_categories: bool ``(n_side_items, n_categories)``, the side items' categories over the same
            columns as ``item_categories``; given exactly when ``side_train`` is.
    """

    name: str
    n_users: int
    n_items: int
    train: pd.DataFrame
    test: pd.DataFrame
    ground_truth: np.ndarray | None
    item_categories: np.ndarray
    category_names: list[str]
    reward_kind: str
    positive_threshold: float
    quit_rule: str
    valid: pd.DataFrame | None = None
    item_features: np.ndarray | None = None
    user_features: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    distance_source: np.ndarray | None = None
    side_train: pd.DataFrame | None = None
    side_item_categories: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.reward_kind not in REWARD_KINDS:
            raise ValueError(f"{self.name}: reward_kind={self.reward_kind!r}, expected one of {REWARD_KINDS}")
        if self.quit_rule not in QUIT_RULES:
            raise ValueError(f"{self.name}: quit_rule={self.quit_rule!r}, expected one of {QUIT_RULES}")
        if self.item_categories.shape[0] != self.n_items or self.item_categories.dtype != np.bool_:
            raise ValueError(
                f"{self.name}: item_categories must be bool (n_items={self.n_items}, n_categories), "
                f"got {self.item_categories.dtype} {self.item_categories.shape}"
            )
        if self.ground_truth is not None and self.ground_truth.shape[1] != self.n_items:
            raise ValueError(
                f"{self.name}: ground_truth has {self.ground_truth.shape[1]} columns, expected n_items={self.n_items}"
            )
        if self.distance_source is not None and (
            self.distance_source.ndim != 2 or self.distance_source.shape[1] != self.n_items
        ):
            raise ValueError(
                f"{self.name}: distance_source must be (n_rows, n_items={self.n_items}), "
                f"got {self.distance_source.shape}"
            )
        self._check_side_logs()

    def _check_side_logs(self) -> None:
        """Side logs and side categories come together, with ids in their id spaces and finite rewards."""
        st, sc = self.side_train, self.side_item_categories
        if st is None and sc is None:
            return
        if st is None or sc is None:
            given, missing = ("side_train", "side_item_categories") if sc is None else ("side_item_categories",
                                                                                      "side_train")
            raise ValueError(f"{self.name}: {given} is given without {missing}; side logs need both (or neither)")
        n_cat = self.item_categories.shape[1]
        if sc.ndim != 2 or sc.dtype != np.bool_ or sc.shape[1] != n_cat:
            raise ValueError(
                f"{self.name}: side_item_categories must be bool (n_side_items, n_categories={n_cat}) over the "
                f"columns of item_categories, got {sc.dtype} {sc.shape}"
            )
        if not isinstance(st, pd.DataFrame):
            raise ValueError(f"{self.name}: side_train must be a pandas DataFrame, got {type(st).__name__}")
        missing_cols = [c for c in ("user", "item", "reward") if c not in st.columns]
        if missing_cols:
            raise ValueError(f"{self.name}: side_train lacks column(s) {missing_cols} (expected user, item, reward"
                             f"[, time]; has {list(st.columns)})")
        if len(st) == 0:
            return
        u, i = st["user"].to_numpy(), st["item"].to_numpy()
        if not (np.issubdtype(u.dtype, np.integer) and np.issubdtype(i.dtype, np.integer)):
            raise ValueError(f"{self.name}: side_train user/item must be integer ids, got {u.dtype}/{i.dtype}")
        if u.min() < 0 or u.max() >= self.n_users:
            raise ValueError(f"{self.name}: side_train user ids span [{u.min()}, {u.max()}], expected "
                             f"[0, n_users={self.n_users})")
        if i.min() < 0 or i.max() >= sc.shape[0]:
            raise ValueError(f"{self.name}: side_train item ids span [{i.min()}, {i.max()}], expected the side "
                             f"items' own id space [0, n_side_items={sc.shape[0]}) (rows of side_item_categories)")
        if not np.isfinite(st["reward"].to_numpy(np.float64)).all():
            raise ValueError(f"{self.name}: side_train rewards contain NaN/inf")

    @property
    def n_side_items(self) -> int:
        """Number of side items (items with side logs, outside the action space); 0 without side logs."""
        return 0 if self.side_item_categories is None else int(self.side_item_categories.shape[0])

    @property
    def n_gt_users(self) -> int:
        """Number of users with a ground-truth row (the evaluation users)."""
        return 0 if self.ground_truth is None else int(self.ground_truth.shape[0])

    def quit_distance_source(self) -> np.ndarray | None:
        """The matrix whose item columns the distance quit rule compares: ``distance_source`` or ``ground_truth``."""
        return self.distance_source if self.distance_source is not None else self.ground_truth

    def train_matrix(self, binary: bool = False) -> np.ndarray:
        """Dense float32 ``(n_users, n_items)`` matrix of the training logs (0 = not logged)."""
        m = np.zeros((self.n_users, self.n_items), dtype=np.float32)
        vals = 1.0 if binary else self.train["reward"].to_numpy(np.float32)
        m[self.train["user"].to_numpy(), self.train["item"].to_numpy()] = vals
        return m

    def summary(self) -> dict[str, Any]:
        """Counts and ranges for `recgym data info`."""
        out: dict[str, Any] = {
            "name": self.name,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "train_rows": len(self.train),
            "test_rows": len(self.test),
            "valid_rows": 0 if self.valid is None else len(self.valid),
            "n_gt_users": self.n_gt_users,
            "n_categories": int(self.item_categories.shape[1]),
            "reward_kind": self.reward_kind,
            "quit_rule": self.quit_rule,
        }
        if self.side_train is not None:  # only datasets with side logs list them
            out["side_train_rows"] = len(self.side_train)
            out["n_side_items"] = self.n_side_items
        if len(self.train):
            out["train_reward_range"] = (float(self.train["reward"].min()), float(self.train["reward"].max()))
        return out
