"""Tables of the rec envs: the compact ground-truth storage, the item distances of the distance quit rule (cached
across envs of the same data), the item-pair table and the window slots the quit rule is decided from, and the
byte lookup that turns no-repeat bit sets into masks."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from recgym.envs.protocol import quit_window_size

__all__ = ["byte_masks", "cached_distances", "close_pair_share", "compact_matrix", "item_distance_matrix",
           "mask_from_bits", "quit_pair_table", "window_keep_table"]


def compact_matrix(mat: np.ndarray, dtype: str = "auto", max_float32_bytes: int = 512 << 20) -> torch.Tensor:
    """The smallest lossless dtype for a reward matrix: uint8 (integers 0..255), float16, else float32.

    With ``dtype="auto"`` a float32-only matrix larger than ``max_float32_bytes`` is stored as float16 (lossy;
    relative error <= 2**-11), so a KuaiRand-sized matrix stays well under 1 GB. Explicit ``"uint8"``,
    ``"float16"``, ``"float32"`` force the dtype.
    """
    if dtype == "auto" and isinstance(mat, np.ndarray) and mat.dtype in (np.uint8, np.float16):
        return torch.from_numpy(mat)  # already compact (shares memory)
    arr = np.asarray(mat, dtype=np.float32)
    if dtype == "auto":
        finite = bool(np.isfinite(arr).all())
        if finite and arr.min() >= 0 and arr.max() <= 255 and np.array_equal(arr, np.round(arr)):
            return torch.from_numpy(arr.astype(np.uint8))
        f16 = arr.astype(np.float16)
        if np.array_equal(f16.astype(np.float32), arr) or arr.nbytes > max_float32_bytes:
            return torch.from_numpy(f16)
        return torch.from_numpy(arr)
    table = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32}
    if dtype not in table:
        raise ValueError(f"gt_dtype={dtype!r}, expected one of {['auto', *table]}")
    return torch.from_numpy(arr.astype(table[dtype]))


def item_distance_matrix(
    gt: np.ndarray | torch.Tensor, device: torch.device | str = "cpu", chunk: int = 1024
) -> torch.Tensor:
    """``dist[i, j] = ||GT[:, i] - GT[:, j]||_2`` (item x item), computed in column chunks, exactly: in float32
    for integer-valued matrices whose dot products stay below 2**24, in float64 otherwise.

    Stored float32 for up to 4,096 items and float16 above (7,583 items: 115 MB).
    """
    g = torch.as_tensor(np.asarray(gt, dtype=np.float64) if not isinstance(gt, torch.Tensor) else gt)
    g = g.to(device=device, dtype=torch.float64).T.contiguous()  # [n_items, n_users]
    # integer-valued matrices (ratings, clicks) are exact in float32 while every dot product stays < 2**24
    if bool(torch.equal(g, g.round())) and float(g.abs().max()) ** 2 * g.shape[1] < 2**24:
        g = g.float()
    n = g.shape[0]
    out_dtype = torch.float32 if n <= 4096 else torch.float16
    sq = (g * g).sum(1)
    out = torch.empty((n, n), dtype=out_dtype, device=g.device)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        d2 = sq[s:e, None] + sq[None, :] - 2.0 * (g[s:e] @ g.T)
        out[s:e] = d2.double().clamp_min_(0.0).sqrt_().to(out_dtype)
    out.fill_diagonal_(0.0)
    return out


_DIST_CACHE: list[tuple[tuple, torch.Tensor]] = []


def cached_distances(src: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """`item_distance_matrix`, reused for a source matrix of identical content (the last 2 are kept).

    Keyed by shape, dtype and a blake2b digest of the bytes, so copies of a dataset (``gym.make`` deep-copies
    its kwargs) share one matrix.
    """
    arr = src.detach().cpu().numpy() if isinstance(src, torch.Tensor) else np.ascontiguousarray(src)
    key = (arr.shape, str(arr.dtype), hashlib.blake2b(arr.tobytes(), digest_size=16).hexdigest(), str(device))
    for k, dist in _DIST_CACHE:
        if k == key:
            return dist
    dist = item_distance_matrix(arr, device)
    _DIST_CACHE.append((key, dist))
    del _DIST_CACHE[:-2]
    return dist


def quit_pair_table(quit_rule: str, leave_threshold: float, item_dist: torch.Tensor | None,
                    item_categories: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Flat bool [n_items * (n_items + 1)]: ``[i * (n + 1) + j]`` = does a user leave on item ``i`` when ``j`` is in
    the quit window? Column ``n`` is False (the slot an empty window entry, -1, lands on).

    ``distance`` rule: ``dist(i, j) < M`` (``item_dist`` needed); ``category`` rule with 0 <= M < 1: ``i`` and
    ``j`` share a category (a category counted more than M times among the window's items). The table cannot
    decide the category rule with M >= 1, where the counts over the window matter.
    """
    n = int(item_categories.shape[0])
    if quit_rule == "distance" and item_dist is None:
        raise ValueError("quit_pair_table: the distance rule needs item_dist")
    if quit_rule == "category" and not 0.0 <= leave_threshold < 1.0:
        raise ValueError(f"quit_pair_table: the category rule needs 0 <= M < 1, got M={leave_threshold}")
    table = torch.zeros((n, n + 1), dtype=torch.bool, device=item_categories.device)
    cats = item_categories.float()
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        if quit_rule == "distance":
            assert item_dist is not None
            table[s:e, :n] = item_dist[s:e].float() < leave_threshold
        else:
            table[s:e, :n] = (cats[s:e] @ cats.T) > 0.5
    return table.reshape(-1)


def close_pair_share(item_dist: torch.Tensor, leave_threshold: float) -> float:
    """Share of distinct item pairs closer than M (near 1: nearly every episode ends at its second step)."""
    n = item_dist.shape[0]
    return float(((item_dist.float() < leave_threshold).sum() - n) / max(n * (n - 1), 1))


def window_keep_table(n_win: int, quit_window: str, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """bool [N + 1, N]: row ``min(t, N)`` marks the slots (oldest first) of the last N items that form the quit
    window at step ``t``; None where every filled slot counts (``last_n``, and ``published`` with N <= 2, where
    ``min(t, N - t) = min(t, N)`` for t < N)."""
    if quit_window == "last_n" or n_win <= 2:
        quit_window_size(0, n_win, quit_window)  # validates the name
        return None
    ages = torch.arange(n_win - 1, -1, -1)  # slot j holds the item of age N - 1 - j (0 = the most recent)
    sizes = torch.tensor([quit_window_size(t, n_win, quit_window) for t in range(n_win + 1)])
    return (ages[None, :] < sizes[:, None]).to(device)


def byte_masks(device: torch.device | str = "cpu") -> torch.Tensor:
    """int64 [256]: entry ``v`` holds the 8 bools "bit k of byte value v is 0" as the bytes of one int64."""
    byte_bits = (torch.arange(256, dtype=torch.uint8)[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1
    return (byte_bits == 0).view(torch.int64).view(-1).to(device)


def mask_from_bits(bits: torch.Tensor, masks: torch.Tensor, num_envs: int) -> torch.Tensor:
    """bool [num_envs, words * 64]: False where the bit of the int64 bit sets ``bits`` is set.

    One lookup in ``masks`` (`byte_masks`) per byte: the bit sets are read as bytes in memory order, bit i of a
    word being bit i % 8 of its byte i // 8 on the little-endian machines torch runs on.
    """
    full = torch.index_select(masks, 0, bits.view(torch.uint8).int())
    return full.view(torch.bool).view(num_envs, -1)
