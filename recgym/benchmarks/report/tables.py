"""The run records of a suite's folder and the ``default`` report layout (one table per env).

For every env entry of the suite, a row per agent. Two views of the same rows:

- the **summary** (what ``recgym report`` prints by default; fits 100 columns): R_cumu of the final evaluation
  (mean +- std over seeds), that as a percentage of the env's optimum (when the runs recorded it -- a protocol
  in which nobody quits -- or a ``gt_oracle`` row reports ``optimal``), Length and CV of the final evaluation,
  R_cumu under the **published aggregation** of the protocol's source ("pub. agg.":
  `recgym.benchmarks.report.aggregation`: DORL / ROLeR average all evaluations of a run, EasyRL4Rec the last
  25 %; mean +- std over seeds of each run's value) and, where the suite names a published dataset and method,
  the published number with the difference ``pub. agg. - published``;
- the **wide** tables (``--wide``, and always in ``report.md``): for each metric (R_cumu, R_avg, Length, and
  CV, MCD when present) the curve average (mean over all evaluations during training), the final value and the
  published aggregation, each as mean +- std over seeds (sample std, 0 with one seed), the test-time actions,
  and the published value with its difference.

A row whose runs used a fallback ground truth (``env_protocol["ground_truth"]`` in ``result.json``, copied from
``dataset.meta["ground_truth"]``: ``comparable_to_published`` false and a recgym fallback, e.g. Yahoo without
RL4Rec's pseudo-GT file) is marked ``*`` and the table says why; every table names the ground truth it was
measured on. ``report.csv`` is the long form: one row per env, agent, metric and aggregation.
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

from recgym.benchmarks.report.aggregation import AGGREGATIONS, Aggregation, aggregate_curve, aggregation_for
from recgym.benchmarks.run import read_metrics, result_problem

PUBLISHED_CSV = Path(__file__).resolve().parents[1] / "reference" / "published.csv"
TABLE_METRICS: tuple[str, ...] = ("R_cumu", "R_avg", "Length", "CV", "MCD")
CURVE_METRICS: tuple[str, ...] = ("R_cumu", "R_avg", "Length")
REPORT_DIR = "_report"
# Aggregations of a row: the curve average, the final evaluation, the protocol source's published aggregation.
ROW_AGGREGATIONS: tuple[str, ...] = ("curve_mean", "final", "published_agg")
FALLBACK_MARK = "*"
SUMMARY_AGENT_WIDTH = 22  # longer agent labels end in an ellipsis in the summary (the wide view has them whole)


@dataclass
class RunRecord:
    """One run folder as found on disk."""

    path: Path
    env: str
    agent: str
    seed: int
    status: str  # "done", "failed", "incomplete", "corrupt" (DONE, but result.json is damaged)
    spec: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def protocol(self) -> str | None:
        """The protocol preset's name: the evaluation env's recorded protocol, else the suite's."""
        recorded = self.env_protocol.get("name")
        if recorded:
            return str(recorded)
        kwargs = self.spec.get("eval_env_kwargs") or self.spec.get("env_kwargs") or {}
        return self.spec.get("protocol") or kwargs.get("protocol")

    @property
    def env_protocol(self) -> dict[str, Any]:
        """The evaluation env's effective protocol as the run recorded it ({} for runs that did not)."""
        p = self.result.get("env_protocol")
        return p if isinstance(p, dict) else {}

    @property
    def ground_truth(self) -> dict[str, Any] | None:
        """The ground truth's provenance ``{source, comparable_to_published, note}`` (None when not recorded)."""
        gt = self.env_protocol.get("ground_truth")
        return gt if isinstance(gt, dict) else None

    @property
    def eval_actions(self) -> str:
        """The test-time actions of the run (``greedy`` for runs made before it was recorded)."""
        return str(self.result.get("eval_actions") or self.spec.get("agent_config", {}).get("eval_actions")
                   or "greedy")

    @property
    def optimum(self) -> float | None:
        """The evaluation env's exact optimum (mean best return), when the run recorded one."""
        v = self.result.get("optimum")
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    @property
    def aggregation(self) -> Aggregation | None:
        """The published aggregation of the run's protocol source (None for custom protocols)."""
        return aggregation_for(self.protocol)

    @property
    def budget(self) -> str:
        """``"<train_budget> <budget_unit>"`` (the unit from the registry for runs that did not record it)."""
        unit = self.result.get("budget_unit")
        if unit is None and self.spec.get("agent"):
            from recgym.benchmarks.run import budget_unit

            unit = budget_unit(self.spec["agent"])
        return f"{self.spec.get('train_budget', '?')} {unit or '?'}"

    def value(self, metric: str, aggregation: str | Aggregation) -> float | None:
        """One number of this run: ``curve_mean`` / ``final`` from result.json, ``published_agg`` (the
        protocol's published aggregation) or an `Aggregation` computed from its curve; None when missing."""
        if isinstance(aggregation, Aggregation) or aggregation == "published_agg":
            agg = self.aggregation if aggregation == "published_agg" else aggregation
            if agg is None or not isinstance(agg, Aggregation):
                return None
            mean = aggregate_curve(self.result.get("curve", []), metric, agg)[0]
            return None if math.isnan(mean) else mean
        v = self.result.get(aggregation, {}).get(metric)
        return float(v) if isinstance(v, (int, float)) else None

    def curve(self) -> dict[str, list[tuple[int, float]]]:
        """``eval/<metric>`` points from metrics.jsonl (falls back to result.json's curve)."""
        out: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for rec in read_metrics(self.path / "metrics.jsonl", on_corrupt="warn"):
            tag = str(rec.get("tag", ""))
            if tag.startswith("eval/") and rec.get("value") is not None:
                out[tag[5:]].append((int(rec["step"]), float(rec["value"])))
        if not out:
            for point in self.result.get("curve", []):
                for k, v in point.items():
                    if k != "step" and isinstance(v, (int, float)):
                        out[k].append((int(point.get("step", 0)), float(v)))
        return dict(out)


