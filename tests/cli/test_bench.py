"""`recgym bench` / `recgym report` through typer's CliRunner: listing with budget units, dry runs, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recgym.cli import app
from tests.benchmarks.helpers import ENV, write_suite

runner = CliRunner()


def _flat(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace() and ch not in "│┃╭╮╰╯─━┏┓┗┛┡┩└┘┌┐├┤╇╋┳┻")


def test_list_shows_suites_agents_with_budget_units_and_probes() -> None:
    res = runner.invoke(app, ["bench", "--list"], terminal_width=200)
    assert res.exit_code == 0, res.output
    flat = _flat(res.output)
    assert "quick" in flat and "agents" in flat and "throughput" in flat
    assert "gtenv_steps" in flat  # every agent is listed with its budget unit
    assert "env_throughput" in flat and "worldmodel_quality" in flat


def test_dry_run_lists_runs_with_budgets_and_probes(tmp_path: Path) -> None:
    extra = '\n[[probes]]\nname = "load"\nprobe = "data_load"\nargs = { datasets = ["coat"] }\n'
    suite = write_suite(tmp_path / "s.toml", seeds="[0, 1]", extra=extra)
    res = runner.invoke(app, ["bench", "--suite", str(suite), "--dry-run", "--runs-dir", str(tmp_path / "r")],
                        terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "2 runs (1 envs x 1 agents x 2 seeds), 1 probes" in res.output
    assert "kr/syn/tiny_random/seed1  (budget 16 env_steps)" in res.output
    assert "kr/load  (probe data_load" in res.output
    assert not (tmp_path / "r").exists()


def test_bad_suite_and_mixed_flags_exit_2(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "s.toml")
    res = runner.invoke(app, ["bench", "--suite", str(suite), "--agent", "random"])
    assert res.exit_code == 2 and "either --suite or --env/--agent" in res.output
    res = runner.invoke(app, ["bench", "--suite", "no_such_suite"])
    assert res.exit_code == 2 and "unknown suite 'no_such_suite'" in res.output


def test_ray_backend_without_ray_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    suite = write_suite(tmp_path / "s.toml", seeds="[0]")
    out = runner.invoke(app, ["bench", "--suite", str(suite), "--backend", "ray", "--runs-dir", str(tmp_path)])
    assert out.exit_code == 2
    assert "pip install 'recgym[ray]'" in out.output
    assert not (tmp_path / "kr").exists()


def test_report_of_a_missing_folder_exits_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no runs folder" in r.output
    f = tmp_path / "afile"
    f.write_text("x")
    r = runner.invoke(app, ["report", str(f)])
    assert r.exit_code == 2 and f"{f} is a file; expected a suite's runs folder" in r.output


_FLAGS = ["bench", "--import", "tests.benchmarks._agents", "--env", ENV, "--seeds", "1", "--budget", "16",
          "--eval-episodes", "8", "--num-envs", "8", "--env-kw", 'dataset_kwargs={"n_users": 60, "n_items": 80}',
          "--no-progress"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--agent", "tiny_random", "--agent-kw", "sleep_ss=1"], "unknown config field(s) ['sleep_ss']"),
    (["--agent", "tiny_random", "--agent-kw", "sleep_s=abc"], "sleep_s='abc' is not a float"),
    (["--agent", "tiny_random", "--env-kw", "max_trun=5"], "unknown env kwarg(s) ['max_trun']"),
    (["--agent", "tiny_random", "--env-kw", "leave_threshold=NaN"], "leave_threshold must be a number (not NaN"),
    (["--agent", "tiny_random", "--env-kw", "max_turn=2.5"], "max_turn must be an integer >= 1, got 2.5"),
    (["--agent", "tiny_random", "--device", "gpu"], "device must be cpu, cuda, cuda:N or mps, got 'gpu'"),
    (["--agent", "tiny_random", "--num-envs", "0"], "num_envs must be an integer >= 1, got 0"),
])
def test_every_run_is_validated_before_the_first_starts(tmp_path: Path, extra: list[str], message: str) -> None:
    # two agents: the valid one must not run either
    res = runner.invoke(app, [*_FLAGS, "--agent", "tiny_crash", *extra, "--runs-dir", str(tmp_path / "r")],
                        terminal_width=250)
    assert res.exit_code == 2, res.output
    assert message in _unwrap(res.output), res.output
    assert not list((tmp_path / "r").rglob("DONE")) and not list((tmp_path / "r").rglob("config.json"))


def test_unknown_reward_preset_is_caught_up_front(tmp_path: Path) -> None:
    res = runner.invoke(app, ["bench", "--env", "InteractiveRec-Synthetic-v0", "--agent", "random", "--env-kw",
                              "reward_preset=bogus", "--runs-dir", str(tmp_path)], terminal_width=250)
    assert res.exit_code == 2 and "unknown InteractiveRec reward_preset 'bogus'" in _unwrap(res.output)


def test_cuda_on_a_cpu_machine_is_refused_before_running(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    res = runner.invoke(app, [*_FLAGS, "--agent", "random", "--device", "cuda:3", "--runs-dir", str(tmp_path)],
                        terminal_width=250)
    assert res.exit_code == 2 and "device='cuda:3' but" in _unwrap(res.output)


def _unwrap(text: str) -> str:
    return " ".join(text.split())


def test_exit_status_is_1_when_a_run_fails_is_locked_or_conflicts(tmp_path: Path) -> None:
    from recgym.benchmarks.run import acquire_lock

    runs = tmp_path / "r"
    res = runner.invoke(app, [*_FLAGS, "--agent", "tiny_random", "--agent", "tiny_crash", "--runs-dir", str(runs)],
                        terminal_width=250)
    assert res.exit_code == 1, res.output
    last = _unwrap(res.output.strip().splitlines()[-1])
    assert last.startswith("not complete: 1 failed") and last.endswith("exit status 1")
    # the finished run is locked by someone else, the failed one is locked too: both are "locked"
    crash_dir = runs / "adhoc" / ENV / "tiny_crash" / "seed0"
    held = acquire_lock(crash_dir)
    try:
        res = runner.invoke(app, [*_FLAGS, "--agent", "tiny_random", "--agent", "tiny_crash", "--runs-dir",
                                  str(runs)], terminal_width=250)
        assert res.exit_code == 1 and "not complete: 1 locked" in _unwrap(res.output), res.output
        assert "skipped 1" in res.output  # tiny_random was done already
        # --force-unlock takes a held lock away (its holder is gone in real use) and the run is retried
        res = runner.invoke(app, [*_FLAGS, "--agent", "tiny_crash", "--runs-dir", str(runs), "--force-unlock"],
                            terminal_width=250)
        assert "removed the lock" in _unwrap(res.output) and "not complete: 1 failed" in _unwrap(res.output)
    finally:
        held.release()
    # a finished run of another config holds the folder: conflict
    res = runner.invoke(app, [*_FLAGS, "--agent", "tiny_random", "--budget", "24", "--runs-dir", str(runs)],
                        terminal_width=250)
    assert res.exit_code == 1 and "not complete: 1 conflict" in _unwrap(res.output), res.output
    res = runner.invoke(app, [*_FLAGS, "--agent", "tiny_random", "--runs-dir", str(runs)], terminal_width=250)
    assert res.exit_code == 0 and res.output.strip().endswith("all runs and probes done"), res.output


def test_runs_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "runs"
    f.write_text("not a folder")
    res = runner.invoke(app, [*_FLAGS, "--agent", "random", "--runs-dir", str(f)], terminal_width=250)
    assert res.exit_code == 2 and f"--runs-dir {f} is a file" in _unwrap(res.output)
