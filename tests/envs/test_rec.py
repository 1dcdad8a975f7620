"""RecEnv / GroundTruthRecEnv dynamics: quit rules by hand, masks, modes, presets, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recgym.envs.rec import (
    PROTOCOLS,
    GroundTruthRecEnv,
    RecEnv,
    compact_matrix,
    item_distance_matrix,
    resolve_protocol,
)
from tests.envs.helpers import TOY_GT, toy_dataset


def _run(env: GroundTruthRecEnv, items: list[int]):
    env.reset(seed=0)
    out = []
    for a in items:
        _, r, te, tr, info = env.step(torch.tensor([a]))
        out.append((float(r[0]), bool(te[0]), bool(tr[0])))
    return out


def _env(quit_rule="distance", **kw) -> GroundTruthRecEnv:
    kw.setdefault("protocol", "custom")
    kw.setdefault("users", [0])
    kw.setdefault("autoreset_mode", "DISABLED")
    return GroundTruthRecEnv(toy_dataset(quit_rule=quit_rule), num_envs=1, **kw)


def test_item_distance_matrix_matches_hand_values():
    d = item_distance_matrix(TOY_GT)
    hand = {(0, 1): 2, (0, 2): 24, (0, 3): 34, (1, 2): 18, (1, 3): 24, (2, 3): 2}
    for (i, j), sq in hand.items():
        assert d[i, j].item() == pytest.approx(math.sqrt(sq), abs=1e-6)
        assert d[j, i].item() == pytest.approx(math.sqrt(sq), abs=1e-6)
    assert torch.all(d.diagonal() == 0)
    # a continuous matrix goes through float64 and agrees with numpy
    g = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    ref = np.sqrt(((g[:, :, None] - g[:, None, :]) ** 2).sum(0))
    np.testing.assert_allclose(item_distance_matrix(g).numpy(), ref, rtol=1e-6, atol=1e-6)


def test_distance_quit_rule_window_and_threshold():
    # 0 -> 2 (d02 = 4.9 >= 1.5 stays) -> 3 (d23 = 1.41 < 1.5: quits; the quitting step still pays GT[0,3] = 4)
    assert _run(_env(num_leave_compute=2, leave_threshold=1.5), [0, 2, 3]) == [
        (1.0, False, False), (3.0, False, False), (4.0, True, False)]
    # 1 -> 3 -> 0: with N=2 the window [1, 3] contains item 1 (d01 = 1.41 < 1.5) -> quit; with N=1 only [3]
    assert _run(_env(num_leave_compute=2, leave_threshold=1.5), [1, 3, 0])[-1] == (1.0, True, False)
    assert _run(_env(num_leave_compute=1, leave_threshold=1.5), [1, 3, 0])[-1] == (1.0, False, False)
    # threshold below the distance: nobody quits
    assert not any(te for _, te, _ in _run(_env(num_leave_compute=2, leave_threshold=1.4), [0, 1, 2, 3]))


def test_step_zero_never_quits_even_with_huge_threshold():
    env = _env(num_leave_compute=3, leave_threshold=1e9)
    assert _run(env, [2, 3]) == [(3.0, False, False), (4.0, True, False)]
    # every pair closer than M: the protocol says the episodes will be degenerate
    assert env.protocol["close_pair_share"] == 1.0 and "nearly every episode" in env.protocol["note"]
    # M = 1.5: pairs (0,1) and (2,3) of 6 are closer
    env = _env(num_leave_compute=2, leave_threshold=1.5)
    assert env.protocol["close_pair_share"] == pytest.approx(2 / 6, abs=1e-4) and "note" not in env.protocol


def test_category_quit_rule():
    # M=0, N=2: 0{a} -> 2{b} -> 3{c} stay; 1{a,b} shares b with the window [2, 3] -> quit
    res = _run(_env("category", num_leave_compute=2, leave_threshold=0), [0, 2, 3, 1])
    assert [te for _, te, _ in res] == [False, False, False, True]
    # M=1, N=3, FB: 0{a} 1{a,b} 2{b} 3{c} stay (no category more than once... b once before 2), then
    # 1{a,b} with window [1, 2, 3]: b appears twice > 1 -> quit
    res = _run(_env("category", num_leave_compute=3, leave_threshold=1, mode="FB"), [0, 1, 2, 3, 1])
    assert [te for _, te, _ in res] == [False, False, False, False, True]
    assert [r for r, _, _ in res] == [1.0, 2.0, 3.0, 4.0, 2.0]


def test_max_turn_truncates_and_quit_wins_over_truncation():
    res = _run(_env(num_leave_compute=1, leave_threshold=0.0, max_turn=3), [0, 1, 2])
    assert res[-1] == (3.0, False, True) and not any(te or tr for _, te, tr in res[:-1])
    # quitting on the last allowed step: terminated, not truncated
    res = _run(_env(num_leave_compute=1, leave_threshold=1.5, max_turn=2), [0, 1])
    assert res[-1] == (2.0, True, False)


def test_nx_mask_and_repeat_errors():
    env = _env(num_leave_compute=1, leave_threshold=0.0, mode="NX_0")
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [[True, True, True, True]]
    _, _, _, _, info = env.step(torch.tensor([2]))
    assert info["action_mask"].tolist() == [[True, True, False, True]]
    with pytest.raises(ValueError, match=r"actions\[0\] = 2 repeats an item"):
        env.step(torch.tensor([2]))
    # terminate mode: reward 0, episode over, flagged
    env = _env(num_leave_compute=1, leave_threshold=0.0, mode="NX_0", invalid_action="terminate")
    env.reset(seed=0)
    env.step(torch.tensor([2]))
    _, r, te, tr, info = env.step(torch.tensor([2]))
    assert float(r[0]) == 0.0 and bool(te[0]) and not bool(tr[0]) and bool(info["invalid_action"][0])
    # FB: repeats allowed, mask all True
    env = _env(num_leave_compute=1, leave_threshold=0.0, mode="FB")
    assert [r for r, _, _ in _run(env, [3, 3, 3])] == [4.0, 4.0, 4.0]


def test_nx10_forces_ten_steps_without_quitting():
    ds = toy_dataset(gt=np.tile(TOY_GT, (1, 3)))  # 12 items so 10 distinct exist
    env = GroundTruthRecEnv(ds, num_envs=1, protocol="dorl", mode="NX_10", num_leave_compute=3,
                            leave_threshold=1e9, autoreset_mode="DISABLED")
    assert env.protocol["max_turn"] == 10 and env.protocol["quitting"] is False
    env.reset(seed=0)
    flags = [env.step(torch.tensor([i]))[2:4] for i in range(10)]
    assert not any(bool(te[0]) for te, _ in flags)
    assert [bool(tr[0]) for _, tr in flags] == [False] * 9 + [True]


def test_presets_resolve_published_values():
    assert resolve_protocol("dorl", "coat", "distance").num_leave_compute == 3
    p = resolve_protocol("dorl", "kuairand", "category")
    assert (p.num_leave_compute, p.leave_threshold, p.mode, p.max_turn) == (4, 0.0, "NX_0", 30)
    assert resolve_protocol("dorl_code", "kuairec", "category").num_leave_compute == 10
    for ds in ("coat", "yahoo", "kuairand", "kuairec", "ml1m", "synthetic"):
        p = resolve_protocol("roler", ds, "distance")
        assert (p.num_leave_compute, p.leave_threshold, p.mode) == (1, 0.0, "NX_0")
    e = {d: resolve_protocol("easyrl4rec", d, "distance") for d in ("coat", "yahoo", "kuairec", "kuairand", "ml1m")}
    assert {d: (p.num_leave_compute, p.leave_threshold) for d, p in e.items()} == {
        "coat": (7, 6.0), "yahoo": (3, 120.0), "kuairec": (9, 1.0), "kuairand": (10, 0.0), "ml1m": (7, 75.0)}
    assert all(p.mode == "FB" for p in e.values())
    assert resolve_protocol("dorl", "ml1m", "distance").source == "fallback"
    assert resolve_protocol("dorl", "yahoo_r3", "distance").leave_threshold == 120.0
    # explicit kwargs win
    p = resolve_protocol("easyrl4rec", "coat", "distance", num_leave_compute=2, mode="NX_0", max_turn=5)
    assert (p.num_leave_compute, p.leave_threshold, p.mode, p.max_turn) == (2, 6.0, "NX_0", 5)
    assert set(PROTOCOLS) >= {"dorl", "roler", "easyrl4rec", "custom"}


def test_bad_protocol_arguments_name_the_valid_values():
    with pytest.raises(ValueError, match=r"unknown protocol 'nope'.*'dorl'.*'easyrl4rec'.*'roler'"):
        resolve_protocol("nope", "coat", "distance")
    with pytest.raises(ValueError, match=r"unknown mode 'NX_5'"):
        resolve_protocol("dorl", "coat", "distance", mode="NX_5")
    with pytest.raises(ValueError, match="quit_rule"):
        resolve_protocol("dorl", "coat", "distance", quit_rule="time")
    with pytest.raises(ValueError, match="max_turn"):
        resolve_protocol("dorl", "coat", "distance", max_turn=0)
    with pytest.raises(ValueError, match=r"users must be ids in \[0, 3\)"):
        GroundTruthRecEnv(toy_dataset(), users=[0, 5])
    with pytest.raises(ValueError, match="invalid_action"):
        GroundTruthRecEnv(toy_dataset(), invalid_action="ignore")
    with pytest.raises(TypeError, match="LoggedDataset"):
        RecEnv("coat")  # type: ignore[arg-type]


def test_users_list_and_protocol_in_info_and_spec():
    env = GroundTruthRecEnv(toy_dataset(), num_envs=64, users=[1, 2], protocol="roler")
    obs, info = env.reset(seed=3)
    assert set(obs["user"].tolist()) == {1, 2}
    assert info["protocol"]["name"] == "roler" and info["protocol"]["num_leave_compute"] == 1
    assert env.effective_kwargs()["leave_threshold"] == 0.0


def test_compact_matrix_dtypes():
    assert compact_matrix(np.array([[0, 1], [5, 255]], np.float32)).dtype == torch.uint8
    assert compact_matrix(np.array([[0.5, 1.25]], np.float32)).dtype == torch.float16
    assert compact_matrix(np.array([[0.1, 1.0]], np.float32)).dtype == torch.float32
    assert compact_matrix(np.array([[0.1]], np.float32), max_float32_bytes=0).dtype == torch.float16
    assert compact_matrix(np.array([[3, 4]], np.float32), "float32").dtype == torch.float32
    with pytest.raises(ValueError, match="gt_dtype"):
        compact_matrix(np.zeros((1, 1), np.float32), "int4")
    env = GroundTruthRecEnv(toy_dataset())
    assert env.gt.dtype == torch.uint8 and env.protocol["gt_dtype"] == "uint8"
    # KuaiRand-sized binary clicks stay far below 1 GB as uint8
    assert 27285 * 7583 * 1 < 2**30 * 0.25


def test_synthetic_oracle_reaches_exact_optimum():
    env = GroundTruthRecEnv("synthetic", num_envs=8, protocol="roler", users=list(range(8)),
                            autoreset_mode="DISABLED")
    obs, info = env.reset(seed=0)
    assert env.protocol["quitting"] is False
    total = torch.zeros(8)
    for _ in range(env.max_turn):
        a = env.gt[obs["user"]].float().masked_fill(~info["action_mask"], -1e9).argmax(1)
        obs, r, te, tr, info = env.step(a)
        total += r
    assert bool(tr.all()) and not bool(te.any())
    torch.testing.assert_close(total, env.optimal_return(obs["user"]), rtol=1e-5, atol=1e-4)


def test_set_mode_switches_and_requires_reset():
    env = GroundTruthRecEnv(toy_dataset(), num_envs=2, protocol="dorl")
    env.reset(seed=0)
    env.set_mode("FB")
    assert env.mode == "FB" and bool(env.action_mask.all())
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(torch.tensor([0, 0]))
    env.set_mode("NX_10")
    assert env.max_turn == 10
