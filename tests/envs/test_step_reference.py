"""RecEnv's batched step against a straightforward per-env reference on random action sequences.

The reference follows the protocol as written in `recgym.envs.rec` (per-episode user draw from the counter-based
stream, ground-truth reward, quit rules from their definitions, no-repeat mask from the episode's item list,
NEXT_STEP / SAME_STEP autoreset), one env at a time with Python lists. The ``published`` quit window is the
original code's Python slice ``seq[t - N : t]`` itself (DORL-codes ``Coat.py`` ``_determine_whether_to_leave``). Every step compares rewards, flags,
observations and the action mask; masks are also read long after their step (they must not change).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recgym.data.base import LoggedDataset
from recgym.envs import rec
from recgym.envs.rec import GroundTruthRecEnv, item_distance_matrix

M32 = 0xFFFFFFFF


def _h32(x: int) -> int:
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x5BD1E995) & M32
    x ^= x >> 16
    return x


def _user(pool: list[int], seed: int, episode: int) -> int:
    """The user of episode ``episode`` of the env keyed ``seed`` (purpose 1), as documented in core."""
    h = _h32(seed)
    h = _h32(h ^ ((seed >> 32) & M32))
    h = _h32(h ^ (episode & M32))
    h = _h32(h ^ 1)
    return pool[(h * len(pool)) >> 32]


class Reference:
    """N independent envs stepped one at a time."""

    def __init__(self, gt: np.ndarray, cats: np.ndarray, *, n_envs: int, seed: int, pool: list[int], mode: str,
                 quit_rule: str, n_win: int, threshold: float, max_turn: int, history_len: int,
                 autoreset: str, invalid_action: str = "raise", quit_window: str = "last_n") -> None:
        self.gt, self.cats, self.pool = gt, cats, pool
        self.n_items = gt.shape[1]
        self.masked = mode != "FB"
        self.quitting = mode != "NX_10" and n_win > 0 and not (quit_rule == "distance" and threshold <= 0)
        self.max_turn = 10 if mode == "NX_10" else max_turn
        self.rule, self.n_win, self.m, self.w = quit_rule, n_win, threshold, history_len
        self.autoreset, self.invalid_action, self.quit_window = autoreset, invalid_action, quit_window
        self.dist = item_distance_matrix(gt).float().numpy()
        self.seeds = [seed + i for i in range(n_envs)]
        self.episode = [0] * n_envs
        self.done = [False] * n_envs
        self.user = [0] * n_envs
        self.items: list[list[int]] = [[] for _ in range(n_envs)]
        self.rewards: list[list[float]] = [[] for _ in range(n_envs)]
        for i in range(n_envs):
            self._reset(i)

    def _reset(self, i: int) -> None:
        self.user[i] = _user(self.pool, self.seeds[i], self.episode[i])
        self.episode[i] += 1
        self.items[i], self.rewards[i] = [], []

    def _leaves(self, i: int, a: int) -> bool:
        seq, t, n = self.items[i], len(self.items[i]), self.n_win
        if self.quit_window == "published":
            window = seq[t - n : t] if t >= 1 else []  # the original's slice: a negative start counts from the end
        else:
            window = seq[-n:] if seq else []
        if not self.quitting or not window:
            return False
        if self.rule == "distance":
            return any(self.dist[a, j] < self.m for j in window)
        counts = self.cats[window].sum(0)
        return bool(((counts > self.m) & self.cats[a]).any())

    def mask(self, i: int) -> list[bool]:
        used = set(self.items[i]) if self.masked else set()
        return [j not in used for j in range(self.n_items)]

    def obs(self, i: int) -> tuple:
        items = ([-1] * self.w + self.items[i])[-self.w:]
        rewards = ([0.0] * self.w + self.rewards[i])[-self.w:]
        return self.user[i], len(self.items[i]), items, rewards

    def step(self, actions: list[int]) -> list[tuple]:
        """Per env: (reward, terminated, truncated, invalid, final obs or None)."""
        out = []
        for i, a in enumerate(actions):
            if self.autoreset == "NEXT_STEP" and self.done[i]:
                self._reset(i)
                self.done[i] = False
                out.append((0.0, False, False, False, None))
                continue
            invalid = self.masked and a in self.items[i]
            if invalid and self.invalid_action == "raise":
                raise AssertionError("the test drew an illegal action")
            leaves = self._leaves(i, a) or invalid
            r = 0.0 if invalid else float(self.gt[self.user[i], a])
            self.items[i].append(a)
            self.rewards[i].append(r)
            term = leaves
            trunc = not leaves and len(self.items[i]) >= self.max_turn
            final = None
            if term or trunc:
                if self.autoreset == "SAME_STEP":
                    final = self.obs(i)
                    self._reset(i)
                else:
                    self.done[i] = True
            out.append((r, term, trunc, invalid, final))
        return out


def _world(n_users: int = 9, n_items: int = 130, seed: int = 0) -> tuple[LoggedDataset, np.ndarray]:
    """Integer ratings 0-4 (uint8 in the env) and 1-2 categories per item out of 4; 130 items = 3 bit-set words."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 5, size=(n_users, n_items)).astype(np.float32)
    cats = np.zeros((n_items, 4), dtype=bool)
    cats[np.arange(n_items), rng.integers(0, 4, n_items)] = True
    cats[np.arange(n_items), rng.integers(0, 4, n_items)] |= rng.random(n_items) < 0.3
    logs = pd.DataFrame({"user": [0], "item": [0], "reward": [1.0]})
    ds = LoggedDataset(name="refworld", n_users=n_users, n_items=n_items, train=logs, test=logs, ground_truth=gt,
                       item_categories=cats, category_names=list("abcd"), reward_kind="rating",
                       positive_threshold=3.0, quit_rule="distance")
    return ds, gt


