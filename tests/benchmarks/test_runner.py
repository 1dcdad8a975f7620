"""The benchmark runner: layout, resume after a kill, crash recording, suite validation, metrics files, locks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tests.benchmarks._agents  # noqa: F401  (registers tiny_random / tiny_crash)
from recgym.benchmarks.runner import (
    SUITES_DIR,
    RunLogger,
    SuiteError,
    acquire_lock,
    execute_run,
    load_suite,
    read_metrics,
    run_grid,
    suite_from_flags,
)

REPO = Path(__file__).resolve().parents[2]
ENV = "GroundTruthRec-Synthetic-v0"
SMALL = {"dataset_kwargs": {"n_users": 60, "n_items": 80, "seed": 3}}


def _suite(**kw):
    args = dict(envs=[ENV], agents=["tiny_random"], seeds=[0, 1], train_budget=64, eval_episodes=8, num_envs=8,
                env_kwargs=SMALL, name="t")
    args.update(kw)
    return suite_from_flags(args.pop("envs"), args.pop("agents"), args.pop("seeds"), args.pop("train_budget"), **args)


def test_grid_writes_layout_and_is_deterministic(tmp_path: Path) -> None:
    res = run_grid(_suite(), tmp_path / "a", progress=False)
    assert [r.status for r in res] == ["done", "done"]
    run = tmp_path / "a" / "t" / ENV / "tiny_random" / "seed1"
    for name in ("config.json", "metrics.jsonl", "checkpoint", "result.json", "DONE"):
        assert (run / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["spec"]["seed"] == 1 and cfg["spec"]["agent"] == "tiny_random"
    assert cfg["env_kwargs_resolved"] == SMALL and cfg["versions"]["torch"]
    recs = read_metrics(run / "metrics.jsonl")
    train = [r for r in recs if r["tag"] == "train/reward"]
    assert [r["step"] for r in train] == [8 * k for k in range(1, 9)]  # 64 steps / 8 envs
    result = json.loads((run / "result.json").read_text())
    evals = {r["tag"][5:]: r["value"] for r in recs if r["tag"].startswith("eval/")}
    assert evals["R_cumu"] == pytest.approx(result["final"]["R_cumu"])
    assert result["final"]["Length"] == pytest.approx(30.0)  # synthetic presets: nobody quits (M = 0)
    assert result["n_evals"] == 1 and result["final"] == result["curve_mean"]
    # same seed, other folder: same numbers; other seed: other numbers
    again = run_grid(_suite(seeds=[1]), tmp_path / "b", progress=False)[0]
    assert again.final == pytest.approx(res[1].final)
    assert res[0].final["R_cumu"] != res[1].final["R_cumu"]


def test_agent_history_gives_curve_average(tmp_path: Path) -> None:
    s = _suite(seeds=[0], train_budget=48, agent_config={"history_every": 16})
    (res,) = run_grid(s, tmp_path, progress=False)
    result = json.loads((res.run_dir / "result.json").read_text())
    assert [c["step"] for c in result["curve"]] == [16, 32, 48]
    vals = [c["R_cumu"] for c in result["curve"]]
    assert result["curve_mean"]["R_cumu"] == pytest.approx(sum(vals) / 3)
    assert result["final"]["R_cumu"] == pytest.approx(vals[-1])


def test_crashed_run_is_recorded_and_grid_goes_on(tmp_path: Path) -> None:
    res = run_grid(_suite(agents=["tiny_crash", "tiny_random"], seeds=[0]), tmp_path, progress=False)
    assert [r.status for r in res] == ["failed", "done"]
    crashed = res[0].run_dir
    err = (crashed / "error.txt").read_text()
    assert "Traceback" in err and "tiny_crash: deliberate failure in learn" in err
    assert not (crashed / "DONE").exists() and not (crashed / ".lock").exists()
    assert "deliberate failure" in res[0].error
    # a rerun retries the failed run (it fails again) and skips the finished one
    again = run_grid(_suite(agents=["tiny_crash", "tiny_random"], seeds=[0]), tmp_path, progress=False)
    assert [r.status for r in again] == ["failed", "skipped"]


def _write_suite(path: Path, agents: str = "tiny_random", sleep: float = 0.0, seeds: str = "[0, 1, 2, 3]") -> Path:
    path.write_text(textwrap.dedent(f"""\
        [suite]
        name = "kr"
        seeds = {seeds}
        train_budget = 16
        eval_episodes = 8
        num_envs = 8
        imports = ["tests.benchmarks._agents"]

        [[envs]]
        name = "syn"
        id = "{ENV}"
        kwargs = {{ dataset_kwargs = {{ n_users = 60, n_items = 80, seed = 3 }} }}

        [[agents]]
        name = "{agents}"
        config = {{ sleep_s = {sleep} }}
        """))
    return path


def test_kill_and_resume_does_not_redo_finished_runs(tmp_path: Path) -> None:
    suite = _write_suite(tmp_path / "kr.toml", sleep=1.5)
    counter = tmp_path / "counter.txt"
    runs = tmp_path / "runs"
    env = {**os.environ, "RECGYM_TEST_COUNTER": str(counter), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "recgym.benchmarks.cli", "bench", "--suite", str(suite), "--runs-dir", str(runs),
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
    assert not list(runs.rglob(".lock"))


def test_suite_validation_names_the_line(tmp_path: Path) -> None:
    good = _write_suite(tmp_path / "good.toml")
    text = good.read_text()
    cases = {
        "agent": (text.replace('name = "tiny_random"', 'name = "no_such_agent"'), "unknown agent 'no_such_agent'"),
        "env": (text.replace(f'id = "{ENV}"', 'id = "GroundTruthRec-Nowhere-v0"'), "unknown env id"),
        "field": (text.replace("eval_episodes = 8", "eval_episodes = 8\nevall_every = 3"), "unknown field 'evall_every'"),
        "protocol": (text.replace('name = "syn"', 'name = "syn"\nprotocol = "bogus"'), "unknown protocol 'bogus'"),
        "budget": (text.replace("train_budget = 16", "train_budget = -1"), "train_budget must be an integer >= 1"),
    }
    for key, (body, message) in cases.items():
        path = tmp_path / f"bad_{key}.toml"
        path.write_text(body)
        with pytest.raises(SuiteError) as err:
            load_suite(path)
        msg = str(err.value)
        assert message in msg, (key, msg)
        needle = {"agent": "no_such_agent", "env": "Nowhere", "field": "evall_every", "protocol": "bogus",
                  "budget": "train_budget = -1"}[key]
        line = next(i for i, ln in enumerate(body.splitlines(), start=1) if needle in ln)
        assert msg.startswith(f"{path}:{line}: "), (key, msg)
    dup = text + '\n[[agents]]\nname = "tiny_random"\n'
    (tmp_path / "dup.toml").write_text(dup)
    with pytest.raises(SuiteError, match="duplicate agent label 'tiny_random'"):
        load_suite(tmp_path / "dup.toml")
    with pytest.raises(SuiteError, match="shipped suites: .*quick"):
        load_suite("no_such_suite")


@pytest.mark.parametrize("name", sorted(p.stem for p in SUITES_DIR.glob("*.toml")))
def test_shipped_suites_validate(name: str) -> None:
    suite = load_suite(name)
    specs = suite.runs()
    assert len({s.relpath() for s in specs}) == len(specs)
    envs_run = {s.env_name for s in specs}
    assert envs_run | set(suite.missing_data()) == {e.name for e in suite.envs}
    assert specs or suite.scripts or suite.missing_data()


def test_torn_metrics_line_is_ignored(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, tensorboard=False)
    for step in range(3):
        logger.log_scalar("x", step * 1.5, step)
    logger.close()
    path = tmp_path / "metrics.jsonl"
    with open(path, "a") as f:
        f.write('{"tag": "x", "value": 9.0, "st')  # the process died mid-write
    assert [(r["step"], r["value"]) for r in read_metrics(path)] == [(0, 0.0), (1, 1.5), (2, 3.0)]
    lines = path.read_text().split("\n")
    lines[1] = lines[1][:10]
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=f"{path}:2: corrupt metrics line"):
        read_metrics(path)


def test_lock_keeps_a_second_writer_out(tmp_path: Path) -> None:
    spec = _suite(seeds=[0]).runs()[0]
    run_dir = tmp_path / spec.relpath()
    run_dir.mkdir(parents=True)
    held = acquire_lock(run_dir)
    assert held is not None and acquire_lock(run_dir) is None  # this (live) process holds it
    res = execute_run(spec, tmp_path, tensorboard=False)
    assert res.status == "locked" and not (run_dir / "DONE").exists()
    # a lock left by a dead process on this host is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    held.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "time": 0}))
    assert execute_run(spec, tmp_path, tensorboard=False).status == "done"
    assert not (run_dir / ".lock").exists()


def test_cli_ray_backend_without_ray_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from recgym.benchmarks.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    suite = _write_suite(tmp_path / "s.toml", seeds="[0]")
    out = CliRunner().invoke(app, ["bench", "--suite", str(suite), "--backend", "ray", "--runs-dir", str(tmp_path)])
    assert out.exit_code == 2
    assert "pip install 'recgym[ray]'" in out.output
    assert not (tmp_path / "kr").exists()
