"""`synthetic`: a seeded latent-factor world whose ground truth, optimal and random returns are known exactly.

It is the embedded default dataset (no download) and the place where tests check that agents really learn.

Generative model (all draws from one ``numpy.random.default_rng(seed)``, in a fixed order):

1. Categories: ``n_categories`` centres ``c_k ~ N(0, I_d / d)``. Each item gets exactly one category, drawn
   with Zipf-like shares (category ``k`` has weight ``1 / (k + 1) ** category_skew``), so a few categories
   dominate the catalogue, as in real data.
2. Factors: item ``i`` of category ``k`` has ``v_i = c_k + item_spread * N(0, I_d / d)`` (items cluster by
   category, so categories carry preference information); users ``u_u ~ N(0, I_d / d)``.
   Biases ``b_u ~ N(0, user_bias_std^2)``, ``b_i ~ N(0, item_bias_std^2)``.
3. Ground truth (exact, every user):
   ``GT = 5 * sigmoid(affinity_scale * sqrt(d) * U V^T + b_u + b_i + global_bias)``, computed in float64 and
   stored as float32: a continuous rating in ``[0, 5]``; ``positive_threshold`` is 4.0.
4. Popularity: ``log pop_i = popularity_std * (rho * z(b_i) + sqrt(1 - rho^2) * eps_i)`` with ``z`` the
   standardised item bias and ``rho = popularity_quality_corr`` (popular items are somewhat better), then
   normalised to sum to 1 (``meta["popularity"]``).
5. Training logs (MNAR, self-selected): user ``u`` logs ``n_u ~ U{min_logged..max_logged}`` distinct items,
   drawn sequentially without replacement with probability proportional to
   ``pop_i ** popularity_power * exp(selection_strength * GT[u, i])`` (Gumbel-top-k, exact). Exposure grows
   with popularity and with the user's own preference, so logged rewards are biased upward.
   The logged reward is ``clip(GT + reward_noise * N(0, 1), 0, 5)`` (``reward_noise`` defaults to 0: logs
   show the true value). ``time`` is a random order of each user's logged items on a shared clock.
6. Test set (random exposure): ``n_test`` items per user drawn uniformly without replacement from the items
   the user did *not* log (disjoint from train), reward as in 5.

No torch here. Generation is vectorised and takes well under a second at the default size.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from recgym.data.base import LoggedDataset

GROUND_TRUTH_METHOD = (
    "exact: GT = 5 * sigmoid(affinity_scale * sqrt(d) * U V^T + b_user + b_item + global_bias) from the "
    "generator's own latent factors (float64 -> float32); no estimation"
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the generator; stored in ``meta["config"]``."""

    n_users: int = 500
    n_items: int = 400
    n_factors: int = 8
    n_categories: int = 10
    seed: int = 0
    category_skew: float = 0.7
    item_spread: float = 0.5
    affinity_scale: float = 1.0
    user_bias_std: float = 0.3
    item_bias_std: float = 0.5
    global_bias: float = 0.0
    popularity_std: float = 1.0
    popularity_quality_corr: float = 0.5
    popularity_power: float = 1.0
    selection_strength: float = 1.0
    min_logged: int = 20
    max_logged: int = 40
    n_test: int = 10
    reward_noise: float = 0.0

    def validate(self) -> None:
        """Raise ValueError naming the bad argument."""
        for name in ("n_users", "n_items", "n_factors", "n_categories"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"synthetic: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.min_logged <= self.max_logged:
            raise ValueError(
                f"synthetic: need 0 <= min_logged <= max_logged, got {self.min_logged}, {self.max_logged}"
            )
        if self.n_test < 0:
            raise ValueError(f"synthetic: n_test must be >= 0, got {self.n_test}")
        if self.max_logged + self.n_test > self.n_items:
            raise ValueError(
                f"synthetic: max_logged + n_test = {self.max_logged + self.n_test} exceeds n_items="
                f"{self.n_items}; train and test items of a user must be distinct"
            )
        if not -1.0 <= self.popularity_quality_corr <= 1.0:
            raise ValueError(
                f"synthetic: popularity_quality_corr must be in [-1, 1], got {self.popularity_quality_corr}"
            )
        for name in ("item_spread", "user_bias_std", "item_bias_std", "popularity_std", "reward_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"synthetic: {name} must be >= 0, got {getattr(self, name)}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _gumbel_top_k(rng: np.random.Generator, log_weights: np.ndarray, k: np.ndarray) -> list[np.ndarray]:
    """Per row, ``k[row]`` distinct columns drawn sequentially with probability proportional to exp(log_w).

    Gumbel-top-k: the top-k of ``log_w + Gumbel`` is an exact sample without replacement. Columns with
    ``log_w = -inf`` are never drawn (caller guarantees enough finite columns).
    """
    keys = log_weights + rng.gumbel(size=log_weights.shape)
    order = np.argsort(-keys, axis=1, kind="stable")
    return [order[r, : int(k[r])] for r in range(order.shape[0])]


def generate(cfg: SyntheticConfig) -> dict[str, Any]:
    """Draw every latent quantity and both interaction sets; returns a dict of numpy arrays / frames."""
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    n_u, n_i, d, n_c = cfg.n_users, cfg.n_items, cfg.n_factors, cfg.n_categories
    scale = 1.0 / np.sqrt(d)

    centres = rng.normal(0.0, scale, size=(n_c, d))
    cat_w = 1.0 / np.arange(1, n_c + 1) ** cfg.category_skew
    item_cat = rng.choice(n_c, size=n_i, p=cat_w / cat_w.sum())
    item_factors = centres[item_cat] + cfg.item_spread * rng.normal(0.0, scale, size=(n_i, d))
    user_factors = rng.normal(0.0, scale, size=(n_u, d))
    user_bias = rng.normal(0.0, cfg.user_bias_std, size=n_u)
    item_bias = rng.normal(0.0, cfg.item_bias_std, size=n_i)

    logits = (
        cfg.affinity_scale * np.sqrt(d) * (user_factors @ item_factors.T)
        + user_bias[:, None]
        + item_bias[None, :]
        + cfg.global_bias
    )
    gt64 = 5.0 * _sigmoid(logits)
    gt = gt64.astype(np.float32)

    z = (item_bias - item_bias.mean()) / (item_bias.std() + 1e-12)
    rho = cfg.popularity_quality_corr
    log_pop = cfg.popularity_std * (rho * z + np.sqrt(1.0 - rho**2) * rng.normal(size=n_i))
    pop = np.exp(log_pop - log_pop.max())
    pop /= pop.sum()

    n_logged = rng.integers(cfg.min_logged, cfg.max_logged + 1, size=n_u)
    log_w = cfg.popularity_power * np.log(pop)[None, :] + cfg.selection_strength * gt64
    train_items = _gumbel_top_k(rng, log_w, n_logged)

    logged = np.zeros((n_u, n_i), dtype=bool)
    for u, items in enumerate(train_items):
        logged[u, items] = True
    uniform = np.where(logged, -np.inf, 0.0)
    test_items = _gumbel_top_k(rng, uniform, np.full(n_u, cfg.n_test))

    def frame(item_lists: list[np.ndarray], with_time: bool) -> pd.DataFrame:
        users = np.repeat(np.arange(n_u, dtype=np.int64), [len(x) for x in item_lists])
        items = np.concatenate(item_lists).astype(np.int64) if item_lists else np.zeros(0, np.int64)
        reward = gt64[users, items]
        if cfg.reward_noise > 0:
            reward = np.clip(reward + cfg.reward_noise * rng.normal(size=reward.shape), 0.0, 5.0)
        df = pd.DataFrame({"user": users, "item": items, "reward": reward.astype(np.float32)})
        if with_time:
            # A shared clock: every interaction gets a distinct time, users interleaved at random.
            df["time"] = rng.permutation(len(df)).astype(np.int64)
            df = df.sort_values(["user", "time"], kind="stable").reset_index(drop=True)
        return df

    train = frame(train_items, with_time=True)
    test = frame(test_items, with_time=False)

    cats = np.zeros((n_i, n_c), dtype=bool)
    cats[np.arange(n_i), item_cat] = True
    return {
        "ground_truth": gt,
        "train": train,
        "test": test,
        "item_categories": cats,
        "item_category": item_cat.astype(np.int64),
        "user_factors": user_factors.astype(np.float32),
        "item_factors": item_factors.astype(np.float32),
        "category_centres": centres.astype(np.float32),
        "user_bias": user_bias.astype(np.float32),
        "item_bias": item_bias.astype(np.float32),
        "popularity": pop.astype(np.float64),
    }


def load_synthetic(
    data_dir: str | os.PathLike[str] | None = None,
    n_users: int = 500,
    n_items: int = 400,
    n_factors: int = 8,
    n_categories: int = 10,
    seed: int = 0,
    **kwargs: Any,
) -> LoggedDataset:
    """Generate the synthetic `LoggedDataset` (see the module docstring for the model).

    ``data_dir`` is accepted for the `load_dataset` signature and ignored (nothing is read). Extra keyword
    arguments are fields of `SyntheticConfig` (e.g. ``selection_strength``, ``n_test``, ``reward_noise``).
    Same arguments -> identical dataset; a different ``seed`` gives a different one.
    """
    del data_dir
    valid = set(SyntheticConfig.__dataclass_fields__)
    bad = sorted(set(kwargs) - valid)
    if bad:
        raise TypeError(f"load_synthetic: unknown argument(s) {bad}; valid: {sorted(valid)}")
    cfg = SyntheticConfig(
        n_users=int(n_users), n_items=int(n_items), n_factors=int(n_factors),
        n_categories=int(n_categories), seed=int(seed), **kwargs,
    )
    g = generate(cfg)
    return LoggedDataset(
        name="synthetic",
        n_users=cfg.n_users,
        n_items=cfg.n_items,
        train=g["train"],
        test=g["test"],
        ground_truth=g["ground_truth"],
        item_categories=g["item_categories"],
        category_names=[f"cat{k}" for k in range(cfg.n_categories)],
        reward_kind="rating",
        positive_threshold=4.0,
        quit_rule="distance",
        item_features=g["item_categories"].astype(np.float32),
        meta={
            "source": "generated by recgym.data.synthetic (no files)",
            "config": asdict(cfg),
            "ground_truth_method": GROUND_TRUTH_METHOD,
            "ground_truth": {"source": "exact (generated)", "comparable_to_published": False,
                             "note": "synthetic data: no published numbers exist"},
            "user_factors": g["user_factors"],
            "item_factors": g["item_factors"],
            "category_centres": g["category_centres"],
            "user_bias": g["user_bias"],
            "item_bias": g["item_bias"],
            "item_category": g["item_category"],
            "popularity": g["popularity"],
        },
    )


class PolicyReturn(NamedTuple):
    """Expected episode return of a policy: per ground-truth user, and averaged over users (uniform draw)."""

    per_user: np.ndarray
    mean: float


def _check_gt(gt: np.ndarray, max_turn: int) -> np.ndarray:
    arr = np.asarray(gt, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"gt must be a non-empty 2-D (n_users, n_items) matrix, got shape {arr.shape}")
    if int(max_turn) < 0:
        raise ValueError(f"max_turn must be >= 0, got {max_turn}")
    return arr


def optimal_return(gt: np.ndarray, max_turn: int, no_repeat: bool = True) -> PolicyReturn:
    """Return of the omniscient policy over ``max_turn`` steps when nobody quits.

    Valid for the distance quit rule with threshold M = 0 (no user ever leaves, episodes last ``max_turn``).
    ``no_repeat=True`` (NX modes): the sum of the user's ``max_turn`` largest GT values (all of them if
    ``max_turn >= n_items``: the episode runs out of items). ``no_repeat=False`` (FB): ``max_turn`` times the
    user's best value.
    """
    arr = _check_gt(gt, max_turn)
    t = int(max_turn)
    if no_repeat:
        k = min(t, arr.shape[1])
        per = -np.sort(-arr, axis=1)[:, :k].sum(axis=1)
    else:
        per = t * arr.max(axis=1)
    return PolicyReturn(per, float(per.mean()))


def random_return(gt: np.ndarray, max_turn: int, no_repeat: bool = True) -> PolicyReturn:
    """Exact expected return of the uniformly random policy over ``max_turn`` steps when nobody quits.

    FB (repeats allowed): each step is a uniform item, so ``max_turn * mean(GT[u])``. NX (no repeats): each
    step is uniform over the unrecommended items; by symmetry every step's item is marginally uniform over the
    catalogue, so ``min(max_turn, n_items) * mean(GT[u])``. Same no-quit assumption as `optimal_return`.
    """
    arr = _check_gt(gt, max_turn)
    t = int(max_turn)
    steps = min(t, arr.shape[1]) if no_repeat else t
    per = steps * arr.mean(axis=1)
    return PolicyReturn(per, float(per.mean()))


__all__ = [
    "GROUND_TRUTH_METHOD",
    "PolicyReturn",
    "SyntheticConfig",
    "generate",
    "load_synthetic",
    "optimal_return",
    "random_return",
]