def is_fallback(ground_truth: dict[str, Any] | None) -> bool:
    """Whether a ground-truth provenance is a recgym fallback standing in for the published matrix (the
    loaders say so in ``source``/``note``: "recgym fallback, not comparable to published ... numbers")."""
    if not ground_truth or ground_truth.get("comparable_to_published", True):
        return False
    text = f"{ground_truth.get('source', '')} {ground_truth.get('note', '')}".lower()
    return "fallback" in text


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
                    except (ValueError, AttributeError):  # unreadable or not a JSON object
                        spec = {}
                rec = RunRecord(run_dir, env_dir.name, agent_dir.name, seed, "incomplete", spec=spec)
                if (run_dir / "DONE").exists():
                    problem = result_problem(run_dir)
                    if problem is None:
                        rec.status = "done"
                        rec.result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
                    else:
                        rec.status, rec.error = "corrupt", f"{problem}; `recgym bench` runs it again"
                elif (run_dir / "error.txt").exists():
                    rec.status = "failed"
                    lines = (run_dir / "error.txt").read_text().strip().splitlines()
                    rec.error = lines[-1] if lines else "unknown error"
                records.append(rec)
    return records


def load_published(path: Path | str = PUBLISHED_CSV) -> list[dict[str, Any]]:
    """Rows of the published-numbers file (metric columns parsed as floats; empty cells dropped).

    ``aggregation`` names how the publication aggregated a run (a key of
    `recgym.benchmarks.report.aggregation.AGGREGATIONS`); another value is a ValueError naming the file and row.
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for i, r in enumerate(rows, start=2):
        row: dict[str, Any] = dict(r)
        if row.get("aggregation") not in AGGREGATIONS:
            raise ValueError(f"{path}:{i}: aggregation {row.get('aggregation')!r}; expected one of {list(AGGREGATIONS)}")
        for m in TABLE_METRICS:
            if r.get(m) not in (None, ""):
                row[m] = float(r[m])
            else:
                row.pop(m, None)
        out.append(row)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample std) over seeds; std 0 for one value, (nan, nan) for none."""
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
    optimum: float | None = None  # the env's optimum R_cumu (recorded by the runs, or a gt_oracle row)
    ground_truth: dict[str, Any] | None = None  # provenance of the env's ground truth (first run that has one)

    @property
    def aggregations(self) -> list[Aggregation]:
        """The published aggregations the rows use (usually one: the env entry's protocol)."""
        seen: dict[str, Aggregation] = {}
        for r in self.rows:
            if r.get("aggregation") is not None:
                seen.setdefault(r["aggregation"].name, r["aggregation"])
        return list(seen.values())


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
        rows = [_row(agent, runs, metrics, published) for agent, runs in agents.items()]
        rows.sort(key=lambda r: r["agent"])
        first = (done or recs)[0]
        gts = [r.ground_truth for r in done if r.ground_truth]
        tables.append(EnvTable(env=env, env_id=first.spec.get("env_id", env), protocol=first.protocol or "-",
                               rows=rows, metrics=metrics, failed=[r for r in recs if r.status != "done"],
                               optimum=_optimum(done), ground_truth=gts[0] if gts else None))
    return sorted(tables, key=lambda t: t.env)


