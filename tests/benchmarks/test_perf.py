"""Performance probes: data load times (in a temporary cache), memory helpers (env throughput: test_perf_env.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgym.benchmarks.perf.data_load import data_load_times, format_table, measure
from recgym.benchmarks.perf.denoise import _peak_rss_mb, _rss_now_mb, measure_phase, refit_gradient_snr
from tests.conftest import require_data

COAT = ("coat/train.ascii", "coat/rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii")


@pytest.fixture()
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(d))
    return d


def test_load_time_benchmark_uses_a_temporary_cache(cache_root: Path) -> None:
    root = require_data(*COAT)
    row = measure("coat", str(root))
    assert row["cold_s"] > 0 and row["cached_s"] > 0 and row["summary"]["train_rows"] == 6960
    assert not (cache_root / "parsed").exists()  # the session's cache was not touched
    missing = measure("kuairec", str(cache_root / "nothing-here"))
    table = format_table([row, missing])
    assert "coat" in table and "not available: kuairec: missing file 'small_matrix.csv'" in table
    rows = data_load_times(["kuairec"], str(cache_root / "nothing-here"))
    assert rows == [{"dataset": "kuairec", "error": missing["error"]}]
    with pytest.raises(ValueError, match="unknown dataset\\(s\\) \\['nope'\\]"):
        data_load_times(["nope"])


def test_memory_helpers_and_phase_names() -> None:
    assert _peak_rss_mb() >= _rss_now_mb() > 0
    with pytest.raises(ValueError, match="phase='train'; valid: \\['pretrain', 'refit'\\]"):
        measure_phase("train", "synthetic", "cpu", 4, 2, 1, 1)


def test_refit_cost_phases_in_the_same_units() -> None:
    """Pre-training runs from scratch to its early stop (never the cache); fine-tuning reports its best
    validation point."""
    pre = measure_phase("pretrain", "synthetic", "cpu", 8, 0, 0, 1,
                        pretrain_config={"max_epochs": 2, "eval_every": 1, "hidden": [8], "steps": 3})
    assert 1 <= pre["best"] <= 2 and pre["work"] == 2 * 500 and pre["seconds"] > 0
    assert 0 < pre["seconds_per_unit"] < pre["seconds"] / 1000 and pre["peak_rss_mb"] >= pre["base_rss_mb"]
    ft = measure_phase("refit", "synthetic", "cpu", 8, 2, 1, 1, agent="refit_lastep",
                       agent_config={"samples_per_user": 2})
    assert ft["best"] in (0.0, 1.0, 2.0) and ft["work"] == ft["best"] * 8 * 2
    assert ft["seconds"] <= ft["seconds_total"] and ft["seconds_per_unit"] > 0


def test_refit_gradient_snr_leaves_the_weights_and_reports_both_measures() -> None:
    rows = refit_gradient_snr("synthetic", ("refit_lastep",), iterations=4, batch=8,
                              configs={"refit_lastep": {"samples_per_user": 4}})
    (r,) = rows
    assert r["agent"] == "refit_lastep" and r["iterations"] == 4 and -1.0 <= r["cos_halves"] <= 1.0
    assert r["snr_per_iteration"] >= -1.0 and r["seconds_per_iteration"] > 0
    with pytest.raises(ValueError, match="at least 4"):
        refit_gradient_snr("synthetic", iterations=2)
