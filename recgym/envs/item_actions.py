"""Continuous item actions: item embeddings learned from the training logs, and the action -> item mapping.

Continuous-action recommenders (DDPG, TD3, SAC, DAC4Rec) output a vector ``a`` that is turned into one item id.
The mapping is EasyRL4Rec's (its ``RecPolicy.py``, arXiv:2402.15164): clip ``a`` to ``[-1, 1]``, score every
item by the dot product with its L2-normalised embedding, keep the allowed items, take the best one; with
probability ``remap_eps`` a uniformly random item instead. Two details differ, both only visible in NX modes:

* EasyRL4Rec multiplies the scores by the 0/1 mask, so a masked item (score 0) can beat allowed items whose
  scores are all negative; recgym's NX envs refuse masked items, so disallowed items get ``-inf`` here. In FB
  mode (EasyRL4Rec's tables) every item is allowed and the two rules agree.
* EasyRL4Rec draws one coin per batch and, when it lands, replaces every row's item by a random one (possibly
  a masked one); here each row draws its own coin and a random *allowed* item.

The embeddings must come from the training logs only (`log_item_embeddings`): the evaluation env's ground
truth is never read. Sources: ``"deepfm"`` (the item embeddings of the first member of the DeepFM ensemble
fitted on the logs, the user model whose embeddings EasyRL4Rec's policies start from), ``"train_svd"``
(`svd_item_embeddings` of the user x item training-log matrix). Rows are L2-normalised, so every item with a
non-zero row is the argmax for its own embedding (with raw SVD rows long vectors hid most of the catalogue:
36% of Coat's items and 1.8% of Yahoo's were reachable).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["EMBEDDING_SOURCES", "log_item_embeddings", "map_actions_to_items", "normalise_rows",
           "svd_item_embeddings"]

EMBEDDING_SOURCES = ("deepfm", "train_svd")


def normalise_rows(emb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float32 rows scaled to unit L2 norm (zero rows stay zero)."""
    e = torch.as_tensor(np.asarray(emb, dtype=np.float32) if not isinstance(emb, torch.Tensor) else emb).float()
    if e.dim() != 2:
        raise ValueError(f"item embeddings must be a 2-d [n_items, k] array, got shape {tuple(e.shape)}")
    return (e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)).contiguous()


def svd_item_embeddings(matrix: np.ndarray | torch.Tensor, k: int = 16, seed: int = 0) -> torch.Tensor:
    """``V_k sqrt(S_k)`` of the (users x items) matrix, rows scaled to unit L2 norm, float32 [n_items, k].

    Exact SVD up to 4,096 items, ``torch.svd_lowrank`` (seeded, 4 power iterations) above.
    """
    m = torch.as_tensor(np.asarray(matrix, dtype=np.float32) if not isinstance(matrix, torch.Tensor) else matrix)
    m = m.float().cpu()
    k = int(min(k, *m.shape))
    if m.shape[1] <= 4096:
        _, s, vh = torch.linalg.svd(m, full_matrices=False)
        v, s = vh[:k].T, s[:k]
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, s, v = torch.svd_lowrank(m, q=k, niter=4)
    return normalise_rows(v * s.clamp_min(0).sqrt()[None, :])


def log_item_embeddings(dataset: Any, source: str = "deepfm", k: int = 16, seed: int = 0,
                        world_model: Any = None, progress: bool = False) -> torch.Tensor:
    """L2-normalised item embeddings [n_items, k'] learned from the logs only (CPU, float32).

    ``source="deepfm"``: the first ensemble member's item embeddings of the DeepFM user model (``world_model``
    when given, else `recgym.worldmodels.fit_or_load` with the dataset's default DeepFM config and ``seed``: the
    cached model an ``InteractiveRec`` env with a DeepFM reward preset uses; trained on ``dataset.train`` and, by
    default, the side logs: only the action items' rows are returned); ``k'`` is its ``embed_dim`` and
    ``k`` is ignored. ``source="train_svd"``: `svd_item_embeddings` of ``dataset.train_matrix()`` (``k' = k``).
    """
    if source not in EMBEDDING_SOURCES:
        raise ValueError(f"item embedding source={source!r}; valid values: {list(EMBEDDING_SOURCES)}")
    if source == "train_svd":
        return svd_item_embeddings(dataset.train_matrix(), k, seed=seed)
    model = world_model
    if model is None:
        from recgym.worldmodels import default_config, fit_or_load

        model = fit_or_load("deepfm", dataset, config=default_config("deepfm", dataset.name), device="cpu",
                            progress=progress, seed=seed)
    net = getattr(model, "net", None)
    table = getattr(net, "item_emb", None)
    n_side = int(getattr(model, "n_side_items", 0))  # rows after the action items: side-log items, never actions
    if table is None or table.dim() != 3 or table.shape[1] != dataset.n_items + n_side:
        raise ValueError(f"{dataset.name}: item embedding source 'deepfm' needs a fitted DeepFM ensemble with "
                         f"item embeddings [members, n_items={dataset.n_items} (+ side items), k], got "
                         f"{type(model).__name__}")
    return normalise_rows(table[0, : dataset.n_items].detach().float().cpu())


def map_actions_to_items(actions: torch.Tensor, item_emb: torch.Tensor, mask: torch.Tensor | None = None,
                         remap_eps: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Item ids int64 [B] for continuous ``actions`` [B, k] (EasyRL4Rec's rule; see the module docstring).

    ``item_emb`` [n_items, k] is expected L2-normalised; ``mask`` bool [B, n_items] (True = allowed; rows with
    nothing allowed fall back to every item, the env ends them anyway). ``remap_eps`` > 0 draws its coins and
    random items from ``generator``.
    """
    if actions.dim() != 2 or actions.shape[1] != item_emb.shape[1]:
        raise ValueError(f"actions must be [B, k={item_emb.shape[1]}], got shape {tuple(actions.shape)}")
    finite = torch.isfinite(actions).all(1)
    if not bool(finite.all()):  # a diverged actor must not be mapped to items 0, 1, 2 and paid real rewards
        bad = (~finite).nonzero().flatten()[:5].tolist()
        raise ValueError(f"continuous item actions of envs {bad} contain NaN or inf; expected finite float "
                         f"[B, {item_emb.shape[1]}] actions")
    scores = actions.float().clamp(-1.0, 1.0) @ item_emb.T
    allowed = None
    if mask is not None:
        allowed = mask | ~mask.any(1, keepdim=True)
        scores = scores.masked_fill(~allowed, float("-inf"))
    items = scores.argmax(1)
    if remap_eps > 0:
        b, n = scores.shape
        coin = torch.rand(b, generator=generator, device=scores.device) < remap_eps
        if bool(coin.any()):
            noise = torch.rand((b, n), generator=generator, device=scores.device)
            if allowed is not None:
                noise = noise.masked_fill(~allowed, -1.0)
            items = torch.where(coin, noise.argmax(1), items)
    return items
