"""Backends: the local loop resumes a killed grid without redoing finished runs; Ray gives the same numbers
(the Ray test is skipped when Ray is not installed: it is the optional `ray` extra)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recgym.benchmarks.backends import run_grid
from recgym.benchmarks.grid import expand
from recgym.benchmarks.suite import load_suite, suite_from_flags
from tests.benchmarks.helpers import ENV, is_locked, write_suite

REPO = Path(__file__).resolve().parents[2]


def test_kill_and_resume_does_not_redo_finished_runs(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "kr.toml", sleep=1.5)
    counter = tmp_path / "counter.txt"
    runs = tmp_path / "runs"
    env = {**os.environ, "RECGYM_TEST_COUNTER": str(counter), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "recgym.cli", "bench", "--suite", str(suite), "--runs-dir", str(runs),
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first_done = runs / "kr" / "syn" / "tiny_random" / "seed0" / "DONE"
    try:
        deadline = time.time() + 90
        while not first_done.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "bench exited early"
            assert time.time() < deadline, "first run did not finish in time"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in (runs / "kr" / "syn" / "tiny_random").glob("*/DONE")}
    assert "seed0" in done_before and len(done_before) < 4, "the kill must land mid-grid"
    assert json.loads((runs / "kr" / "suite.json").read_text())["agents"] == ["tiny_random"]
    learn_calls_before = counter.read_text().split("\n")[:-1]

    os.environ["RECGYM_TEST_COUNTER"] = str(counter)
    try:
        res = run_grid(load_suite(suite), runs, progress=False)
    finally:
        del os.environ["RECGYM_TEST_COUNTER"]
    status = {r.spec.seed: r.status for r in res}
    for name in done_before:
        assert status[int(name[4:])] == "skipped"
    assert sorted(status.values()).count("done") == 4 - len(done_before)
    for name, mtime in done_before.items():  # finished runs were not redone
        assert (runs / "kr" / "syn" / "tiny_random" / name / "DONE").stat().st_mtime_ns == mtime
    calls = [int(line.split()[0]) for line in counter.read_text().split("\n")[:-1]]
    seeds_done_before = {int(n[4:]) for n in done_before}
    for s in seeds_done_before:
        assert calls.count(s) == 1  # learned once, before the kill
    for s in set(range(4)) - seeds_done_before:
        assert calls.count(s) == 1 + sum(1 for line in learn_calls_before if int(line.split()[0]) == s)
    assert all((runs / "kr" / "syn" / "tiny_random" / f"seed{s}" / "DONE").exists() for s in range(4))
    assert not [p for p in runs.rglob(".lock") if is_locked(p.parent)]  # the killed process holds no lock


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend 'slurm'; valid: \\['local', 'ray'\\]"):
        run_grid(load_suite(write_suite(tmp_path / "s.toml", seeds="[0]")), tmp_path, backend="slurm")


def _ray_or_skip():
    """The ``ray`` module; a skip when it is not installed, a failure in CI (RECGYM_REQUIRE_RAY=1 installs it)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("RECGYM_REQUIRE_RAY") == "1":
            pytest.fail("Ray is not installed but RECGYM_REQUIRE_RAY=1 (make installs the ray extra)")
        pytest.skip("Ray is an optional extra (pip install 'recgym[ray]'); not installed")
    return ray


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster (2 CPUs) for the module's tests."""
    ray = _ray_or_skip()
    from recgym.benchmarks.backends.ray import local_runtime_env

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=local_runtime_env())
    yield ray
    ray.shutdown()


def test_tiny_grid_on_local_ray_matches_the_local_backend(local_ray, tmp_path: Path) -> None:
    from recgym.benchmarks.backends.ray import run_grid_ray

    s = suite_from_flags([ENV], ["tiny_random", "tiny_crash"], [0, 1], 16, eval_episodes=8, num_envs=8,
                         env_kwargs={"dataset_kwargs": {"n_users": 60, "n_items": 80, "seed": 3}}, name="ray",
                         imports=["tests.benchmarks._agents"])
    specs = expand(s)
    res = run_grid_ray(specs, tmp_path, progress=False, tensorboard=False)
    assert [r.status for r in res] == ["done", "done", "failed", "failed"]
    assert local_ray.is_initialized()  # the backend leaves a Ray it did not start running
    for seed in (0, 1):
        run = tmp_path / "ray" / ENV / "tiny_random" / f"seed{seed}"
        assert (run / "DONE").is_file() and (run / "checkpoint").is_file()
        assert json.loads((run / "config.json").read_text())["spec"]["seed"] == seed
    assert "deliberate failure" in (tmp_path / "ray" / ENV / "tiny_crash" / "seed0" / "error.txt").read_text()
    # same numbers as the local backend, run by run (the runs are deterministic), and a rerun skips everything
    local = run_grid(specs[:2], tmp_path / "local", progress=False, tensorboard=False)
    assert [r.final for r in res[:2]] == [r.final for r in local] and res[0].final != res[1].final
    again = run_grid_ray(specs, tmp_path, progress=False)
    assert [r.status for r in again] == ["skipped", "skipped", "failed", "failed"]


def test_a_killed_ray_worker_s_run_is_retried(local_ray, tmp_path: Path) -> None:
    from recgym.benchmarks.backends.ray import run_grid_ray

    deaths = tmp_path / "deaths"
    deaths.mkdir()
    kw = dict(eval_episodes=8, num_envs=8, env_kwargs={"dataset_kwargs": {"n_users": 60, "n_items": 80, "seed": 3}},
              imports=["tests.benchmarks._agents"])
    specs = expand(suite_from_flags([ENV], ["tiny_random"], [0], 16, name="die",
                                    agent_config={"die_once_dir": str(deaths)}, **kw))
    res = run_grid_ray(specs, tmp_path, progress=False, tensorboard=False)
    assert (deaths / "died-seed0").is_file()  # the first attempt's worker was SIGKILLed mid-run...
    assert [r.status for r in res] == ["done"]  # ...and the retry finished the run
    run = tmp_path / "die" / ENV / "tiny_random" / "seed0"
    tags = [json.loads(line)["tag"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "train/before_death" not in tags  # the retry started from a clean folder
    assert not is_locked(run)
    # the same run, never killed, on the local backend: the same numbers
    ref = expand(suite_from_flags([ENV], ["tiny_random"], [0], 16, name="die", **kw))
    assert run_grid(ref, tmp_path / "local", progress=False, tensorboard=False)[0].final == res[0].final
    # with no retries left, a dead worker's run is reported as failed (not hung, not lost)
    always = tmp_path / "always"
    always.mkdir()
    specs = expand(suite_from_flags([ENV], ["tiny_random"], [1], 16, name="die2",
                                    agent_config={"die_once_dir": str(always)}, **kw))
    (always / "died-seed1").unlink(missing_ok=True)
    res = run_grid_ray(specs, tmp_path, progress=False, tensorboard=False, max_retries=0)
    assert res[0].status == "failed" and "ray task failed after 0 retries" in res[0].error