def _tolist(x: torch.Tensor) -> list:
    return x.tolist()


CASES = {
    # name: env kwargs; distance thresholds sit between the integer squared distances (no ties)
    "nx0_distance": dict(mode="NX_0", quit_rule="distance", num_leave_compute=2, leave_threshold=7.6),
    "fb_distance": dict(mode="FB", quit_rule="distance", num_leave_compute=3, leave_threshold=7.0),
    "nx0_category_m0": dict(mode="NX_0", quit_rule="category", num_leave_compute=2, leave_threshold=0.0),
    "fb_category_m1": dict(mode="FB", quit_rule="category", num_leave_compute=4, leave_threshold=1.0),
    "nx0_category_m1_short_history": dict(mode="NX_0", quit_rule="category", num_leave_compute=4,
                                          leave_threshold=1.0, history_len=2),
    "nx10": dict(mode="NX_10", quit_rule="distance", num_leave_compute=2, leave_threshold=100.0),
    "nx0_no_quit_users": dict(mode="NX_0", quit_rule="distance", num_leave_compute=1, leave_threshold=0.0,
                              users=[2, 5, 7]),
    "nx0_terminate": dict(mode="NX_0", quit_rule="distance", num_leave_compute=2, leave_threshold=6.0,
                          invalid_action="terminate"),
    # the published window (seq[t - N : t]) differs from the last N items for N >= 3 while t < N
    "nx0_distance_published": dict(mode="NX_0", quit_rule="distance", num_leave_compute=5, leave_threshold=4.5,
                                   quit_window="published"),
    "fb_distance_published_n7": dict(mode="FB", quit_rule="distance", num_leave_compute=7, leave_threshold=4.1,
                                     quit_window="published", max_turn=12),
    "nx0_category_m0_published": dict(mode="NX_0", quit_rule="category", num_leave_compute=4, leave_threshold=0.0,
                                      quit_window="published"),
    "fb_category_m1_published_short_history": dict(mode="FB", quit_rule="category", num_leave_compute=6,
                                                   leave_threshold=1.0, quit_window="published", history_len=3),
    "nx0_terminate_published": dict(mode="NX_0", quit_rule="distance", num_leave_compute=3, leave_threshold=6.0,
                                    invalid_action="terminate", quit_window="published"),
}


