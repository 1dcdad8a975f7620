"""One run and its folder: layout, determinism, run fields, training envs, crashes, metrics files, locks, probes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from recgym.benchmarks.backends import run_grid
from recgym.benchmarks.grid import expand
from recgym.benchmarks.probes import PROBES
from recgym.benchmarks.run import RunLogger, acquire_lock, execute_run, force_unlock, read_metrics, run_probes
from recgym.benchmarks.suite import ProbeEntry, Suite
from tests.benchmarks import _agents
from tests.benchmarks.helpers import ENV, SMALL, flag_suite, is_locked


def test_grid_writes_layout_and_is_deterministic(tmp_path: Path) -> None:
    res = run_grid(flag_suite(), tmp_path / "a", progress=False)
    assert [r.status for r in res] == ["done", "done"]
    run = tmp_path / "a" / "t" / ENV / "tiny_random" / "seed1"
    for name in ("config.json", "metrics.jsonl", "checkpoint", "result.json", "DONE"):
        assert (run / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["spec"]["seed"] == 1 and cfg["spec"]["agent"] == "tiny_random"
    assert cfg["env_kwargs_resolved"] == SMALL and cfg["versions"]["torch"]
    assert cfg["budget_unit"] == "env_steps"
    recs = read_metrics(run / "metrics.jsonl")
    train = [r for r in recs if r["tag"] == "train/reward"]
    assert [r["step"] for r in train] == [8 * k for k in range(1, 9)]  # 64 steps / 8 envs
    result = json.loads((run / "result.json").read_text())
    evals = {r["tag"][5:]: r["value"] for r in recs if r["tag"].startswith("eval/")}
    assert evals["R_cumu"] == pytest.approx(result["final"]["R_cumu"])
    assert result["final"]["Length"] == pytest.approx(30.0)  # synthetic presets: nobody quits (M = 0)
    assert result["n_evals"] == 1 and result["final"] == result["curve_mean"]
    assert result["budget_unit"] == "env_steps" and result["train_budget"] == 64
    # same seed, other folder: same numbers; other seed: other numbers
    again = run_grid(flag_suite(seeds=[1]), tmp_path / "b", progress=False)[0]
    assert again.final == pytest.approx(res[1].final)
    assert res[0].final["R_cumu"] != res[1].final["R_cumu"]


def test_agent_history_gives_curve_average(tmp_path: Path) -> None:
    s = flag_suite(seeds=[0], train_budget=48, agent_config={"history_every": 16})
    (res,) = run_grid(s, tmp_path, progress=False)
    result = json.loads((res.run_dir / "result.json").read_text())
    assert [c["step"] for c in result["curve"]] == [16, 32, 48]
    vals = [c["R_cumu"] for c in result["curve"]]
    assert result["curve_mean"]["R_cumu"] == pytest.approx(sum(vals) / 3)
    assert result["final"]["R_cumu"] == pytest.approx(vals[-1])


def test_run_fields_go_to_the_declared_config_fields_and_the_suite_wins(tmp_path: Path) -> None:
    s = flag_suite(seeds=[1], eval_every=32, agent_config={"eval_episodes": 5})
    assert run_grid(s, tmp_path, progress=False)[0].status == "done"
    cfg = _agents.LAST["tiny_random"].cfg
    assert (cfg.seed, cfg.eval_every, cfg.eval_episodes, cfg.progress) == (1, 32, 5, False)


def test_agent_without_train_env_gets_the_suite_env_as_both_envs(tmp_path: Path) -> None:
    assert run_grid(flag_suite(seeds=[0]), tmp_path, progress=False)[0].status == "done"
    seen = _agents.LAST["tiny_random"].seen
    assert seen["env"] is seen["eval_env"] and seen["env"].spec.id == ENV


def test_world_model_agent_trains_in_the_derived_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "cache"))
    (res,) = run_grid(flag_suite(agents=["tiny_world"], seeds=[0], protocol="dorl"), tmp_path, progress=False)
    assert res.status == "done", res.error
    seen = _agents.LAST["tiny_random"].seen  # tiny_world builds a TinyRandom
    train, evaluation = seen["env"], seen["eval_env"]
    assert train.spec.id == "InteractiveRec-Synthetic-v0" and evaluation.spec.id == ENV
    assert train.unwrapped.dataset is evaluation.unwrapped.dataset  # derived from the eval env, not reloaded
    assert train.unwrapped.protocol["name"] == evaluation.unwrapped.protocol["name"] == "dorl"
    assert train.num_envs == 8


def test_crashed_run_is_recorded_and_grid_goes_on(tmp_path: Path) -> None:
    res = run_grid(flag_suite(agents=["tiny_crash", "tiny_random"], seeds=[0]), tmp_path, progress=False)
    assert [r.status for r in res] == ["failed", "done"]
    crashed = res[0].run_dir
    err = (crashed / "error.txt").read_text()
    assert "Traceback" in err and "tiny_crash: deliberate failure in learn" in err
    assert not (crashed / "DONE").exists() and not is_locked(crashed)
    assert "deliberate failure" in res[0].error
    # a rerun retries the failed run (it fails again) and skips the finished one
    again = run_grid(flag_suite(agents=["tiny_crash", "tiny_random"], seeds=[0]), tmp_path, progress=False)
    assert [r.status for r in again] == ["failed", "skipped"]


def test_finished_run_with_another_config_is_a_conflict(tmp_path: Path) -> None:
    assert run_grid(flag_suite(seeds=[0]), tmp_path, progress=False)[0].status == "done"
    res = run_grid(flag_suite(seeds=[0], train_budget=32), tmp_path, progress=False)[0]
    assert res.status == "conflict" and "fields ['train_budget']" in res.error


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


def test_lock_keeps_a_second_writer_out_and_dies_with_its_process(tmp_path: Path) -> None:
    spec = expand(flag_suite(seeds=[0]))[0]
    run_dir = tmp_path / spec.relpath()
    run_dir.mkdir(parents=True)
    held = acquire_lock(run_dir)
    assert held is not None and acquire_lock(run_dir) is None  # this (live) process holds it
    res = execute_run(spec, tmp_path, tensorboard=False)
    assert res.status == "locked" and not (run_dir / "DONE").exists()
    assert f"pid {os.getpid()} on {socket.gethostname()}" in res.error and "--force-unlock" in res.error
    held.release()
    # a process that holds the lock and is killed: the kernel releases it (no pid / host bookkeeping), even
    # when its lock file names a pid that is alive again or another host
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from recgym.benchmarks.run import acquire_lock; from pathlib import Path; "
        f"l = acquire_lock(Path({str(run_dir)!r})); print('held' if l else 'free', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert child.stdout.readline().strip() == "held"
        assert is_locked(run_dir)
        (run_dir / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": "another-container", "time": 0}))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert not is_locked(run_dir)
    assert execute_run(spec, tmp_path, tensorboard=False).status == "done"
    assert not is_locked(run_dir)


def test_force_unlock_removes_only_held_locks(tmp_path: Path) -> None:
    held_dir, free_dir = tmp_path / "a", tmp_path / "b"
    held_dir.mkdir()
    free_dir.mkdir()
    held = acquire_lock(held_dir)
    free = acquire_lock(free_dir)
    free.release()
    assert force_unlock([held_dir, free_dir, tmp_path / "never-run"]) == [held_dir / ".lock"]
    assert not is_locked(held_dir)  # a fresh lock file: the next run can take it
    held.release()


def test_done_run_with_corrupt_result_is_rerun(tmp_path: Path) -> None:
    spec = expand(flag_suite(seeds=[0]))[0]
    first = execute_run(spec, tmp_path, tensorboard=False)
    assert first.status == "done"
    result = first.run_dir / "result.json"
    result.write_text(result.read_text()[:40])  # the DONE marker stays, the result is cut
    with pytest.warns(UserWarning, match=r"marked DONE but result\.json is unreadable \(JSONDecodeError"):
        assert execute_run(spec, tmp_path, tensorboard=False).status == "done"  # not "skipped" forever
    assert json.loads(result.read_text())["final"] == first.final
    result.write_text('{"not": "a result"}')
    with pytest.warns(UserWarning, match=r"marked DONE but result\.json holds no 'final' metrics; running it again"):
        assert execute_run(spec, tmp_path, tensorboard=False).status == "done"


def test_metrics_reader_can_skip_a_corrupt_line_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"tag": "a", "value": 1.0, "step": 0}\n{"tag": "a", "val\n[1, 2]\n{"tag": "a", "value": 2.0, "step": 1}\n')
    with pytest.raises(ValueError, match=f"{path}:2: corrupt metrics line"):
        read_metrics(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = read_metrics(path, on_corrupt="warn")
    assert [r["value"] for r in recs] == [1.0, 2.0]
    assert [str(w.message).split(" (")[0] for w in caught] == [f"{path}:2: corrupt metrics line",
                                                                f"{path}:3: corrupt metrics line"]
    assert all(str(w.message).endswith("; skipped") for w in caught)


def _squares(n: int = 3, fail: bool = False) -> list[dict[str, int]]:
    print(f"computing {n} squares")
    if fail:
        raise RuntimeError("probe failed on purpose")
    return [{"x": i, "x2": i * i} for i in range(n)]


def test_probes_write_their_rows_skip_when_done_and_record_failures(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROBES, "squares", _squares)
    suite = Suite(name="p", envs=[], agents=[], seeds=[], train_budget=0,
                  probes=[ProbeEntry("sq", "squares", {"n": 3}), ProbeEntry("bad", "squares", {"fail": True})])
    res = run_probes(suite, tmp_path, progress=False)
    assert [(r.name, r.status) for r in res] == [("sq", "done"), ("bad", "failed")]
    rec = json.loads((tmp_path / "p" / "sq" / "probe.json").read_text())
    assert rec["rows"] == [{"x": 0, "x2": 0}, {"x": 1, "x2": 1}, {"x": 2, "x2": 4}] and rec["args"] == {"n": 3}
    assert (tmp_path / "p" / "sq" / "output.txt").read_text() == "computing 3 squares\n"
    assert "probe failed on purpose" in res[1].error and (tmp_path / "p" / "bad" / "error.txt").is_file()
    again = run_probes(suite, tmp_path, progress=False)
    assert [r.status for r in again] == ["skipped", "failed"]
    suite.probes[0].args = {"n": 4}
    assert run_probes(suite, tmp_path, progress=False)[0].status == "conflict"
