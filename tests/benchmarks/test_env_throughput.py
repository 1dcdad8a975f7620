"""The env throughput probe: its fused yardstick does the env's work, its action stream is legal, it runs."""

from __future__ import annotations

import pytest
import torch

from recgym.benchmarks import env_throughput as et


@pytest.mark.parametrize("world", ["coat", "kuairand"])
def test_fused_step_matches_the_env_until_each_first_episode_ends(world):
    w = et.coat_sized() if world == "coat" else et.kuairand_sized(n_users=60, n_items=500, n_cats=8)
    n = 48
    env = et.world_env(w, n, "cpu")
    env.reset(seed=3)
    fused = et.fused_for(env)
    acts = et.action_stream(n, env.n_items, env.device)
    alive = torch.ones(n, dtype=torch.bool)
    ended = 0
    for t in range(et.MAX_TURN):
        _, r_env, te, tr, _ = env.step(acts[t])
        r_fused, done = fused.step(acts[t])
        assert torch.equal(r_env[alive], r_fused[alive]), f"step {t}: rewards differ"
        assert torch.equal((te | tr)[alive], done[alive]), f"step {t}: done flags differ"
        ended += int((done & alive).sum())
        alive &= ~done
    assert ended == n and not bool(alive.any())  # every env's first episode was compared to its end
    # over many episodes, each mask row masks exactly the items of the env's current episode
    for t in range(et.MAX_TURN, 100):
        fused.step(acts[t % len(acts)])
        assert torch.equal((~fused.mask).sum(1), fused.steps)


def test_action_stream_never_repeats_an_item_within_an_episode():
    for n_items in (300, 7583):
        acts = torch.stack(et.action_stream(64, n_items, torch.device("cpu")))  # [64 steps, 64 envs]
        for s in range(0, 64 - et.MAX_TURN + 1, 7):
            window = acts[s : s + et.MAX_TURN]
            assert all(window[:, i].unique().numel() == et.MAX_TURN for i in range(64))
        # cycling the 64 tensors: the wrap-around window is legal too
        wrapped = torch.cat([acts[-et.MAX_TURN // 2 :], acts[: et.MAX_TURN // 2]])
        assert all(wrapped[:, i].unique().numel() == et.MAX_TURN for i in range(64))


def test_coat_world_calibrates_the_distance_threshold():
    w = et.coat_sized()
    env = et.world_env(w, 1, "cpu")
    assert env.protocol["close_pair_share"] == pytest.approx(0.4, abs=0.01)
    assert (w.dataset.n_users, w.dataset.n_items, w.n_win) == (290, 300, 3)


def test_main_prints_the_table(capsys):
    et.main(["--worlds", "coat", "--num-envs", "1,8", "--repeats", "1", "--min-time", "0.01", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "recgym/fused" in out and "no-validate" in out and "torch threads 1" in out
    rows = [line for line in out.splitlines() if line.startswith("coat ")]
    assert len(rows) == 2 and rows[1].split()[1] == "8"
    with pytest.raises(SystemExit):
        et.main(["--worlds", "movielens"])