@pytest.mark.parametrize("path", ["cpu", "no_readback", "no_pair_table"])
@pytest.mark.parametrize("autoreset", ["NEXT_STEP", "SAME_STEP"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_step_matches_reference(case, autoreset, path, monkeypatch):
    """``no_readback``: the accelerator code paths (masked fills, scheduled table refills) run on cpu;
    ``no_pair_table``: the quit rules are decided from distances / category counts, not the item-pair table."""
    if path == "no_pair_table":
        monkeypatch.setattr(rec, "_MAX_PAIR_TABLE", 0)
    ds, gt = _world()
    kw = {"max_turn": 8, **CASES[case]}
    n_envs, seed = 6, 11
    env = GroundTruthRecEnv(ds, num_envs=n_envs, protocol="custom", autoreset_mode=autoreset, **kw)
    if path == "no_readback":
        env._readback_ok = False
    counts_matter = kw["quit_rule"] == "category" and kw["leave_threshold"] >= 1
    assert (env._quit_pairs() is None) == (path == "no_pair_table" or not env.protocol["quitting"] or counts_matter)
    pool = kw.get("users", list(range(gt.shape[0])))
    ref = Reference(gt, ds.item_categories, n_envs=n_envs, seed=seed, pool=pool, mode=kw["mode"],
                    quit_rule=kw["quit_rule"], n_win=kw["num_leave_compute"], threshold=kw["leave_threshold"],
                    max_turn=kw["max_turn"], history_len=kw.get("history_len", 10), autoreset=autoreset,
                    invalid_action=kw.get("invalid_action", "raise"), quit_window=kw.get("quit_window", "last_n"))
    assert env.protocol["quit_window"] == ref.quit_window
    rng = np.random.default_rng(sorted(CASES).index(case))
    obs, info = env.reset(seed=seed)
    kept: list[tuple[int, dict, list[list[bool]]]] = []  # (step, info, reference masks), read at the end

    def check_obs(o: dict, t: int) -> None:
        for i in range(n_envs):
            u, s, items, rewards = ref.obs(i)
            got = (int(o["user"][i]), int(o["step"][i]), _tolist(o["items"][i]), _tolist(o["rewards"][i]))
            assert got == (u, s, items, rewards), f"{case} step {t} env {i}: obs {got} != {(u, s, items, rewards)}"

    check_obs(obs, -1)
    kept.append((-1, info, [ref.mask(i) for i in range(n_envs)]))
    episodes_seen = 0
    for t in range(70):
        actions = []
        for i in range(n_envs):
            allowed = np.flatnonzero(ref.mask(i))
            if kw.get("invalid_action") == "terminate" and ref.items[i] and rng.random() < 0.15:
                actions.append(int(rng.choice(ref.items[i])))  # a deliberate repeat
            else:
                actions.append(int(rng.choice(allowed)))
        if autoreset == "NEXT_STEP":  # ignored actions of ended envs may be anything
            actions = [a if not ref.done[i] else int(rng.integers(-50, 500)) for i, a in enumerate(actions)]
        expected = ref.step(actions)
        obs, r, te, tr, info = env.step(torch.tensor(actions))
        assert r.dtype == torch.float32
        for i, (er, ete, etr, einv, final) in enumerate(expected):
            assert (float(r[i]), bool(te[i]), bool(tr[i])) == (er, ete, etr), f"{case} step {t} env {i}"
            if "invalid_action" in info:
                assert bool(info["invalid_action"][i]) == einv
            if autoreset == "SAME_STEP":
                assert bool(info["_final_obs"][i]) == (final is not None)
                if final is not None:
                    fo = info["final_obs"]
                    got = (int(fo["user"][i]), int(fo["step"][i]), _tolist(fo["items"][i]), _tolist(fo["rewards"][i]))
                    assert got == final
            episodes_seen += int(ete or etr)
        check_obs(obs, t)
        masks = [ref.mask(i) for i in range(n_envs)]
        if t % 3 == 0:
            assert _tolist(info["action_mask"]) == masks, f"{case} step {t}: action mask"
        else:
            kept.append((t, info, masks))  # first read after many later steps
    assert episodes_seen > 2 * n_envs, "the sequence should cover many episodes"
    for t, inf, masks in kept:
        m = inf["action_mask"]
        assert m.shape == (n_envs, gt.shape[1]) and m.dtype == torch.bool
        assert m.is_contiguous() or kw["mode"] == "FB"  # FB: an all-True broadcast view
        assert _tolist(m) == masks, f"{case}: the mask of step {t}, read later, changed"


def test_masks_stay_valid_after_reads_and_copy_mask_false_reuses_one_buffer():
    ds, _ = _world()
    env = GroundTruthRecEnv(ds, num_envs=3, protocol="custom", mode="NX_0", num_leave_compute=1,
                            leave_threshold=0.0, max_turn=5)
    _, info0 = env.reset(seed=0)
    m0 = info0["action_mask"]
    _, _, _, _, info1 = env.step(torch.tensor([1, 2, 3]))
    m1 = info1["action_mask"]
    env.step(torch.tensor([4, 5, 6]))
    assert bool(m0.all()) and m1.sum(1).tolist() == [129] * 3 and not bool(m1[torch.arange(3), [1, 2, 3]].any())
    assert info1["action_mask"] is m1  # computed once, then stored
    assert not bool(env.action_mask[torch.arange(3), [4, 5, 6]].any())
    live = GroundTruthRecEnv(ds, num_envs=3, protocol="custom", mode="NX_0", num_leave_compute=1,
                             leave_threshold=0.0, max_turn=5, copy_mask=False)
    _, i0 = live.reset(seed=0)
    a = i0["action_mask"]
    _, _, _, _, i1 = live.step(torch.tensor([1, 2, 3]))
    b = i1["action_mask"]
    assert a.data_ptr() == b.data_ptr() and not bool(b[torch.arange(3), [1, 2, 3]].any())


def test_episode_table_gives_per_env_randint_values_across_refills_and_reseeds():
    ds, _ = _world()
    env = GroundTruthRecEnv(ds, num_envs=5, protocol="custom", mode="FB", num_leave_compute=1,
                            leave_threshold=0.0, max_turn=1, autoreset_mode="SAME_STEP")
    env.reset(seed=3)
    for t in range(150):  # every step ends every episode: 150 episodes per env, several table refills
        if t == 70:
            env.reset(seed=9, options={"reset_mask": torch.tensor([True, False, True, False, False])})
        expected = env.per_env_randint(999, purpose=5)
        assert torch.equal(env.episode_randint(999, purpose=5), expected)
        env.step(torch.zeros(5, dtype=torch.int64))
    assert int(env.episode_ids.min()) > 70


class _ReadBacks:
    """Counts reads of tensor values into Python (each one a host sync on an accelerator)."""

    NAMES = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist", "cpu", "numpy")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in self.NAMES:
            orig = getattr(torch.Tensor, name)

            def counted(t, *a, _orig=orig, **k):
                self.count += 1
                return _orig(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("autoreset", ["NEXT_STEP", "SAME_STEP", "DISABLED"])
@pytest.mark.parametrize("validate", [True, False])
def test_read_backs_per_step_without_the_cpu_shortcuts(validate, autoreset, monkeypatch):
    ds, _ = _world()
    env = GroundTruthRecEnv(ds, num_envs=4, protocol="custom", mode="NX_0", quit_rule="distance",
                            num_leave_compute=2, leave_threshold=7.6, max_turn=6, validate_actions=validate,
                            autoreset_mode=autoreset)
    env._readback_ok = False  # what an accelerator runs
    env.reset(seed=0)
    acts = [torch.tensor([(7 * i + 11 * t) % 130 for i in range(4)]) for t in range(60)]
    counter = _ReadBacks(monkeypatch)
    for t in range(60):
        if autoreset == "DISABLED":
            env.reset(options={"reset_mask": env.done})
        before = counter.count
        env.step(acts[t])
        assert counter.count - before == int(validate), f"step {t}: {counter.count - before} read-backs"
