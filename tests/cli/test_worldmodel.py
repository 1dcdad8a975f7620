"""`recgym worldmodel fit|report` on the synthetic data (tiny config through --config)."""

from __future__ import annotations

from typer.testing import CliRunner

from recgym.cli import app


def test_worldmodel_fit_and_report_commands() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["worldmodel", "fit", "--data", "synthetic", "--kind", "mf", "--config",
                              '{"epochs": 3}'])
    assert res.exit_code == 0, res.output
    assert "synthetic" in res.output and "RMSE" in res.output and "cached at" in res.output
    res = runner.invoke(app, ["worldmodel", "report", "--data", "synthetic", "--kinds", "knn"])
    assert res.exit_code == 0, res.output
    assert "knn" in res.output
    bad = runner.invoke(app, ["worldmodel", "fit", "--data", "synthetic", "--config", "{oops"])
    assert bad.exit_code != 0 and "JSON" in bad.output
