"""`recgym report`: tables (mean ± std over seeds), Markdown, CSV, PNGs, published numbers, layouts, probes."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from recgym.benchmarks.backends import run_grid
from recgym.benchmarks.grid import expand
from recgym.benchmarks.report import (
    build_tables,
    collect_runs,
    load_published,
    make_report,
    to_csv,
    to_markdown,
)
from recgym.benchmarks.suite import ReportConfig, save_suite_record, suite_from_flags
from tests.benchmarks.helpers import ENV, SMALL


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report_runs")
    s = suite_from_flags([ENV], ["tiny_random", "tiny_crash"], [0, 1, 2], 48, eval_episodes=8, num_envs=8,
                         env_kwargs=SMALL, agent_config={"history_every": 16}, name="rep", protocol="dorl")
    specs = [dataclass_replace(sp, published_dataset="KuaiRec", published_method="DORL") for sp in expand(s)]
    res = run_grid(specs, root, progress=False, tensorboard=False)
    assert [r.status for r in res] == ["done"] * 3 + ["failed"] * 3
    return root / "rep"


def _layout(runs: Path, tmp_path: Path, **report) -> Path:
    """A copy of the runs folder whose suite record asks for ``report``."""
    import shutil

    dst = tmp_path / "rep"
    shutil.copytree(runs, dst)
    s = suite_from_flags([ENV], ["tiny_random", "tiny_crash"], [0, 1, 2], 48, name="rep", validate=False)
    s.report = ReportConfig(**report)
    save_suite_record(s, tmp_path)
    return dst


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
    assert pub and pub[0]["R_cumu"] == 20.49 and "DORL" in pub[0]["source"] and pub[0]["aggregation"] == "all_evals"
    (t,) = build_tables(collect_runs(runs))
    md = to_markdown([t], "rep")
    # the dorl protocol's published aggregation: each run's mean over all its evaluations, then over seeds
    ours = statistics.mean(statistics.mean(c["R_cumu"] for c in r["curve"]) for r in _results(runs))
    assert t.rows[0][("R_cumu", "published_agg")][0] == pytest.approx(ours)
    assert "R_cumu published" in md and "| 20.49 |" in md
    assert f"{ours - 20.49:+.3f}" in md and f"20.49 ({ours - 20.49:+.2f})" in md  # wide diff, summary cell
    rows = list(csv.DictReader(to_csv([t]).splitlines()))
    r = next(x for x in rows if x["metric"] == "R_cumu" and x["aggregation"] == "all_evals")
    assert float(r["published"]) == 20.49 and float(r["diff"]) == pytest.approx(ours - 20.49, rel=1e-5)
    assert r["n_seeds"] == "3" and "DORL" in r["published_source"]
    final = next(x for x in rows if x["metric"] == "R_cumu" and x["aggregation"] == "final")
    assert final["published"] == "" and final["diff"] == ""  # compared on the publication's aggregation only


def test_report_writes_markdown_csv_and_pngs(runs: Path, tmp_path: Path) -> None:
    out = make_report(runs, out_dir=tmp_path / "rep", show=False)
    md = out["markdown"].read_text()
    assert md.startswith("# Report: rep") and f"## {ENV}" in md and "tiny_crash seed 0: **failed**" in md
    assert "| tiny_random | 3 | dorl | 48 env_steps | greedy |" in md  # the budget with its unit, the actions
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


def test_agents_layout_rows_columns_and_ratio(runs: Path, tmp_path: Path) -> None:
    cols = ["R_cumu:curve", "R_cumu:final", "seeds", "budget", "R_cumu:final/tiny_random:R_cumu", "wall_s"]
    out = make_report(_layout(runs, tmp_path, layout="agents", columns=cols), show=False, plots=False)
    t = out["agents_table"]
    assert t.header == ["agent"] + [f"{ENV} {h}" for h in ("R_cumu curve", "R_cumu final", "seeds", "budget",
                                                            "R_cumu final % of tiny_random R_cumu", "wall_s")]
    assert [r[0] for r in t.rows] == ["tiny_random", "tiny_crash"]  # the suite's agent order
    res = _results(runs)
    vals = [r["final"]["R_cumu"] for r in res]
    row = t.rows[0]
    assert row[2] == f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"
    assert row[3:6] == ["3", "48 env_steps", "100.0%"]
    assert float(row[6]) == pytest.approx(statistics.mean(r["wall_s"] for r in res), abs=0.051)
    assert t.rows[1][1:] == ["-"] * 6  # every tiny_crash run failed
    md = out["markdown"].read_text()
    assert "| agent | " in md and "tiny_crash seed 0: **failed**" in md
    long = make_report(_layout(runs, tmp_path / "long", layout="agents", columns=["R_cumu:final"], long=True),
                       show=False, plots=False)["agents_table"]
    assert long.header == ["env", "agent", "R_cumu final"] and [r[:2] for r in long.rows] == [[ENV, "tiny_random"]]


def test_probe_folders_are_reported_as_tables(tmp_path: Path) -> None:
    import json

    d = tmp_path / "perf" / "load"
    d.mkdir(parents=True)
    rows = [{"dataset": "coat", "cold_s": 0.84, "cached_s": 0.0041}, {"dataset": "yahoo", "cold_s": 7.1}]
    (d / "probe.json").write_text(json.dumps({"probe": "data_load", "args": {}, "rows": rows, "text": "hello"}))
    (d / "DONE").write_text("{}")
    out = make_report(tmp_path / "perf", show=False)
    md = out["markdown"].read_text()
    assert "## load (`data_load` {}, done)" in md
    assert "| dataset | cold_s | cached_s |" in md and "| coat | 0.8400 | 0.0041 |" in md and "| yahoo | 7.1000 | - |" in md
    assert "hello" in md and out["csv"] is None and out["tables"] == []


def test_report_cli(runs: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recgym.cli import app

    r = CliRunner().invoke(app, ["report", str(runs), "--out", str(tmp_path / "o"), "--no-plots"])
    assert r.exit_code == 0, r.output
    assert "tiny_random" in r.output and (tmp_path / "o" / "report.csv").is_file()
    assert not list((tmp_path / "o").glob("*.png"))


def test_damaged_run_folders_do_not_stop_the_report(runs: Path, tmp_path: Path) -> None:
    rep = _layout(runs, tmp_path)
    seed0 = rep / ENV / "tiny_random" / "seed0"
    metrics = seed0 / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # one corrupt line in the middle of the file
    metrics.write_text("\n".join(lines) + "\n")
    (rep / ENV / "tiny_random" / "seed1" / "result.json").write_text('{"fin')  # DONE, but a cut result
    with pytest.warns(UserWarning, match=rf"{metrics}:2: corrupt metrics line .*skipped"):
        out = make_report(rep, out_dir=tmp_path / "out", show=False)  # with plots
    assert sorted(p.name for p in out["png"]) == [f"bars_{ENV}.png", f"curves_{ENV}.png"]
    md = out["markdown"].read_text()
    assert "tiny_random seed 1: **corrupt** (result.json is unreadable" in md
    assert "`recgym bench` runs it again" in md
    assert "| tiny_random | 2 | dorl |" in md  # the two good seeds are still aggregated
