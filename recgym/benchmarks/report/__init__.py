"""`recgym report runs/<suite>`: tables (mean +- std over seeds), CSV, Markdown and PNG plots of a suite's runs.

The suite's ``[report]`` (kept in ``runs/<suite>/suite.json``) picks the layout of the grid's table:
``default`` (`recgym.benchmarks.report.tables`: a table per env; printed as a summary that fits 100 columns --
R_cumu final, % of the optimum, Length, CV, the published aggregation, the published number -- or, with
``wide``, every metric and aggregation) or ``agents`` (`recgym.benchmarks.report.agents`: one table, chosen
columns per env). The published aggregation follows the protocol's source
(`recgym.benchmarks.report.aggregation`); rows measured on a fallback ground truth are marked. Probe folders are
shown as their own tables (`recgym.benchmarks.report.probes`).

Files written to ``<suite dir>/_report/``: ``report.md`` (summary and every metric); for a grid also
``report.csv`` (long form: one row per env, agent, metric and aggregation), ``curves_<env>.png`` (eval metrics
against the training budget, mean line and +-std band over seeds) and ``bars_<env>.png`` (final and
curve-average R_cumu per agent, published values as markers).

A damaged run folder does not stop the report: a ``metrics.jsonl`` line that does not parse is skipped with a
warning naming the file and line, and a run marked DONE whose ``result.json`` is unreadable is listed as
``corrupt`` (`recgym bench` runs it again).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recgym.benchmarks.report.agents import agents_markdown, build_agents_table, print_agents_table
from recgym.benchmarks.report.probes import collect_probes, print_probes, probes_markdown
from recgym.benchmarks.report.tables import (
    CURVE_METRICS,
    PUBLISHED_CSV,
    REPORT_DIR,
    TABLE_METRICS,
    EnvTable,
    RunRecord,
    build_tables,
    collect_runs,
    load_published,
    print_tables,
    to_csv,
    to_markdown,
)
from recgym.benchmarks.run import write_text
from recgym.benchmarks.suite import ReportConfig, load_suite_record

__all__ = ["CURVE_METRICS", "PUBLISHED_CSV", "REPORT_DIR", "TABLE_METRICS", "EnvTable", "RunRecord", "build_tables",
           "collect_probes", "collect_runs", "load_published", "make_report", "to_csv", "to_markdown"]


def make_report(suite_dir: Path | str, *, out_dir: Path | str | None = None, plots: bool = True,
                show: bool = True, wide: bool = False) -> dict[str, Any]:
    """Build, print and write the report of ``runs/<suite>``; return the tables and the written paths.

    ``wide``: print every metric and aggregation of the ``default`` layout instead of its 100-column summary.
    """
    suite_dir = Path(suite_dir)
    if suite_dir.exists() and not suite_dir.is_dir():
        raise NotADirectoryError(f"{suite_dir} is a file; expected a suite's runs folder (runs/<suite>)")
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; expected a folder for the report")
    records = collect_runs(suite_dir)
    probes = collect_probes(suite_dir)
    if not records and not probes:
        raise FileNotFoundError(f"no run folders (<env>/<agent>/seed<k>) or probe folders under {suite_dir}")
    suite = load_suite_record(suite_dir)
    config = ReportConfig(**suite["report"]) if suite and suite.get("report") else ReportConfig()
    name = suite_dir.name
    out = Path(out_dir) if out_dir is not None else suite_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    tables = build_tables(records) if records else []
    agents_table = build_agents_table(records, config, suite, name) if records and config.layout == "agents" else None
    if agents_table is not None:
        md = agents_markdown(agents_table)
    elif records:
        md = to_markdown(tables, name)
    else:
        md = f"# Report: {name}\n"
    md_path, csv_path = out / "report.md", out / "report.csv"
    write_text(md_path, md + probes_markdown(probes))
    if records:
        write_text(csv_path, to_csv(tables))
    pngs: list[Path] = []
    if plots:
        from recgym.benchmarks.report.plots import plot_env

        for t in tables:
            if t.rows:
                pngs += plot_env(records, t, out)
    if show:
        if agents_table is not None:
            print_agents_table(agents_table)
        elif records:
            print_tables(tables, name, wide=wide)
        print_probes(probes)
        written = [os.fspath(md_path)] + ([os.fspath(csv_path)] if records else [])
        print("written: " + ", ".join(written) + (f", {len(pngs)} PNGs" if pngs else ""))
    return {"tables": tables, "agents_table": agents_table, "probes": probes, "markdown": md_path,
            "csv": csv_path if records else None, "png": pngs, "records": records}
