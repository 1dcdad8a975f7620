"""Evaluation metrics shared by every layer: ranking metrics (DiffRec protocol) and episode metrics (DORL).

Every function accepts numpy arrays or torch tensors. Given torch tensors it computes in torch on the input's
device and returns a 0-d tensor (so GPU evaluation needs no host round-trip); given numpy arrays (or lists)
it computes in numpy and returns a Python float. The ``*_report`` helpers always return plain floats (for
tables and JSON). torch is never imported by this module: a tensor input implies torch is already loaded,
so ``import recgym.metrics`` stays light and the data layer may use it.

Ranking (DiffRec's ``computeTopNAccuracy``, checked against its public code):
    scores ``[U, I]`` (higher = better), boolean ground truth ``gt_mask [U, I]``, optional ``exclude_mask``
    (items never ranked, e.g. the training history: scored ``-inf``, so they rank last).
    Recall@K = hits / |GT|; Precision@K = hits / K; NDCG@K with binary gains, DCG = sum 1/log2(rank + 1)
    over hits in the top K, IDCG over ``min(|GT|, K)`` positions; MRR@K = 1 / rank of the first hit in the
    top K (0 if none). A user without ground-truth items contributes 0. ``average="all"`` (default, what
    DiffRec does: its sums are divided by the number of evaluated users, ``len(predictedIndices)``) divides by
    every row; ``average="with_gt"`` divides by the users that have at least one ground-truth item. The two
    coincide when every user has a ground-truth item. Ties in ``scores`` are broken arbitrarily (numpy:
    lower item id first; torch: ``torch.topk`` order).

Episodes (the protocol of DORL, arXiv:2307.04571; ROLeR, arXiv:2407.13163; EasyRL4Rec, arXiv:2402.15164): batched trajectories ``items [E, T]`` (int item ids,
padded with -1), ``rewards [E, T]`` and ``lengths [E]`` (steps actually taken; steps ``>= length`` are
ignored; when ``lengths`` is omitted it is the count of non-padding items).
    R_cumu = mean over episodes of the summed reward; Length = total steps / episodes;
    R_avg = R_cumu / Length (a ratio of means, not the mean of per-episode averages);
    CV = distinct recommended items / catalogue size;
    CV_turn = distinct recommended items / total recommendations (DORL's ``CV_turn = hit_item / len(all_acts)``,
    printed as CV_M in its tables);
    MCD = share of recommendations whose item has a category among the majority categories.
Majority categories follow DORL's ``get_feat_dominate_dict``: sort categories by their share of the counted
training interactions, keep the longest prefix whose cumulative share stays <= ``share`` (0.8), at least one.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray | torch.Tensor (torch is not imported here)

__all__ = [
    "category_domination",
    "coverage",
    "cv_turn",
    "episode_report",
    "length",
    "majority_categories",
    "mcd",
    "mrr",
    "ndcg_at_k",
    "paired_difference",
    "precision_at_k",
    "r_avg",
    "r_cumu",
    "ranking_per_user",
    "ranking_report",
    "recall_at_k",
    "topk_from_scores",
]

_AVERAGES = ("all", "with_gt")


# ----------------------------------------------------------------------------------------------- helpers
def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _any_torch(*xs: Any) -> bool:
    return any(_is_torch(x) for x in xs if x is not None)


def _torch() -> Any:
    return sys.modules["torch"]


def _to_torch(x: Any, device: Any, dtype: Any = None) -> Any:
    torch = _torch()
    if _is_torch(x):
        return x.to(device=device, dtype=dtype) if dtype is not None else x.to(device)
    return torch.as_tensor(np.asarray(x), device=device, dtype=dtype)


def _device_of(*xs: Any) -> Any:
    for x in xs:
        if _is_torch(x):
            return x.device
    return "cpu"


def _to_numpy(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _out(value: Any, as_torch: bool) -> Any:
    """0-d tensor for the torch path, Python float for numpy."""
    if as_torch:
        return value
    return float(value)


def _check_2d(name: str, x: Any) -> None:
    if len(x.shape) != 2:
        raise ValueError(f"{name} must be 2-D [users, items], got shape {tuple(x.shape)}")


# ----------------------------------------------------------------------------------------------- ranking
def topk_from_scores(scores: Array, k: int, exclude_mask: Array | None = None) -> Array:
    """Indices ``[U, k]`` (int64) of each row's ``k`` highest scores, best first.

    ``exclude_mask`` (bool ``[U, I]``, True = never recommend) sets those scores to ``-inf`` first, so they can
    only appear after every other item. NaN scores are rejected.
    """
    _check_2d("scores", scores)
    n_items = int(scores.shape[1])
    if not 1 <= int(k) <= n_items:
        raise ValueError(f"k must be in [1, n_items={n_items}], got {k}")
    k = int(k)
    if exclude_mask is not None and tuple(exclude_mask.shape) != tuple(scores.shape):
        raise ValueError(f"exclude_mask shape {tuple(exclude_mask.shape)} != scores shape {tuple(scores.shape)}")
    if _any_torch(scores, exclude_mask):
        torch = _torch()
        dev = _device_of(scores, exclude_mask)
        s = _to_torch(scores, dev)
        if not torch.is_floating_point(s):
            s = s.float()
        if bool(torch.isnan(s).any()):
            raise ValueError("scores contain NaN")
        if exclude_mask is not None:
            s = s.masked_fill(_to_torch(exclude_mask, dev, torch.bool), float("-inf"))
        return torch.topk(s, k, dim=1, largest=True, sorted=True).indices
    s = np.asarray(scores, dtype=np.float64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if exclude_mask is not None:
        s = np.where(np.asarray(exclude_mask, dtype=bool), -np.inf, s)
    if k < n_items:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        part.sort(axis=1)  # lower item id first among ties after the stable sort below
    else:
        part = np.tile(np.arange(n_items), (s.shape[0], 1))
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def _ranking_parts(
    scores: Array, gt_mask: Array, k: int, exclude_mask: Array | None
) -> tuple[bool, Any, Any, Any]:
    """(as_torch, hits [U, k] float, n_gt [U] float, topk) with inputs validated."""
    _check_2d("scores", scores)
    _check_2d("gt_mask", gt_mask)
    if tuple(gt_mask.shape) != tuple(scores.shape):
        raise ValueError(f"gt_mask shape {tuple(gt_mask.shape)} != scores shape {tuple(scores.shape)}")
    if _any_torch(scores, gt_mask, exclude_mask):
        torch = _torch()
        scores = _to_torch(scores, _device_of(scores, gt_mask, exclude_mask))
        top = topk_from_scores(scores, k, exclude_mask)
        g = _to_torch(gt_mask, top.device) != 0
        hits = torch.gather(g, 1, top).to(torch.float64)
        return True, hits, g.sum(dim=1).to(torch.float64), top
    top = topk_from_scores(scores, k, exclude_mask)
    g = np.asarray(gt_mask) != 0
    hits = np.take_along_axis(g, top, axis=1).astype(np.float64)
    return False, hits, g.sum(axis=1).astype(np.float64), top


def _average(per_user: Any, n_gt: Any, average: str, as_torch: bool) -> Any:
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    if average == "all":
        denom = per_user.shape[0]
    else:
        denom = (n_gt > 0).sum()
        if as_torch:
            denom = denom.clamp(min=1)
        else:
            denom = max(int(denom), 1)
    if per_user.shape[0] == 0:
        raise ValueError("no users to evaluate (scores has 0 rows)")
    return _out(per_user.sum() / denom, as_torch)


def _safe_div(a: Any, b: Any, as_torch: bool) -> Any:
    if as_torch:
        return a / b.clamp(min=1)
    return a / np.maximum(b, 1)


def _recall(hits: Any, n_gt: Any, as_torch: bool) -> Any:
    return _safe_div(hits.sum(1), n_gt, as_torch)


def _precision(hits: Any, k: int) -> Any:
    return hits.sum(1) / k


def _ndcg(hits: Any, n_gt: Any, k: int, as_torch: bool) -> Any:
    disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    cum = np.concatenate([[0.0], np.cumsum(disc)])
    if as_torch:
        torch = _torch()
        disc_t = torch.as_tensor(disc, device=hits.device)
        cum_t = torch.as_tensor(cum, device=hits.device)
        dcg = (hits * disc_t).sum(1)
        idcg = cum_t[n_gt.clamp(max=k).long()]
        return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))
    dcg = (hits * disc).sum(1)
    idcg = cum[np.minimum(n_gt, k).astype(np.int64)]
    return np.where(idcg > 0, dcg / np.maximum(idcg, 1e-12), 0.0)


def _mrr(hits: Any, as_torch: bool) -> Any:
    k = hits.shape[1]
    if as_torch:
        torch = _torch()
        ranks = torch.arange(1, k + 1, device=hits.device, dtype=torch.float64)
        first = torch.where(hits > 0, ranks, torch.full_like(ranks, float("inf"))).min(dim=1).values
        return torch.where(torch.isinf(first), torch.zeros_like(first), 1.0 / first)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    first = np.where(hits > 0, ranks, np.inf).min(axis=1)
    return np.where(np.isinf(first), 0.0, 1.0 / first)


def recall_at_k(
    scores: Array, gt_mask: Array, k: int, exclude_mask: Array | None = None, average: str = "all"
) -> Any:
    """Recall@K = mean over users of hits@K / |GT| (DiffRec protocol, see the module docstring)."""
    as_t, hits, n_gt, _ = _ranking_parts(scores, gt_mask, k, exclude_mask)
    return _average(_recall(hits, n_gt, as_t), n_gt, average, as_t)


def precision_at_k(
    scores: Array, gt_mask: Array, k: int, exclude_mask: Array | None = None, average: str = "all"
) -> Any:
    """Precision@K = mean over users (with a GT item; others count 0) of hits@K / K."""
    as_t, hits, n_gt, _ = _ranking_parts(scores, gt_mask, k, exclude_mask)
    per = _precision(hits, int(k))
    per = per * (n_gt > 0)
    return _average(per, n_gt, average, as_t)


def ndcg_at_k(
    scores: Array, gt_mask: Array, k: int, exclude_mask: Array | None = None, average: str = "all"
) -> Any:
    """NDCG@K with binary gains and IDCG over ``min(|GT|, K)`` positions, averaged over users."""
    as_t, hits, n_gt, _ = _ranking_parts(scores, gt_mask, k, exclude_mask)
    return _average(_ndcg(hits, n_gt, int(k), as_t), n_gt, average, as_t)


def mrr(
    scores: Array, gt_mask: Array, k: int | None = None, exclude_mask: Array | None = None, average: str = "all"
) -> Any:
    """MRR@K: mean of 1 / rank of the first ground-truth item in the top K (0 if none); K=None ranks all."""
    kk = int(scores.shape[1]) if k is None else int(k)
    as_t, hits, n_gt, _ = _ranking_parts(scores, gt_mask, kk, exclude_mask)
    return _average(_mrr(hits, as_t), n_gt, average, as_t)


def ranking_report(
    scores: Array,
    gt_mask: Array,
    exclude_mask: Array | None = None,
    ks: Sequence[int] = (10, 20),
    average: str = "all",
) -> dict[str, float]:
    """``{"Recall@K", "NDCG@K", "Precision@K", "MRR@K"}`` for every K in ``ks`` (one top-K pass), as floats."""
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    kmax = max(int(k) for k in ks)
    as_t, hits_all, n_gt, _ = _ranking_parts(scores, gt_mask, kmax, exclude_mask)
    out: dict[str, float] = {}
    for k in sorted({int(k) for k in ks}):
        if k < 1:
            raise ValueError(f"every k must be >= 1, got {k}")
        hits = hits_all[:, :k]
        per = {
            "Recall": _recall(hits, n_gt, as_t),
            "NDCG": _ndcg(hits, n_gt, k, as_t),
            "Precision": _precision(hits, k) * (n_gt > 0),
            "MRR": _mrr(hits, as_t),
        }
        for name, values in per.items():
            out[f"{name}@{k}"] = float(_average(values, n_gt, average, as_t))
    return out


def ranking_per_user(
    scores: Array,
    gt_mask: Array,
    exclude_mask: Array | None = None,
    ks: Sequence[int] = (10, 20),
) -> dict[str, Any]:
    """Per-user ``Recall@K`` and ``NDCG@K`` (float64 [U] each, numpy or torch like the input) and ``n_gt``.

    The values `ranking_report` averages, before averaging (a user without ground truth gets 0), so two
    models can be compared user by user (`paired_difference`).
    """
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    kmax = max(int(k) for k in ks)
    as_t, hits_all, n_gt, _ = _ranking_parts(scores, gt_mask, kmax, exclude_mask)
    out: dict[str, Any] = {"n_gt": n_gt}
    for k in sorted({int(k) for k in ks}):
        if k < 1:
            raise ValueError(f"every k must be >= 1, got {k}")
        hits = hits_all[:, :k]
        out[f"Recall@{k}"] = _recall(hits, n_gt, as_t)
        out[f"NDCG@{k}"] = _ndcg(hits, n_gt, k, as_t)
    return out


def paired_difference(a: Array, b: Array, level: float = 0.95) -> dict[str, float]:
    """Mean of the paired differences ``a - b`` (one pair per user) with its Student-t confidence interval.

    ``a`` and ``b``: the same metric for the same users under two models (e.g. a fine-tuned and the pre-trained
    recommender), 1-D, equal length >= 2. Returns ``mean`` (= mean(a) - mean(b)), ``ci_low`` / ``ci_high`` (the
    ``level`` two-sided interval ``mean +- t_{(1+level)/2, n-1} * sd / sqrt(n)``), ``sd`` (sample std of the
    differences), ``n``, ``relative`` (``mean / mean(b)``, NaN when mean(b) is 0) and ``n_better`` /
    ``n_worse`` (users with a positive / negative difference). Pairing removes the between-user variance that
    dominates the two means' own intervals.
    """
    from scipy import stats

    x = _to_numpy(a).astype(np.float64).reshape(-1)
    y = _to_numpy(b).astype(np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired_difference: a has {x.size} values, b has {y.size}; pairs need equal lengths")
    if x.size < 2:
        raise ValueError(f"paired_difference: need at least 2 pairs, got {x.size}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"paired_difference: level={level}; expected in (0, 1)")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired_difference: a and b must be finite")
    d = x - y
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sd / float(np.sqrt(n))
    base = float(y.mean())
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd, "n": float(n),
            "relative": mean / base if base != 0 else float("nan"),
            "n_better": float((d > 0).sum()), "n_worse": float((d < 0).sum())}


# ----------------------------------------------------------------------------------------------- episodes
def _step_mask(items_or_rewards: Any, lengths: Array | None, items: Array | None, as_torch: bool) -> Any:
    """Bool [E, T]: True for steps actually taken."""
    x = items_or_rewards
    if len(x.shape) != 2:
        raise ValueError(f"trajectories must be 2-D [episodes, turns], got shape {tuple(x.shape)}")
    e, t = int(x.shape[0]), int(x.shape[1])
    if lengths is None:
        if items is None:
            if as_torch:
                return _torch().ones((e, t), dtype=_torch().bool, device=x.device)
            return np.ones((e, t), dtype=bool)
        return items >= 0
    if tuple(lengths.shape) != (e,):
        raise ValueError(f"lengths must have shape ({e},), got {tuple(lengths.shape)}")
    if as_torch:
        torch = _torch()
        lengths = lengths.to(x.device)
        return torch.arange(t, device=x.device)[None, :] < lengths[:, None]
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def _prep(*xs: Any) -> tuple[bool, list[Any]]:
    as_t = _any_torch(*xs)
    if as_t:
        dev = _device_of(*xs)
        return True, [None if x is None else _to_torch(x, dev) for x in xs]
    return False, [None if x is None else np.asarray(x) for x in xs]


def _n_steps(lengths: Any, mask: Any, as_torch: bool) -> Any:
    if lengths is not None:
        return lengths.sum().to(_torch().float64) if as_torch else float(np.asarray(lengths).sum())
    return mask.sum().to(_torch().float64) if as_torch else float(mask.sum())


def r_cumu(rewards: Array, lengths: Array | None = None) -> Any:
    """Mean cumulative reward per episode (R_cumu, DORL's R_tra)."""
    as_t, (r, ln) = _prep(rewards, lengths)
    mask = _step_mask(r, ln, None, as_t)
    if r.shape[0] == 0:
        raise ValueError("no episodes")
    if as_t:
        total = (r.to(_torch().float64) * mask).sum()
    else:
        total = (r.astype(np.float64) * mask).sum()
    return _out(total / r.shape[0], as_t)


def length(lengths: Array) -> Any:
    """Mean episode length = total steps / episodes."""
    as_t, (ln,) = _prep(lengths)
    if len(ln.shape) != 1 or ln.shape[0] == 0:
        raise ValueError(f"lengths must be a non-empty 1-D array, got shape {tuple(ln.shape)}")
    if as_t:
        return ln.to(_torch().float64).mean()
    return float(ln.astype(np.float64).mean())


def r_avg(rewards: Array, lengths: Array | None = None) -> Any:
    """R_avg = R_cumu / Length: total reward / total steps (ratio of means). 0 when no step was taken."""
    as_t, (r, ln) = _prep(rewards, lengths)
    mask = _step_mask(r, ln, None, as_t)
    steps = _n_steps(ln, mask, as_t)
    if as_t:
        total = (r.to(_torch().float64) * mask).sum()
        return total / steps.clamp(min=1)
    total = float((r.astype(np.float64) * mask).sum())
    return total / steps if steps > 0 else 0.0


def _valid_items(items: Any, lengths: Any, as_torch: bool) -> Any:
    mask = _step_mask(items, lengths, items, as_torch)
    sel = items[mask]
    if bool((sel < 0).any()):
        raise ValueError("items has padding (-1) inside an episode's length")
    return sel


def coverage(items: Array, n_items: int, lengths: Array | None = None) -> Any:
    """CV = number of distinct recommended items / ``n_items``."""
    if int(n_items) < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    as_t, (it, ln) = _prep(items, lengths)
    sel = _valid_items(it, ln, as_t)
    if as_t:
        distinct = _torch().unique(sel).numel()
        return _torch().tensor(distinct / int(n_items), dtype=_torch().float64, device=it.device)
    return float(np.unique(sel).size / int(n_items))


def cv_turn(items: Array, lengths: Array | None = None) -> Any:
    """CV_turn = distinct recommended items / total recommendations (DORL ``hit_item / len(all_acts)``)."""
    as_t, (it, ln) = _prep(items, lengths)
    sel = _valid_items(it, ln, as_t)
    n = int(sel.numel()) if as_t else int(sel.size)
    if as_t:
        val = _torch().unique(sel).numel() / n if n else 0.0
        return _torch().tensor(val, dtype=_torch().float64, device=it.device)
    return float(np.unique(sel).size / n) if n else 0.0


def mcd(items: Array, item_categories: Array, majority: Sequence[int] | Array, lengths: Array | None = None) -> Any:
    """MCD = share of recommendations whose item has at least one category in ``majority``.

    ``item_categories`` is the bool ``[n_items, n_categories]`` matrix; ``majority`` lists column indices (as
    returned by `majority_categories`). For datasets with several feature groups (Coat) DORL reports MCD per
    group: pass that group's columns.
    """
    as_t, (it, cats, ln) = _prep(items, item_categories, lengths)
    _check_2d("item_categories", cats)
    sel = _valid_items(it, ln, as_t)
    maj = [int(m) for m in _to_numpy(majority).reshape(-1)]
    n_cat = int(cats.shape[1])
    if any(not 0 <= m < n_cat for m in maj):
        raise ValueError(f"majority has category ids outside [0, {n_cat})")
    if as_t:
        torch = _torch()
        col = torch.zeros(n_cat, dtype=torch.bool, device=cats.device)
        if maj:
            col[torch.as_tensor(maj, device=cats.device)] = True
        hit = ((cats[sel.long()] != 0) & col).any(dim=1)
        return hit.to(torch.float64).sum() / max(int(sel.numel()), 1)
    col = np.zeros(n_cat, dtype=bool)
    col[maj] = True
    hit = ((cats[sel] != 0) & col).any(axis=1)
    return float(hit.sum() / max(sel.size, 1))


def category_domination(
    train_items: Array,
    train_rewards: Array | None,
    item_categories: Array,
    positive_threshold: float | None = None,
) -> list[tuple[int, float]]:
    """``[(category, share), ...]`` sorted by share (desc; ties by lower id), like DORL's feature_domination.

    Counts, over the training interactions with ``reward >= positive_threshold`` (all of them when the
    threshold is None), each category of the interacted item; a share is a count over the sum of counts.
    DORL counts all logged ratings for Coat and the positives (``is_click >= 1``) for KuaiRec/KuaiRand.
    Categories never counted are left out.
    """
    items = _to_numpy(train_items).astype(np.int64).reshape(-1)
    cats = _to_numpy(item_categories) != 0
    _check_2d("item_categories", cats)
    if items.size and (items.min() < 0 or items.max() >= cats.shape[0]):
        raise ValueError(f"train_items has ids outside [0, {cats.shape[0]})")
    if positive_threshold is not None:
        if train_rewards is None:
            raise ValueError("train_rewards is needed when positive_threshold is given")
        rewards = _to_numpy(train_rewards).reshape(-1)
        if rewards.shape != items.shape:
            raise ValueError(f"train_rewards has {rewards.size} entries, train_items {items.size}")
        items = items[rewards >= positive_threshold]
    counts = cats[items].sum(axis=0).astype(np.int64)
    total = counts.sum()
    if total == 0:
        return []
    order = np.argsort(-counts, kind="stable")
    return [(int(c), float(counts[c] / total)) for c in order if counts[c] > 0]


def majority_categories(
    train_items: Array,
    train_rewards: Array | None,
    item_categories: Array,
    positive_threshold: float | None,
    share: float = 0.8,
) -> np.ndarray:
    """Category ids (int64, most frequent first) that DORL calls the majority: see `category_domination`.

    The longest frequency-sorted prefix whose cumulative share is <= ``share`` (DORL's ``top_rate`` = 0.8),
    and at least the most frequent category.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    dom = category_domination(train_items, train_rewards, item_categories, positive_threshold)
    if not dom:
        return np.zeros(0, dtype=np.int64)
    cum = np.cumsum([s for _, s in dom])
    n = max(1, int((cum <= share + 1e-12).sum()))
    return np.array([c for c, _ in dom[:n]], dtype=np.int64)


def episode_report(
    items: Array,
    rewards: Array,
    lengths: Array | None,
    n_items: int,
    item_categories: Array | None = None,
    majority: Sequence[int] | Array | None = None,
) -> dict[str, float]:
    """``R_cumu, R_avg, Length, CV, CV_turn`` (and ``MCD`` when categories and majority are given), as floats."""
    as_t, (it, ln) = _prep(items, lengths)
    if ln is None:
        ln = (it >= 0).sum(1)
    out = {
        "R_cumu": float(r_cumu(rewards, ln)),
        "R_avg": float(r_avg(rewards, ln)),
        "Length": float(length(ln)),
        "CV": float(coverage(it, n_items, ln)),
        "CV_turn": float(cv_turn(it, ln)),
    }
    if item_categories is not None and majority is not None:
        out["MCD"] = float(mcd(it, item_categories, majority, ln))
    return out