def _row(agent: str, runs: list[RunRecord], metrics: list[str], published: list[dict[str, Any]]) -> dict[str, Any]:
    spec = runs[0].spec
    gt = next((r.ground_truth for r in runs if r.ground_truth), None)
    row: dict[str, Any] = {"agent": agent, "n": len(runs), "seeds": sorted(r.seed for r in runs),
                           "protocol": runs[0].protocol or "-", "budget": runs[0].budget,
                           "aggregation": runs[0].aggregation, "ground_truth": gt,
                           "fallback": any(is_fallback(r.ground_truth) for r in runs),
                           "eval_actions": ", ".join(sorted({r.eval_actions for r in runs}))}
    for m in metrics:
        for agg in ROW_AGGREGATIONS:
            vals = [v for v in (r.value(m, agg) for r in runs) if v is not None]
            row[(m, agg)] = mean_std(vals)
    pub = _published_for(published, spec)
    if pub is not None:
        row["published"] = pub
        # ours under the publication's own aggregation (normally the same as the protocol's: then equal)
        agg = AGGREGATIONS[pub["aggregation"]]
        for m in metrics:
            vals = [v for v in (r.value(m, agg) for r in runs) if v is not None]
            row[(m, "vs_published")] = mean_std(vals)
    return row


def _optimum(done: list[RunRecord]) -> float | None:
    """The env's optimum R_cumu: the runs' recorded optimum, else a reference row's ``optimal`` (gt_oracle)."""
    recorded = [r.optimum for r in done if r.optimum is not None]
    if recorded:
        return sum(recorded) / len(recorded)
    oracle = [r.value("optimal", "final") for r in done]
    oracle = [v for v in oracle if v is not None and math.isfinite(v)]
    return sum(oracle) / len(oracle) if oracle else None


def _published_for(published: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any] | None:
    ds, method = spec.get("published_dataset"), spec.get("published_method")
    if not ds or not method:
        return None
    for row in published:
        if row["dataset"].lower() == str(ds).lower() and row["method"].lower() == str(method).lower():
            return row
    return None


def published_diff(row: dict[str, Any], metric: str) -> float | None:
    """Ours (under the publication's aggregation) - published, for one metric; None when either is missing."""
    pub = row.get("published")
    ours = row.get((metric, "vs_published"))
    if pub is None or metric not in pub or ours is None or math.isnan(ours[0]):
        return None
    return ours[0] - pub[metric]


def percent_of_optimum(row: dict[str, Any], optimum: float | None) -> float | None:
    """100 x the row's final R_cumu mean / the env's optimum (None without an optimum)."""
    stat = row.get(("R_cumu", "final"))
    if optimum is None or not optimum or stat is None or math.isnan(stat[0]):
        return None
    return 100.0 * stat[0] / optimum


# ------------------------------------------------------------------------------------------------ summary


def summary_columns(table: EnvTable) -> list[str]:
    """The headers of the summary view (columns without content are left out)."""
    cols = ["agent", "R_cumu final"]
    if table.optimum is not None:
        cols.append("% opt")
    cols += [m for m in ("Length", "CV") if m in table.metrics]
    if "R_cumu" in table.metrics and table.aggregations:
        cols.append("pub. agg.")
    if any("published" in r and "R_cumu" in r["published"] for r in table.rows):
        cols.append("published")
    return cols


