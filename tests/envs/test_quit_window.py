"""The quit window: ``published`` (the original code's ``seq[t - N : t]``) against ``last_n`` (the last N items).

Hand-built sequences check the window size at every step and the step at which a user quits for N = 1, 3, 7,
10; random no-repeat Coat episodes check the mean Length measured with the original rule (3.09 at
(N, M) = (3, 10), 13.96 at (7, 6); 20,000 episodes each).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from recgym.data.base import LoggedDataset
from recgym.envs import rec
from recgym.envs.protocol import PROTOCOLS, QUIT_WINDOWS, quit_window_size, resolve_protocol
from recgym.envs.rec import GroundTruthRecEnv
from tests.conftest import require_data

MAX_TURN = 14


def _original_window(seq: list[int], t: int, n: int) -> list[int]:
    """The original ``_determine_whether_to_leave`` window (DORL-codes ``Coat.py``), Python slice semantics."""
    return seq[t - n : t] if t >= 1 else []


def test_window_sizes_follow_the_python_slice():
    assert [quit_window_size(t, 10, "published") for t in range(1, 13)] == [1, 2, 3, 4, 5, 4, 3, 2, 1, 10, 10, 10]
    assert [quit_window_size(t, 10, "last_n") for t in range(1, 13)] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]
    for n in (1, 3, 7, 10):
        for t in range(0, 2 * n + 3):
            seq = list(range(t))
            window = _original_window(seq, t, n)
            assert window == seq[len(seq) - len(window):]  # always the most recent items
            assert quit_window_size(t, n, "published") == len(window), (n, t)
            assert quit_window_size(t, n, "last_n") == len(seq[-n:] if seq else [])
    with pytest.raises(ValueError, match=r"quit_window='first_n', expected one of \['published', 'last_n'\]"):
        quit_window_size(1, 3, "first_n")


def _line_world(n_items: int = 2 + MAX_TURN) -> LoggedDataset:
    """One user; item 0 and item 1 at distance 1, every other pair at distance >= 9 (M = 5 separates them)."""
    gt = np.array([[0.0, 1.0, *[10.0 * i for i in range(2, n_items)]]], dtype=np.float32)
    logs = pd.DataFrame({"user": [0], "item": [0], "reward": [1.0]})
    return LoggedDataset(name="line", n_users=1, n_items=n_items, train=logs, test=logs, ground_truth=gt,
                         item_categories=np.ones((n_items, 1), dtype=bool), category_names=["all"],
                         reward_kind="rating", positive_threshold=5.0, quit_rule="distance")


def _episode_lengths(n: int, window: str, placements: list[tuple[int, int]], readback: bool = True
                     ) -> list[tuple[int, bool]]:
    """Per (p, t): item 1 at step p, item 0 at step t, distinct far items elsewhere; (Length, terminated).

    ``readback=False`` runs the accelerator code path (no read-back of device values) on cpu."""
    env = GroundTruthRecEnv(_line_world(), num_envs=len(placements), protocol="custom", mode="NX_0",
                            num_leave_compute=n, leave_threshold=5.0, max_turn=MAX_TURN, quit_window=window,
                            validate_actions=readback)
    env._readback_ok = readback
    env.reset(seed=0)
    acts = torch.tensor([[1 if s == p else 0 if s == t else 2 + s for s in range(MAX_TURN)] for p, t in placements])
    out: list[tuple[int, bool] | None] = [None] * len(placements)
    for s in range(MAX_TURN):
        _, _, te, tr, _ = env.step(acts[:, s].contiguous())
        for i in torch.nonzero(te | tr).flatten().tolist():
            if out[i] is None:
                out[i] = (s + 1, bool(te[i]))
    assert all(o is not None for o in out)
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("path", ["pair_table", "no_pair_table", "no_readback"])
@pytest.mark.parametrize("n", [1, 3, 7, 10])
def test_hand_built_sequences_quit_where_the_original_slice_says(n, path, monkeypatch):
    if path == "no_pair_table":
        monkeypatch.setattr(rec, "_MAX_PAIR_TABLE", 0)
    placements = [(p, t) for t in range(1, MAX_TURN) for p in range(t)]
    for window in QUIT_WINDOWS:
        got = _episode_lengths(n, window, placements, readback=path != "no_readback")
        sizes = {t: 0 for t in range(1, MAX_TURN)}
        for (p, t), (length, term) in zip(placements, got, strict=True):
            seq = [1 if s == p else 2 + s for s in range(t)]
            leaves = any(j == 1 for j in (_original_window(seq, t, n) if window == "published" else seq[-n:]))
            assert (length, term) == ((t + 1, True) if leaves else (MAX_TURN, False)), (window, n, p, t)
            sizes[t] += leaves  # item 1 counts iff its age t - 1 - p is below the window size
        assert [sizes[t] for t in sorted(sizes)] == [quit_window_size(t, n, window) for t in sorted(sizes)]
    # the quitting step, by hand: item 1 first (p = 0), item 0 at step t
    ends = {w: zip(placements, _episode_lengths(n, w, placements), strict=True) for w in QUIT_WINDOWS}
    quit_steps = {w: [t for (p, t), (_, te) in ends[w] if p == 0 and te] for w in QUIT_WINDOWS}
    assert quit_steps["last_n"] == list(range(1, n + 1))
    assert quit_steps["published"] == sorted({*range(1, n // 2 + 1), n})  # t <= N / 2, or t = N


def test_protocol_defaults_and_overrides():
    assert {name: p.quit_window for name, p in PROTOCOLS.items()} == {
        "dorl": "published", "dorl_code": "published", "roler": "last_n", "easyrl4rec": "published",
        "custom": "last_n"}
    assert resolve_protocol("dorl", "coat", "distance").quit_window == "published"
    assert resolve_protocol("dorl", "coat", "distance", quit_window="last_n").quit_window == "last_n"
    assert resolve_protocol(None, "coat", "distance").quit_window == "last_n"
    with pytest.raises(ValueError, match=r"quit_window='slice', expected one of \['published', 'last_n'\]"):
        resolve_protocol("dorl", "coat", "distance", quit_window="slice")
    # roler: N = 1, where both windows are the one previous item
    assert all(quit_window_size(t, 1, "published") == quit_window_size(t, 1, "last_n") for t in range(40))
    env = GroundTruthRecEnv(_line_world(), num_envs=2, protocol="easyrl4rec", leave_threshold=5.0)
    _, info = env.reset(seed=0)
    assert env.protocol["quit_window"] == info["protocol"]["quit_window"] == "published"
    assert env.effective_kwargs()["quit_window"] == "published"
    sib = env.make_sibling(3)
    assert sib.protocol["quit_window"] == "published"


def _random_no_repeat_lengths(n: int, m: float, window: str, episodes: int, seed: int) -> torch.Tensor:
    """Length of one episode per env under a uniformly random no-repeat policy on Coat (NX_0, max_turn 30)."""
    env = GroundTruthRecEnv("coat", num_envs=episodes, protocol="custom", mode="NX_0", num_leave_compute=n,
                            leave_threshold=m, max_turn=30, quit_window=window, validate_actions=False)
    env.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    order = torch.rand(episodes, env.n_items, generator=gen).argsort(1)  # a random permutation per episode
    length = torch.zeros(episodes, dtype=torch.int64)
    for t in range(30):
        _, _, te, tr, _ = env.step(order[:, t].contiguous())
        length = torch.where((length == 0) & (te | tr), t + 1, length)
    assert bool((length > 0).all())
    return length.float()


# the original rule's mean Length on Coat under a random no-repeat policy, 20,000 episodes each
PUBLISHED_LENGTH = {(3, 10.0): 3.09, (7, 6.0): 13.96}


def _check_coat_lengths(episodes: int) -> None:
    require_data("coat/train.ascii", "coat/test.ascii", "coat/rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii")
    for (n, m), target in PUBLISHED_LENGTH.items():
        pub = _random_no_repeat_lengths(n, m, "published", episodes, seed=0)
        last = _random_no_repeat_lengths(n, m, "last_n", episodes, seed=0)
        # same users and items: the published window is a subset of the last N items, so nobody leaves earlier
        assert bool((pub >= last).all()) and float(pub.mean()) > float(last.mean())
        # 3 standard errors of the difference of two means (this run, the 20,000-episode reference) + rounding
        tol = 3 * float(pub.std()) * math.sqrt(1 / episodes + 1 / 20_000) + 0.005
        assert abs(float(pub.mean()) - target) < tol, (n, m, float(pub.mean()), target, tol)
        assert float(last.mean()) < target - tol  # the last N items: measurably shorter episodes


def test_coat_random_no_repeat_length_matches_the_original_rule():
    _check_coat_lengths(2_000)


@pytest.mark.slow
def test_coat_random_no_repeat_length_matches_the_original_rule_20000_episodes():
    _check_coat_lengths(20_000)
