"""The env throughput probe: its fused yardstick does the env's work, its action stream is legal, it runs as a
function, as ``recgym perf env`` and as the ``throughput`` suite's probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from recgym.benchmarks.perf import env as et
from recgym.benchmarks.probes import call_probe
from recgym.benchmarks.suite import load_suite
from recgym.cli import app


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


FAST = {"worlds": ["coat"], "num_envs": [1, 8], "repeats": 1, "min_time": 0.01, "device": "cpu"}


def test_rows_and_the_table():
    rows = et.env_throughput(**FAST)
    assert [(r["device"], r["world"], r["num_envs"]) for r in rows] == [("cpu", "coat", 1), ("cpu", "coat", 8)]
    for r in rows:
        assert r["recgym"] > 0 and r["no_validate"] > 0 and r["fused"] > 0
        assert r["recgym/fused"] == pytest.approx(r["recgym"] / r["fused"])
        assert (r["users"], r["items"], r["threads"]) == (290, 300, 1) and r["quit_rule"].startswith("distance N=3 M=")
    text = et.format_env_throughput(rows)
    assert "env steps per second, device cpu, torch threads 1, best of 1" in text
    assert "recgym/fused" in text and "no-validate" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("coat ")]
    assert len(lines) == 2 and lines[1].split()[1] == "8" and all(ln.count("|") == 5 for ln in lines)
    assert "coat: 290 users x 300 items, quit rule distance N=3" in text


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"worlds: unknown \['movielens'\]; expected some of \['coat', 'kuairand'\]"):
        et.env_throughput(worlds=["movielens"])
    with pytest.raises(ValueError, match="num_envs must be a non-empty list of sizes >= 1"):
        et.env_throughput(num_envs=[0])
    with pytest.raises(ValueError, match="min_time > 0"):
        et.env_throughput(min_time=0)


def test_cli_command_and_suite_probe(tmp_path: Path):
    out = tmp_path / "rows.json"
    res = CliRunner().invoke(app, ["perf", "env", "--worlds", "coat", "--num-envs", "1,8", "--repeats", "1",
                                   "--min-time", "0.01", "--device", "cpu", "--json-out", str(out)])
    assert res.exit_code == 0, res.output
    assert "env steps per second, device cpu" in res.output and len(json.loads(out.read_text())) == 2
    bad = CliRunner().invoke(app, ["perf", "env", "--worlds", "movielens"])
    assert bad.exit_code == 2 and "unknown ['movielens']" in bad.output
    # the suite's probe entry calls the same function with keyword args
    suite = load_suite("throughput")
    entry = next(p for p in suite.probes if p.name == "env_throughput")
    assert entry.probe == "env_throughput" and entry.args == {"num_envs": [1, 64, 1024, 16384]}
    rows, _ = call_probe(entry.probe, {**entry.args, **FAST})
    assert [r["num_envs"] for r in rows] == [1, 8]