def summary_rows(table: EnvTable) -> list[list[str]]:
    """The summary view's cells, one list per row in `summary_columns` order."""
    cols = summary_columns(table)
    out = []
    for r in table.rows:
        name = r["agent"] if len(r["agent"]) <= SUMMARY_AGENT_WIDTH else r["agent"][:SUMMARY_AGENT_WIDTH - 1] + "…"
        cells = {"agent": name + (f" {FALLBACK_MARK}" if r["fallback"] else ""),
                 "R_cumu final": fmt(*r.get(("R_cumu", "final"), (math.nan, math.nan)))}
        pct = percent_of_optimum(r, table.optimum)
        cells["% opt"] = "-" if pct is None else f"{pct:.1f}%"
        for m, digits in (("Length", 1), ("CV", 3)):
            v = r.get((m, "final"), (math.nan, 0.0))[0]
            cells[m] = "-" if math.isnan(v) else f"{v:.{digits}f}"
        cells["pub. agg."] = "-" if r.get("aggregation") is None else fmt(*r[("R_cumu", "published_agg")])
        pub = r.get("published") or {}
        diff = published_diff(r, "R_cumu")
        cells["published"] = ("-" if "R_cumu" not in pub else
                              f"{pub['R_cumu']:g}" + ("" if diff is None else f" ({diff:+.2f})"))
        out.append([cells[c] for c in cols])
    return out


def table_notes(table: EnvTable) -> list[str]:
    """The lines under a table: the aggregation, the optimum, the ground truth, fallbacks, actions, sources."""
    notes = []
    for agg in table.aggregations:
        notes.append(f"pub. agg. = the protocol source's aggregation of a run's evaluations ({agg.source}); "
                     "mean ± std over seeds of each run's value")
    if table.optimum is not None:
        notes.append(f"% opt = final R_cumu / the env's optimum {table.optimum:.2f}")
    if any("published" in r and "R_cumu" in r["published"] for r in table.rows):
        notes.append("published = the published R_cumu (in brackets: pub. agg. - published)")
    if table.ground_truth:
        gt = table.ground_truth
        ok = "comparable to published numbers" if gt.get("comparable_to_published") else "NOT comparable to published"
        notes.append(f"ground truth: {gt.get('source', '?')} ({ok}" + (f"; {gt['note']}" if gt.get("note") else "") + ")")
    flagged = sorted({r["agent"] for r in table.rows if r["fallback"]})
    if flagged:
        why = next(r["ground_truth"] for r in table.rows if r["fallback"])
        notes.append(f"{FALLBACK_MARK} fallback ground truth: {why.get('note') or why.get('source')} "
                     f"(rows: {', '.join(flagged)})")
    actions = sorted({(r["eval_actions"], r["agent"]) for r in table.rows if r["eval_actions"] != "greedy"})
    if actions:
        notes.append("test-time actions: " + "; ".join(f"{a} ({ag})" for a, ag in actions) + "; others greedy")
    sources = sorted({r["published"]["source"] for r in table.rows if "published" in r})
    notes += [f"published numbers: {s}" for s in sources]
    return notes


# ------------------------------------------------------------------------------------------------- wide


def _columns(table: EnvTable) -> list[tuple[str, str, str]]:
    """(header, metric, kind) with kind in curve_mean / final / published_agg / published / diff."""
    cols = []
    has_pub = any("published" in r for r in table.rows)
    has_agg = bool(table.aggregations)
    for m in table.metrics:
        cols.append((f"{m} (curve)", m, "curve_mean"))
        cols.append((f"{m} (final)", m, "final"))
        if has_agg and m in CURVE_METRICS:
            cols.append((f"{m} (pub. agg.)", m, "published_agg"))
        if has_pub and m in CURVE_METRICS:
            cols.append((f"{m} published", m, "published"))
            cols.append((f"{m} diff", m, "diff"))
    return cols


def _cell(row: dict[str, Any], metric: str, kind: str) -> str:
    if kind in ROW_AGGREGATIONS:
        stat = row.get((metric, kind))
        return "-" if stat is None else fmt(*stat)
    pub = row.get("published")
    if pub is None or metric not in pub:
        return "-"
    if kind == "published":
        return fmt(pub[metric])
    diff = published_diff(row, metric)
    return "-" if diff is None else f"{diff:+.3f}"


def _agent_label(row: dict[str, Any]) -> str:
    return row["agent"] + (f" {FALLBACK_MARK}" if row["fallback"] else "")


