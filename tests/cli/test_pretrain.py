"""`recgym pretrain diffrec` and `recgym perf pretrain` on the synthetic data, and --progress/--no-progress."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from recgym.cli import app

TINY = '{"hidden": [16], "steps": 3, "batch_size": 250, "max_epochs": 6, "eval_every": 2, "patience": 6}'


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pretrain_reports_training_and_evaluation_seconds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path))
    runner = CliRunner()
    args = ["pretrain", "diffrec", "--data", "synthetic", "--config", TINY, "--no-baselines", "--threads", "1"]
    res = runner.invoke(app, [*args, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "train s" in res.output and "eval s" in res.output and "DiffRec" in res.output
    assert "epoch" not in res.output.split("DiffRec protocol")[0]  # no progress lines before the table
    again = runner.invoke(app, [*args, "--progress"])  # cached now
    assert again.exit_code == 0, again.output
    assert "(cached)" in again.output
    bad = runner.invoke(app, ["pretrain", "diffrec", "--data", "synthetic", "--config", '{"selection": "best"}'])
    assert bad.exit_code != 0 and "selection" in bad.output


def test_every_training_command_has_the_progress_flag() -> None:
    runner = CliRunner()
    for cmd in (["pretrain", "diffrec"], ["worldmodel", "fit"], ["worldmodel", "report"], ["worldmodel", "quality"],
                ["bench"], ["perf", "pretrain"]):
        res = runner.invoke(app, [*cmd, "--help"], terminal_width=200)
        assert res.exit_code == 0, (cmd, res.output)
        assert "--progress" in res.output and "--no-progress" in res.output, cmd


def test_perf_pretrain_rejects_unknown_rules() -> None:
    res = CliRunner().invoke(app, ["perf", "pretrain", "--data", "synthetic", "--selection", "default,best"])
    assert res.exit_code != 0 and "best" in res.output
    res = CliRunner().invoke(app, ["perf", "pretrain", "--data", "synthetic", "--config", '{"eval_evry": 1}'])
    assert res.exit_code != 0 and "eval_evry" in res.output


@pytest.mark.slow
def test_perf_pretrain_times_a_cold_gym_make(tmp_path) -> None:
    from recgym.benchmarks.perf.pretrain import cold_make

    row = cold_make("synthetic", "cpu", "full", threads=1, progress=False, config={"eval_every": 1})
    assert row["run"] == "recgym full, eval every 1" and row["threads"] == 1
    assert 0 < row["train_s"] and 0 < row["eval_s"] and row["train_s"] + row["eval_s"] <= row["pretrain_s"]
    assert row["pretrain_s"] <= row["gym_make_s"] <= row["process_s"] and 0 < row["gym_make_cpu_s"]
    assert 0 < row["test R@20"] <= 1
    (tmp_path / "x").write_text("not empty")
    with pytest.raises(ValueError, match="not empty"):
        cold_make("synthetic", cache_dir=tmp_path)


def test_perf_rows_end_with_the_original_code_reference_on_ml1m(monkeypatch) -> None:
    import recgym.benchmarks.perf.pretrain as perf

    calls = []
    monkeypatch.setattr(perf, "cold_make", lambda data, d, s, *a, **k: calls.append((data, d, s)) or {"run": s})
    rows = perf.pretrain_cost("ml1m", "cpu", [None, "full"], config={"eval_every": 1})
    assert calls == [("ml1m", "cpu", None), ("ml1m", "cpu", "full")]
    assert rows[-1]["run"].startswith("original DiffRec code") and rows[-1]["pretrain_s"] == 350.0
    assert (rows[-1]["test R@20"], rows[-1]["test N@20"]) == (0.1697, 0.1094)
    assert perf.pretrain_cost("synthetic", "cpu", [None]) == [{"run": None}]  # no reference off ML-1M
