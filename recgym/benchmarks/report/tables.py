"""The run records of a suite's folder and the ``default`` report layout (one table per env).

For every env entry of the suite: one table with a row per agent, giving the number of finished seeds, the
protocol, the training budget with its unit and, for each metric (R_cumu, R_avg, Length, and CV, MCD when
present), the curve average (mean over the agent's evaluations during training) and the final value, each as
mean +- std over seeds (sample std, 0 with one seed). Where the suite names a published dataset (env entry ``published``) and method
(agent entry ``published``), the published value from ``reference/published.csv`` is shown beside ours with
the difference (ours - published, on the aggregation the publication used). ``report.csv`` is the long
form: one row per env, agent, metric and aggregation.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recgym.benchmarks.run import read_metrics

PUBLISHED_CSV = Path(__file__).resolve().parents[1] / "reference" / "published.csv"
TABLE_METRICS: tuple[str, ...] = ("R_cumu", "R_avg", "Length", "CV", "MCD")
CURVE_METRICS: tuple[str, ...] = ("R_cumu", "R_avg", "Length")
REPORT_DIR = "_report"


@dataclass
class RunRecord:
    """One run folder as found on disk."""

    path: Path
    env: str
    agent: str
    seed: int
    status: str  # "done", "failed", "incomplete"
    spec: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def protocol(self) -> str | None:
        return self.spec.get("protocol")

    @property
    def budget(self) -> str:
        """``"<train_budget> <budget_unit>"`` (the unit from the registry for runs that did not record it)."""
        unit = self.result.get("budget_unit")
        if unit is None and self.spec.get("agent"):
            from recgym.benchmarks.run import budget_unit

            unit = budget_unit(self.spec["agent"])
        return f"{self.spec.get('train_budget', '?')} {unit or '?'}"

    def curve(self) -> dict[str, list[tuple[int, float]]]:
        """``eval/<metric>`` points from metrics.jsonl (falls back to result.json's curve)."""
        out: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for rec in read_metrics(self.path / "metrics.jsonl"):
            tag = str(rec.get("tag", ""))
            if tag.startswith("eval/") and rec.get("value") is not None:
                out[tag[5:]].append((int(rec["step"]), float(rec["value"])))
        if not out:
            for point in self.result.get("curve", []):
                for k, v in point.items():
                    if k != "step" and isinstance(v, (int, float)):
                        out[k].append((int(point.get("step", 0)), float(v)))
        return dict(out)


def collect_runs(suite_dir: Path | str) -> list[RunRecord]:
    """Every ``<env>/<agent>/seed<k>`` folder under ``suite_dir`` with its status."""
    suite_dir = Path(suite_dir)
    if not suite_dir.is_dir():
        raise FileNotFoundError(f"no runs folder {suite_dir} (run `recgym bench` first)")
    records: list[RunRecord] = []
    for env_dir in sorted(p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        for agent_dir in sorted(p for p in env_dir.iterdir() if p.is_dir()):
            for run_dir in sorted(p for p in agent_dir.iterdir() if p.is_dir() and p.name.startswith("seed")):
                try:
                    seed = int(run_dir.name[4:])
                except ValueError:
                    continue
                spec: dict[str, Any] = {}
                cfg = run_dir / "config.json"
                if cfg.exists():
                    try:
                        spec = json.loads(cfg.read_text()).get("spec", {})
                    except json.JSONDecodeError:
                        spec = {}
                rec = RunRecord(run_dir, env_dir.name, agent_dir.name, seed, "incomplete", spec=spec)
                if (run_dir / "DONE").exists():
                    rec.status = "done"
                    try:
                        rec.result = json.loads((run_dir / "result.json").read_text())
                    except (OSError, json.JSONDecodeError) as exc:
                        rec.status, rec.error = "failed", f"result.json unreadable: {exc}"
                elif (run_dir / "error.txt").exists():
                    rec.status = "failed"
                    lines = (run_dir / "error.txt").read_text().strip().splitlines()
                    rec.error = lines[-1] if lines else "unknown error"
                records.append(rec)
    return records


def load_published(path: Path | str = PUBLISHED_CSV) -> list[dict[str, Any]]:
    """Rows of the published-numbers file (metric columns parsed as floats; empty cells dropped)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        row: dict[str, Any] = dict(r)
        for m in TABLE_METRICS:
            if r.get(m) not in (None, ""):
                row[m] = float(r[m])
            else:
                row.pop(m, None)
        out.append(row)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def fmt(mean: float, std: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    digits = 2 if abs(mean) >= 10 else 3
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


@dataclass
class EnvTable:
    env: str
    env_id: str
    protocol: str | None
    rows: list[dict[str, Any]]  # one per agent: label, n, metric stats, published
    metrics: list[str]
    failed: list[RunRecord]


def build_tables(records: list[RunRecord], published: list[dict[str, Any]] | None = None) -> list[EnvTable]:
    """Aggregate finished runs per (env, agent) into `EnvTable`s."""
    published = load_published() if published is None else published
    by_env: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        by_env[r.env].append(r)
    tables = []
    for env, recs in by_env.items():
        done = [r for r in recs if r.status == "done"]
        found = {k for r in done for k in r.result.get("final", {})}
        metrics = [m for m in TABLE_METRICS if m in found]
        if not metrics:  # not a rec env (e.g. the denoising env): every metric the runs report, but stds/counts
            metrics = sorted(k for k in found if not k.endswith("_std") and k not in ("n_episodes", "n_users", "users"))
        agents: dict[str, list[RunRecord]] = defaultdict(list)
        for r in done:
            agents[r.agent].append(r)
        rows = []
        for agent, runs in agents.items():
            spec = runs[0].spec
            row: dict[str, Any] = {"agent": agent, "n": len(runs), "seeds": sorted(r.seed for r in runs),
                                   "protocol": spec.get("protocol") or "-", "budget": runs[0].budget}
            for m in metrics:
                for agg in ("curve_mean", "final", "last25_mean"):
                    vals = [float(r.result[agg][m]) for r in runs if m in r.result.get(agg, {})]
                    row[(m, agg)] = mean_std(vals)
            pub = _published_for(published, spec)
            if pub is not None:
                row["published"] = pub
            rows.append(row)
        rows.sort(key=lambda r: r["agent"])
        first = (done or recs)[0].spec
        tables.append(EnvTable(env=env, env_id=first.get("env_id", env), protocol=first.get("protocol") or "-", rows=rows,
                               metrics=metrics, failed=[r for r in recs if r.status != "done"]))
    return sorted(tables, key=lambda t: t.env)


def _published_for(published: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any] | None:
    ds, method = spec.get("published_dataset"), spec.get("published_method")
    if not ds or not method:
        return None
    for row in published:
        if row["dataset"].lower() == str(ds).lower() and row["method"].lower() == str(method).lower():
            return row
    return None


def _columns(table: EnvTable) -> list[tuple[str, str, str]]:
    """(header, metric, kind) with kind in curve_mean / final / last25_mean / published / diff."""
    cols = []
    has_pub = any("published" in r for r in table.rows)
    # EasyRL4Rec's aggregation (mean over the last 25% of the evaluations) when a published row uses it
    last25 = any((r.get("published") or {}).get("aggregation") == "last25_mean" for r in table.rows)
    for m in table.metrics:
        cols.append((f"{m} (curve)", m, "curve_mean"))
        cols.append((f"{m} (final)", m, "final"))
        if last25:
            cols.append((f"{m} (last25)", m, "last25_mean"))
        if has_pub and m in CURVE_METRICS:
            cols.append((f"{m} published", m, "published"))
            cols.append((f"{m} diff", m, "diff"))
    return cols


def _cell(row: dict[str, Any], metric: str, kind: str) -> str:
    if kind in ("curve_mean", "final", "last25_mean"):
        stat = row.get((metric, kind))
        return "-" if stat is None else fmt(*stat)
    pub = row.get("published")
    if pub is None or metric not in pub:
        return "-"
    if kind == "published":
        return fmt(pub[metric])
    agg = pub.get("aggregation", "curve_mean")
    ours = row.get((metric, agg if agg in ("final", "last25_mean") else "curve_mean"))
    if ours is None or math.isnan(ours[0]):
        return "-"
    return f"{ours[0] - pub[metric]:+.3f}"


def to_markdown(tables: list[EnvTable], suite_name: str) -> str:
    out = io.StringIO()
    out.write(f"# Report: {suite_name}\n\nMean ± std over seeds (sample std). *curve* = mean over the "
              "evaluations made during training, *final* = the last evaluation, *last25* = the mean over the "
              "last 25% of the evaluations. *diff* = ours - published, on the publication's aggregation.\n")
    for t in tables:
        out.write(f"\n## {t.env} (`{t.env_id}`, protocol `{t.protocol}`)\n\n")
        cols = _columns(t)
        out.write("| agent | seeds | protocol | budget | " + " | ".join(c[0] for c in cols) + " |\n")
        out.write("|---|---|---|---|" + "---|" * len(cols) + "\n")
        for r in t.rows:
            cells = [_cell(r, m, k) for _, m, k in cols]
            out.write(f"| {r['agent']} | {r['n']} | {r['protocol']} | {r['budget']} | " + " | ".join(cells) + " |\n")
        sources = sorted({r["published"]["source"] for r in t.rows if "published" in r})
        for s in sources:
            out.write(f"\nPublished numbers: {s}.\n")
        for f in t.failed:
            out.write(f"\n- {f.agent} seed {f.seed}: **{f.status}**" + (f" ({f.error})" if f.error else "") + "\n")
    return out.getvalue()


def to_csv(tables: list[EnvTable]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["env", "env_id", "protocol", "agent", "n_seeds", "metric", "aggregation", "mean", "std",
                "published", "diff", "published_source", "budget"])
    for t in tables:
        for r in t.rows:
            pub = r.get("published") or {}
            for m in t.metrics:
                for agg in ("curve_mean", "final", "last25_mean"):
                    mean, std = r.get((m, agg), (math.nan, math.nan))
                    if agg == "last25_mean" and math.isnan(mean):
                        continue  # runs written before the aggregation existed
                    p = pub.get(m) if pub and pub.get("aggregation", "curve_mean") == agg else None
                    diff = (mean - p) if p is not None and not math.isnan(mean) else None
                    w.writerow([t.env, t.env_id, r["protocol"], r["agent"], r["n"], m, agg, f"{mean:.6g}",
                                f"{std:.6g}", "" if p is None else f"{p:.6g}",
                                "" if diff is None else f"{diff:.6g}", pub.get("source", "") if p is not None else "",
                                r["budget"]])
    return buf.getvalue()


def print_tables(tables: list[EnvTable], suite_name: str) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    for t in tables:
        cols = _columns(t)
        tab = Table(title=f"{suite_name} / {t.env} ({t.env_id}, protocol {t.protocol})", show_lines=False)
        for h in ["agent", "seeds", "budget", *[c[0] for c in cols]]:
            tab.add_column(h, justify="left" if h == "agent" else "right")
        for r in t.rows:
            tab.add_row(r["agent"], str(r["n"]), r["budget"], *[_cell(r, m, k) for _, m, k in cols])
        console.print(tab)
        for f in t.failed:
            console.print(f"  [red]{f.agent} seed {f.seed}: {f.status}[/red]" + (f" ({f.error})" if f.error else ""))
