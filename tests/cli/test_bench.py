"""`recgym bench` / `recgym report` through typer's CliRunner: listing with budget units, dry runs, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recgym.cli import app
from tests.benchmarks.helpers import write_suite

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
