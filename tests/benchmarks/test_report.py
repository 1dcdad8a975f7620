"""`recgym report`: tables (mean ± std over seeds), Markdown, CSV, PNGs and published numbers."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

import tests.benchmarks._agents  # noqa: F401
from recgym.benchmarks.report import (
    build_tables,
    collect_runs,
    load_published,
    make_report,
    to_csv,
    to_markdown,
)
from recgym.benchmarks.runner import run_grid, suite_from_flags

ENV = "GroundTruthRec-Synthetic-v0"
SMALL = {"dataset_kwargs": {"n_users": 60, "n_items": 80, "seed": 3}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report_runs")
    s = suite_from_flags([ENV], ["tiny_random", "tiny_crash"], [0, 1, 2], 48, eval_episodes=8, num_envs=8,
                         env_kwargs=SMALL, agent_config={"history_every": 16}, name="rep", protocol="dorl")
    specs = [dataclass_replace(sp, published_dataset="KuaiRec", published_method="DORL") for sp in s.runs()]
    res = run_grid(specs, root, progress=False, tensorboard=False)
    assert [r.status for r in res] == ["done"] * 3 + ["failed"] * 3
    return root / "rep"


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def _results(runs: Path) -> list[dict]:
    return [json.loads((runs / ENV / "tiny_random" / f"seed{k}" / "result.json").read_text()) for k in range(3)]


def test_tables_are_mean_and_sample_std_over_seeds(runs: Path) -> None:
    tables = build_tables(collect_runs(runs))
    (t,) = tables
    assert t.env == ENV and t.protocol == "dorl" and [r["agent"] for r in t.rows] == ["tiny_random"]
    row = t.rows[0]
    assert row["n"] == 3 and row["seeds"] == [0, 1, 2]
    res = _results(runs)
    for agg in ("curve_mean", "final"):
        vals = [r[agg]["R_cumu"] for r in res]
        mean, std = row[("R_cumu", agg)]
        assert mean == pytest.approx(statistics.mean(vals)) and std == pytest.approx(statistics.stdev(vals))
    assert [f.agent for f in t.failed] == ["tiny_crash"] * 3
    assert all("deliberate failure" in f.error for f in t.failed)
    # the curve average is the mean of the three evaluations of each run
    for r in res:
        assert r["curve_mean"]["R_cumu"] == pytest.approx(statistics.mean(c["R_cumu"] for c in r["curve"]))


def test_published_numbers_beside_ours_with_difference(runs: Path) -> None:
    pub = [p for p in load_published() if p["dataset"] == "KuaiRec" and p["method"] == "DORL"]
    assert pub and pub[0]["R_cumu"] == 20.49 and "DORL" in pub[0]["source"]
    (t,) = build_tables(collect_runs(runs))
    md = to_markdown([t], "rep")
    mean = t.rows[0][("R_cumu", "curve_mean")][0]
    assert "R_cumu published" in md and "| 20.49 |" in md
    assert f"{mean - 20.49:+.3f}" in md
    rows = list(csv.DictReader(to_csv([t]).splitlines()))
    r = next(x for x in rows if x["metric"] == "R_cumu" and x["aggregation"] == "curve_mean")
    assert float(r["published"]) == 20.49 and float(r["diff"]) == pytest.approx(mean - 20.49, rel=1e-5)
    assert r["n_seeds"] == "3" and "DORL" in r["published_source"]


def test_report_writes_markdown_csv_and_pngs(runs: Path, tmp_path: Path) -> None:
    out = make_report(runs, out_dir=tmp_path / "rep", show=False)
    md = out["markdown"].read_text()
    assert md.startswith("# Report: rep") and f"## {ENV}" in md and "tiny_crash seed 0: **failed**" in md
    res = _results(runs)
    vals = [r["final"]["Length"] for r in res]
    assert f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}" in md
    rows = list(csv.DictReader(out["csv"].read_text().splitlines()))
    assert {(r["metric"], r["aggregation"]) for r in rows} >= {("R_cumu", "final"), ("R_avg", "curve_mean"),
                                                                ("Length", "final")}
    names = sorted(p.name for p in out["png"])
    assert names == [f"bars_{ENV}.png", f"curves_{ENV}.png"]
    for p in out["png"]:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_report_cli_and_missing_folder(runs: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recgym.benchmarks.cli import app

    r = CliRunner().invoke(app, ["report", str(runs), "--out", str(tmp_path / "o"), "--no-plots"])
    assert r.exit_code == 0, r.output
    assert "tiny_random" in r.output and (tmp_path / "o" / "report.csv").is_file()
    assert not list((tmp_path / "o").glob("*.png"))
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no runs folder" in r.output
