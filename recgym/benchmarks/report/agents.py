"""The ``agents`` report layout: one table, a row per agent entry, the suite's ``[report] columns`` per env.

Columns (`recgym.benchmarks.suite.parse_column`): ``METRIC:curve`` / ``METRIC:final`` / ``METRIC:published``
(the curve average, the final evaluation, the protocol source's published aggregation; mean +- sample std over
the finished seeds), ``METRIC:AGG/AGENT:METRIC`` (our mean as a percentage of another row's mean final value on
the same env, e.g. ``R_cumu:final/gt_oracle:optimal``), ``wall_s`` (mean seconds per run), ``seeds`` (finished
seeds) and ``budget`` (train budget and its unit). Rows follow the suite's agent order, column groups its env
order (or ``[report] envs``); ``long = true`` gives a row per (env, agent) instead of column groups. An env
whose runs used a fallback ground truth (`recgym.benchmarks.report.tables.is_fallback`) is marked ``*`` in its
column headers (in its rows with ``long``), with the reason under the table.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from recgym.benchmarks.report.tables import FALLBACK_MARK, RunRecord, fmt, is_fallback, mean_std
from recgym.benchmarks.suite import Column, ReportConfig


@dataclass
class AgentsTable:
    title: str
    header: list[str]
    rows: list[list[str]]
    failed: list[RunRecord]
    notes: list[str] = field(default_factory=list)


def _values(runs: list[RunRecord], metric: str, agg: str) -> list[float]:
    return [v for v in (r.value(metric, agg) for r in runs) if v is not None]


def cell(col: Column, runs: list[RunRecord], by_label: dict[str, list[RunRecord]]) -> str:
    """One cell: ``runs`` are the finished runs of the row's (env, agent), ``by_label`` the env's runs per agent."""
    if not runs:
        return "-"
    if col.kind == "seeds":
        return str(len(runs))
    if col.kind == "budget":
        return runs[0].budget
    if col.kind == "wall_s":
        walls = [float(r.result["wall_s"]) for r in runs if "wall_s" in r.result]
        return f"{sum(walls) / len(walls):.1f}" if walls else "-"
    vals = _values(runs, col.metric, col.aggregation)
    if not vals:
        return "-"
    mean, std = mean_std(vals)
    if col.kind == "metric":
        return fmt(mean, std)
    ref = _values(by_label.get(col.ref_label, []), col.ref_metric, "final")
    ref_mean = mean_std(ref)[0] if ref else math.nan
    if math.isnan(ref_mean) or ref_mean == 0:
        return "-"
    return f"{100 * mean / ref_mean:.1f}%"


_AGG_LABELS = {"curve_mean": "curve", "final": "final", "published_agg": "pub. agg."}


def _header(col: Column) -> str:
    if col.kind == "ratio":
        return f"{col.metric} {_AGG_LABELS[col.aggregation]} % of {col.ref_label} {col.ref_metric}"
    if col.kind == "metric":
        return f"{col.metric} {_AGG_LABELS[col.aggregation]}"
    return col.kind


def build_agents_table(records: list[RunRecord], config: ReportConfig, suite: dict[str, Any] | None,
                       suite_name: str) -> AgentsTable:
    """The ``agents`` layout of ``records`` (``suite``: the runs folder's suite record, for the orders)."""
    done: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.status == "done":
            done[r.env][r.agent].append(r)
    found_envs = sorted({r.env for r in records})
    envs = config.envs or [e for e in (suite or {}).get("envs", []) if e in found_envs] or found_envs
    found_agents = {r.agent for r in records}
    labels = [a for a in (suite or {}).get("agents", []) if a in found_agents]
    labels += sorted(found_agents - set(labels))
    cols = config.parsed_columns()
    fallback = {env: next((r.ground_truth for r in records if r.env == env and is_fallback(r.ground_truth)), None)
                for env in envs}
    name = {env: env + (f" {FALLBACK_MARK}" if fallback[env] else "") for env in envs}
    if config.long:
        header = ["env", "agent", *[_header(c) for c in cols]]
        rows = [[name[env], label, *[cell(c, done[env][label], done[env]) for c in cols]]
                for env in envs for label in labels if done[env][label]]
    else:
        header = ["agent", *[f"{name[env]} {_header(c)}" for env in envs for c in cols]]
        rows = [[label, *[cell(c, done[env][label], done[env]) for env in envs for c in cols]] for label in labels]
    failed = [r for r in records if r.status != "done"]
    notes = [f"{FALLBACK_MARK} {env}: fallback ground truth: {gt.get('note') or gt.get('source')}"
             for env, gt in fallback.items() if gt]
    if any(c.aggregation == "published_agg" for c in cols):
        notes.append("published = the aggregation of the protocol's source (DORL / ROLeR: all evaluations of a "
                     "run; EasyRL4Rec: the last 25%)")
    return AgentsTable(title=config.title or suite_name, header=header, rows=rows, failed=failed, notes=notes)


def agents_markdown(table: AgentsTable) -> str:
    out = io.StringIO()
    out.write(f"# Report: {table.title}\n\nMean ± std over seeds (sample std). *curve* = mean over the "
              "evaluations made during training, *final* = the last evaluation.\n\n")
    out.write("| " + " | ".join(table.header) + " |\n|" + "---|" * len(table.header) + "\n")
    for row in table.rows:
        out.write("| " + " | ".join(row) + " |\n")
    for n in table.notes:
        out.write(f"\n{n}\n")
    for f in table.failed:
        out.write(f"\n- {f.env} / {f.agent} seed {f.seed}: **{f.status}**" + (f" ({f.error})" if f.error else "")
                  + "\n")
    return out.getvalue()


def print_agents_table(table: AgentsTable) -> None:
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 240)
    tab = Table(title=table.title)
    for i, h in enumerate(table.header):
        tab.add_column(h, justify="left" if i == 0 or h == "agent" else "right")
    for row in table.rows:
        tab.add_row(*row)
    console.print(tab)
    for n in table.notes:
        console.print("  " + escape(n))
    for f in table.failed:
        console.print(f"  [red]{f.env} / {f.agent} seed {f.seed}: {f.status}[/red]" + (f" ({f.error})" if f.error else ""))