def to_markdown(tables: list[EnvTable], suite_name: str) -> str:
    """``report.md``: per env the summary table, then every metric (the wide view), then the notes."""
    out = io.StringIO()
    out.write(f"# Report: {suite_name}\n\nMean ± std over seeds (sample std). *curve* = mean over the "
              "evaluations made during training, *final* = the last evaluation, *pub. agg.* = the aggregation "
              "of the protocol's source (DORL / ROLeR: all evaluations; EasyRL4Rec: the last 25%). "
              "*diff* = ours (aggregated as the publication) - published.\n")
    for t in tables:
        out.write(f"\n## {t.env} (`{t.env_id}`, protocol `{t.protocol}`)\n\n")
        head = summary_columns(t)
        out.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        for cells in summary_rows(t):
            out.write("| " + " | ".join(cells) + " |\n")
        cols = _columns(t)
        out.write("\nAll metrics:\n\n| agent | seeds | protocol | budget | actions | "
                  + " | ".join(c[0] for c in cols) + " |\n")
        out.write("|---|---|---|---|---|" + "---|" * len(cols) + "\n")
        for r in t.rows:
            cells = [_cell(r, m, k) for _, m, k in cols]
            out.write(f"| {_agent_label(r)} | {r['n']} | {r['protocol']} | {r['budget']} | {r['eval_actions']} | "
                      + " | ".join(cells) + " |\n")
        notes = table_notes(t)
        if notes:
            out.write("\n" + "".join(f"- {n}\n" for n in notes))
        for f in t.failed:
            out.write(f"\n- {f.agent} seed {f.seed}: **{f.status}**" + (f" ({f.error})" if f.error else "") + "\n")
    return out.getvalue()


def to_csv(tables: list[EnvTable]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["env", "env_id", "protocol", "agent", "n_seeds", "metric", "aggregation", "mean", "std",
                "published", "diff", "published_source", "budget", "eval_actions", "ground_truth",
                "comparable_to_published"])
    for t in tables:
        for r in t.rows:
            pub = r.get("published") or {}
            gt = r.get("ground_truth") or {}
            comparable = "" if not gt else ("yes" if gt.get("comparable_to_published") else "no")
            for m in t.metrics:
                aggs = [(a, a) for a in ROW_AGGREGATIONS if a != "published_agg" or r.get("aggregation") is not None]
                for label, agg in aggs:
                    mean, std = r.get((m, agg), (math.nan, math.nan))
                    name = r["aggregation"].name if agg == "published_agg" else label
                    p = pub.get(m) if pub and agg == "published_agg" and pub["aggregation"] == name else None
                    diff = published_diff(r, m) if p is not None else None
                    w.writerow([t.env, t.env_id, r["protocol"], r["agent"], r["n"], m, name, f"{mean:.6g}",
                                f"{std:.6g}", "" if p is None else f"{p:.6g}",
                                "" if diff is None else f"{diff:.6g}", pub.get("source", "") if p is not None else "",
                                r["budget"], r["eval_actions"], gt.get("source", ""), comparable])
    return buf.getvalue()


def _console(width: int) -> Any:
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else width)


def rich_table(table: EnvTable, suite_name: str, wide: bool = False) -> Any:
    """The env table as a `rich.table.Table`: the summary (at most 100 columns wide for realistic values: agent
    labels are cut at `SUMMARY_AGENT_WIDTH`) or, with ``wide``, every metric and aggregation."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    title = f"{suite_name} / {table.env}" + (f" ({table.env_id})" if table.env_id != table.env else "") + \
        f", protocol {table.protocol}"
    if wide:
        cols = _columns(table)
        tab = Table(title=title, show_lines=False)
        for h in ["agent", "seeds", "budget", "actions", *[c[0] for c in cols]]:
            tab.add_column(h, justify="left" if h == "agent" else "right")
        for r in table.rows:
            tab.add_row(escape(_agent_label(r)), str(r["n"]), r["budget"], r["eval_actions"],
                        *[_cell(r, m, k) for _, m, k in cols])
        return tab
    tab = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for h in summary_columns(table):
        tab.add_column(h, justify="left" if h == "agent" else "right", no_wrap=True)
    for cells in summary_rows(table):
        tab.add_row(*[escape(c) for c in cells])
    return tab


def print_tables(tables: list[EnvTable], suite_name: str, wide: bool = False, console: Any = None) -> None:
    """Print the summary view of every env table (``wide=True``: every metric, as in report.md's second table)."""
    from rich.markup import escape

    console = console or _console(400 if wide else 100)  # when not a terminal: no wrapping in logs
    for t in tables:
        console.print(rich_table(t, suite_name, wide))
        for note in table_notes(t):
            console.print("  " + escape(note))
        for f in t.failed:
            console.print(f"  [red]{f.agent} seed {f.seed}: {f.status}[/red]" + (escape(f" ({f.error})") if f.error else ""))
