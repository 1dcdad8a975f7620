"""The A2C end-to-end speed probe (`recgym perf a2c`): rows, summary, variants."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recgym.benchmarks.perf.a2c_speed import VARIANTS, a2c_speed, format_a2c_speed, parse_variant, summarize
from recgym.cli import app


def test_parse_variant_reads_labels_and_literals() -> None:
    assert parse_variant("faithful") == ("faithful", VARIANTS["faithful"])
    assert parse_variant("mine lr=0.003 n_steps=5 head=tied") == ("mine", {"lr": 0.003, "n_steps": 5, "head": "tied"})
    assert parse_variant("plain") == ("plain", {})  # an unknown label alone: the agent's defaults
    with pytest.raises(ValueError, match="variant 'x': expected key=value, got 'lr'"):
        parse_variant("x lr")
    with pytest.raises(ValueError, match="a variant needs a label"):
        parse_variant("  ")


def test_a2c_speed_rows_and_summary() -> None:
    rows = a2c_speed(["fast n_steps=2", "faithful"], seeds=[0, 1], data="synthetic", budget=8 * 30, num_envs=8)
    assert [(r["variant"], r["seed"]) for r in rows] == [("fast", 0), ("faithful", 0), ("fast", 1), ("faithful", 1)]
    assert rows[0]["config"] == "n_steps=2" and rows[1]["config"].startswith("n_steps=30 minibatch_size=64")
    for r in rows:
        assert r["budget"] == 240 and r["steps_per_s"] == pytest.approx(240 / r["wall_s"])
        assert 30 <= r["R_cumu_final"] <= 150  # synthetic ratings 1-5, 30 turns
    summary = summarize(rows)
    assert [s["variant"] for s in summary] == ["fast", "faithful"] and summary[0]["seeds"] == 2
    assert summary[0]["R_cumu_final"] == pytest.approx((rows[0]["R_cumu_final"] + rows[2]["R_cumu_final"]) / 2)
    text = format_a2c_speed(rows)
    assert "| fast | n_steps=2 |" in text and "fast seed 1:" in text


def test_recgym_perf_a2c_command() -> None:
    res = CliRunner().invoke(app, ["perf", "a2c", "--data", "synthetic", "--budget", "80", "--num-envs", "4",
                                   "--variant", "tiny n_steps=2 minibatch_size=0"])
    assert res.exit_code == 0, res.output
    assert "| tiny | n_steps=2 minibatch_size=0 |" in res.output
    bad = CliRunner().invoke(app, ["perf", "a2c", "--variant", "x lr"])
    assert bad.exit_code != 0 and "expected key=value" in bad.output
