"""Performance probes: data load times (in a temporary cache), the env throughput wrapper, memory helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgym.benchmarks.perf.data_load import data_load_times, format_table, measure
from recgym.benchmarks.perf.denoise import _peak_rss_mb, _rss_now_mb, measure_phase
from recgym.benchmarks.perf.env import env_throughput
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


def test_env_throughput_returns_the_benchmark_table() -> None:
    text = env_throughput(["--users", "200", "--items", "100", "--num-envs", "1,8", "--steps", "3",
                           "--slow-env-steps", "16", "--sync-max-envs", "8", "--device", "cpu"])
    assert "env steps per second, device=cpu" in text
    lines = [ln for ln in text.splitlines() if ln.strip().startswith(("1 |", "8 |"))]
    assert len(lines) == 2 and all(ln.count("|") == 5 for ln in lines)


def test_memory_helpers_and_phase_names() -> None:
    assert _peak_rss_mb() >= _rss_now_mb() > 0
    with pytest.raises(ValueError, match="phase='train'; valid: \\['pretrain', 'refit'\\]"):
        measure_phase("train", "synthetic", "cpu", 4, 2, 1, 1)
