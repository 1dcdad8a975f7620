"""`recgym report` against the publications: the published aggregation, fallback ground truths, % of the optimum,
the 100-column summary and `--wide`, readable plot axes. Run folders are written by hand (exact curves), so every
number below is computed by hand."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from recgym.benchmarks.report import build_tables, collect_runs, to_csv, to_markdown
from recgym.benchmarks.report.aggregation import (
    AGGREGATIONS,
    PROTOCOL_AGGREGATION,
    aggregate_curve,
    aggregation_for,
    all_evaluations,
    last_fraction,
)
from recgym.benchmarks.report.tables import (
    load_published,
    print_tables,
    rich_table,
    summary_columns,
    summary_rows,
)
from recgym.benchmarks.suite import ReportConfig

YAHOO_FALLBACK = {"source": "recgym fallback: biased MF on the unbiased test ratings, clip(round(x), 1, 5)",
                  "comparable_to_published": False,
                  "note": "recgym fallback, not comparable to published Yahoo numbers"}
COAT_GT = {"source": "RL4Rec's coat_pseudoGT_ratingM.ascii (shipped)", "comparable_to_published": True,
           "note": "the matrix DORL, ROLeR and EasyRL4Rec evaluate on"}
SYNTHETIC_GT = {"source": "exact (generated)", "comparable_to_published": False,
                "note": "synthetic data: no published numbers exist"}
PUBLISHED = [{"source": "EasyRL4Rec test table", "dataset": "Coat", "preset": "easyrl4rec", "mode": "FB",
              "aggregation": "last_25pct", "method": "DQN", "R_cumu": 7.0}]


def fake_run(root: Path, env: str, agent: str, seed: int, r_cumu: list[float], *, protocol: str | None,
             ground_truth: dict | None = None, optimum: float | None = None, eval_actions: str = "greedy",
             published: tuple[str, str] | None = None, extra_final: dict | None = None) -> None:
    """A finished run folder whose curve has one evaluation per value of ``r_cumu`` (steps 1000, 2000, ...)."""
    d = root / env / agent / f"seed{seed}"
    d.mkdir(parents=True)
    curve = [{"step": 1000 * (i + 1), "R_cumu": v, "Length": 10.0 + i, "CV": 0.01 * (i + 1), "R_avg": v / 10}
             for i, v in enumerate(r_cumu)]
    final = {**{k: v for k, v in curve[-1].items() if k != "step"}, **(extra_final or {})}
    spec = {"env_id": f"GroundTruthRec-{env}-v0", "agent": agent, "protocol": protocol, "train_budget": 8000,
            "agent_config": {}, "published_dataset": published[0] if published else None,
            "published_method": published[1] if published else None}
    env_protocol = None if protocol is None else {"name": protocol, "ground_truth": ground_truth,
                                                  "quitting": optimum is None}
    result = {"final": final, "curve": curve, "n_evals": len(curve), "budget_unit": "env_steps",
              "curve_mean": {k: sum(c[k] for c in curve) / len(curve) for k in ("R_cumu", "Length", "CV", "R_avg")},
              "protocol": protocol, "env_protocol": env_protocol, "eval_actions": eval_actions, "optimum": optimum}
    (d / "config.json").write_text(json.dumps({"spec": spec}))
    (d / "result.json").write_text(json.dumps(result))
    (d / "DONE").write_text("{}")


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    root = tmp_path / "fid"
    # Coat under easyrl4rec (last 25%), 8 evaluations per run; the env knows its optimum (10.0)
    fake_run(root, "coat", "dqn", 0, [1, 2, 3, 4, 5, 6, 7, 8], protocol="easyrl4rec", ground_truth=COAT_GT,
             optimum=10.0, eval_actions="epsilon:0.01", published=("Coat", "DQN"))
    fake_run(root, "coat", "dqn", 1, [2, 3, 4, 5, 6, 7, 8, 9], protocol="easyrl4rec", ground_truth=COAT_GT,
             optimum=10.0, eval_actions="epsilon:0.01", published=("Coat", "DQN"))
    fake_run(root, "coat", "epsilon_greedy", 0, [4, 4, 4, 4, 4, 4, 4, 4], protocol="easyrl4rec",
             ground_truth=COAT_GT, optimum=10.0)
    # Yahoo under dorl (all evaluations) with the fallback ground truth; a gt_oracle row gives the optimum
    fake_run(root, "yahoo", "a2c", 0, [1, 2, 3, 6], protocol="dorl", ground_truth=YAHOO_FALLBACK,
             eval_actions="sample")
    fake_run(root, "yahoo", "gt_oracle", 0, [20], protocol="dorl", ground_truth=YAHOO_FALLBACK,
             extra_final={"optimal": 25.0})
    # Synthetic: not comparable, but not a fallback either; a custom protocol has no published aggregation
    fake_run(root, "synthetic", "random", 0, [5, 7], protocol="custom", ground_truth=SYNTHETIC_GT)
    return root


def test_published_aggregations_hand_computed() -> None:
    mean, std = all_evaluations([1, 2, 3, 6])
    assert mean == 3.0 and std == pytest.approx(math.sqrt((4 + 1 + 0 + 9) / 3))
    # 10 evaluations: the last 25% starts at index int(0.75 * 10) = 7 -> [8, 9, 10]
    assert last_fraction(range(1, 11)) == (9.0, 1.0)
    assert last_fraction([1, 2, 3, 4, 5, 6, 7, 8]) == (7.5, pytest.approx(math.sqrt(0.5)))  # index 6 on
    m, s = last_fraction([1, 2, 3, 4])  # index 3: one evaluation, its std undefined (pandas: NaN)
    assert m == 4.0 and math.isnan(s)
    assert last_fraction([5.0])[0] == 5.0 and all(math.isnan(x) for x in last_fraction([]))
    with pytest.raises(ValueError, match="fraction"):
        last_fraction([1.0], 0.0)
    assert {p: aggregation_for(p).name for p in ("dorl", "dorl_code", "roler", "easyrl4rec")} == {
        "dorl": "all_evals", "dorl_code": "all_evals", "roler": "all_evals", "easyrl4rec": "last_25pct"}
    assert aggregation_for("custom") is None and aggregation_for(None) is None
    # the curve is taken in step order; evaluations without the metric are left out
    curve = [{"step": 3, "R_cumu": 30.0}, {"step": 1, "R_cumu": 10.0}, {"step": 2}, {"step": 4, "R_cumu": 40.0},
             {"step": 0, "R_cumu": 0.0}]
    assert aggregate_curve(curve, "R_cumu", AGGREGATIONS["last_25pct"])[0] == 40.0  # [0, 10, 30, 40] -> index 3
    assert aggregate_curve(curve, "R_cumu", AGGREGATIONS["all_evals"])[0] == 20.0


def test_published_aggregation_column_and_comparison(suite: Path) -> None:
    tables = {t.env: t for t in build_tables(collect_runs(suite), published=PUBLISHED)}
    dqn = next(r for r in tables["coat"].rows if r["agent"] == "dqn")
    # per run: last 25% of 8 evaluations = mean of the last two -> 7.5 and 8.5; over seeds 8.0 ± 0.707
    assert dqn[("R_cumu", "published_agg")] == (8.0, pytest.approx(math.sqrt(0.5)))
    assert dqn[("R_cumu", "final")] == (8.5, pytest.approx(math.sqrt(0.5)))
    assert dqn[("R_cumu", "curve_mean")][0] == 5.0
    cols = summary_columns(tables["coat"])
    assert cols == ["agent", "R_cumu final", "% opt", "Length", "CV", "pub. agg.", "published"]
    cells = dict(zip(cols, summary_rows(tables["coat"])[0], strict=True))
    # compared on the aggregation (8.0 - 7.0), not on the final value (8.5 - 7.0)
    assert cells == {"agent": "dqn", "R_cumu final": "8.500 ± 0.707", "% opt": "85.0%", "Length": "17.0",
                     "CV": "0.080", "pub. agg.": "8.000 ± 0.707", "published": "7 (+1.00)"}
    a2c = next(r for r in tables["yahoo"].rows if r["agent"] == "a2c")
    assert a2c[("R_cumu", "published_agg")] == (3.0, 0.0)  # dorl: every evaluation of the one run
    syn = tables["synthetic"]
    assert "pub. agg." not in summary_columns(syn)  # a custom protocol has no published aggregation
    rows = [r for r in to_csv(list(tables.values())).splitlines() if r.startswith("coat,") and ",dqn," in r]
    agg = next(r for r in rows if ",R_cumu,last_25pct," in r).split(",")
    assert agg[7:11] == ["8", "0.707107", "7", "1"] and agg[-3:] == ["epsilon:0.01", COAT_GT["source"], "yes"]


def test_fallback_ground_truth_rows_are_marked(suite: Path) -> None:
    tables = {t.env: t for t in build_tables(collect_runs(suite), published=[])}
    yahoo = tables["yahoo"]
    assert [r[0] for r in summary_rows(yahoo)] == ["a2c *", "gt_oracle *"]
    assert [r[0] for r in summary_rows(tables["coat"])] == ["dqn", "epsilon_greedy"]
    assert [r[0] for r in summary_rows(tables["synthetic"])] == ["random"]  # not comparable, not a fallback
    md = to_markdown(list(tables.values()), "fid")
    assert "* fallback ground truth: recgym fallback, not comparable to published Yahoo numbers (rows: a2c, " \
           "gt_oracle)" in md
    assert "ground truth: exact (generated) (NOT comparable to published; synthetic data" in md
    assert "test-time actions: sample (a2c); others greedy" in md
    assert "| a2c * | 1 | dorl | 8000 env_steps | sample |" in md  # the wide table marks the row too
    # the agents layout marks the env's columns and says why
    from recgym.benchmarks.report.agents import build_agents_table

    t = build_agents_table(collect_runs(suite), ReportConfig(layout="agents", columns=["R_cumu:published"]),
                           {"envs": ["coat", "yahoo"], "agents": ["a2c", "dqn"]}, "fid")
    assert t.header[:3] == ["agent", "coat R_cumu pub. agg.", "yahoo * R_cumu pub. agg."]
    assert t.rows[0][:3] == ["a2c", "-", "3.000 ± 0.000"] and t.rows[1][1] == "8.000 ± 0.707"
    assert any("yahoo: fallback ground truth: recgym fallback" in n for n in t.notes)


def test_percent_of_optimum_from_the_env_or_an_oracle_row(suite: Path) -> None:
    tables = {t.env: t for t in build_tables(collect_runs(suite), published=[])}
    assert tables["coat"].optimum == 10.0  # recorded by the runs
    assert tables["yahoo"].optimum == 25.0  # gt_oracle's `optimal`
    yahoo = dict(zip(summary_columns(tables["yahoo"]), summary_rows(tables["yahoo"])[0], strict=True))
    assert yahoo["% opt"] == "24.0%"  # final 6 / 25
    assert tables["synthetic"].optimum is None and "% opt" not in summary_columns(tables["synthetic"])


def test_summary_fits_100_columns_and_wide_prints_everything(suite: Path) -> None:
    from rich.console import Console

    for agent, final in (("a_rather_long_agent_name", 99.5), ("dqn", 121.8349)):
        fake_run(suite, "big", agent, 0, [121.8349, final], protocol="easyrl4rec", ground_truth=YAHOO_FALLBACK,
                 optimum=130.0, published=("Coat", "DQN"))
    tables = build_tables(collect_runs(suite), published=PUBLISHED)

    console = Console(file=io.StringIO(), width=400, color_system=None)
    for t in tables:  # the natural width of each summary table (what it takes without wrapping)
        assert console.measure(rich_table(t, "fid")).maximum <= 100, t.env
    assert console.measure(rich_table(tables[0], "fid", wide=True)).maximum > 100

    def render(wide: bool) -> list[str]:
        buf = io.StringIO()
        print_tables(tables, "fid", wide=wide, console=Console(file=buf, width=400, color_system=None))
        return buf.getvalue().splitlines()

    summary = render(False)
    # the long label is cut (with an ellipsis) in the summary, whole in the wide view
    assert any("a_rather_long_agent_n… *" in ln and "99.50 ± 0.00" in ln and "76.5%" in ln for ln in summary)
    assert any("(rows: a_rather_long_agent_name, dqn)" in ln for ln in summary)  # the fallback note names it
    wide = render(True)
    assert any("a_rather_long_agent_name *" in ln and "R_cumu" not in ln for ln in wide)
    assert any("R_cumu (curve)" in ln for ln in wide) and not any("R_cumu (curve)" in ln for ln in summary)


def test_report_cli_wide_flag(suite: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recgym.cli import app

    out = CliRunner().invoke(app, ["report", str(suite), "--out", str(tmp_path / "a"), "--no-plots"])
    wide = CliRunner().invoke(app, ["report", str(suite), "--out", str(tmp_path / "b"), "--no-plots", "--wide"])
    assert out.exit_code == 0 and wide.exit_code == 0, out.output + wide.output
    assert "pub. agg." in out.output and "R_cumu (curve)" not in out.output
    assert "R_cumu (curve)" in wide.output
    md = (tmp_path / "a" / "report.md").read_text()
    assert "R_cumu (curve)" in md and "| agent | R_cumu final |" in md  # report.md holds both views


def test_published_csv_aggregation_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "p.csv"
    bad.write_text("source,dataset,preset,mode,aggregation,method,R_cumu\nx,KuaiRec,dorl,NX_0,curve_mean,DORL,1\n")
    with pytest.raises(ValueError, match=r"p.csv:2: aggregation 'curve_mean'; expected one of"):
        load_published(bad)
    rows = load_published()
    # every shipped row is aggregated as its protocol's source: DORL all evaluations, EasyRL4Rec (DAC4Rec) last 25%
    assert {r["aggregation"] for r in rows} == {"all_evals", "last_25pct"}
    assert all(r["aggregation"] == PROTOCOL_AGGREGATION[r["preset"]] for r in rows)


def test_budget_axis_labels_are_compact_and_do_not_overlap() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recgym.benchmarks.report.plots import count_label, format_budget_axis

    assert [count_label(x) for x in (0, 500, 1000, 12_500, 200_000, 999_999, 1_234_567, 3e9)] == [
        "0", "500", "1k", "12.5k", "200k", "1M", "1.23M", "3G"]
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.plot([30_000, 330_000, 600_000], [0, 1, 2])
    format_budget_axis(ax)
    fig.canvas.draw()
    assert ax.get_xlim()[0] == 0  # a budget axis starts at 0
    labels = [t for t in ax.get_xticklabels() if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0]
              <= ax.get_xlim()[1]]
    assert [t.get_text() for t in labels] == ["0", "200k", "400k", "600k"]
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:], strict=False))  # no two labels touch
    plt.close(fig)


def test_paired_column_subtracts_the_same_seed_of_the_reference_row(tmp_path: Path) -> None:
    from recgym.benchmarks.report.agents import build_agents_table
    from recgym.benchmarks.suite import parse_column

    root = tmp_path / "pair"
    # seeds 0 and 1 of both agents, seed 2 only of r3s (left out: no partner); the shared evaluation noise (+10 on
    # seed 1) cancels in the paired difference
    for seed, ours, ref in [(0, [3, 5], [2, 2]), (1, [13, 17], [12, 12])]:
        fake_run(root, "coat", "r3s", seed, ours, protocol="roler")
        fake_run(root, "coat", "dorl", seed, ref, protocol="roler")
    fake_run(root, "coat", "r3s", 2, [100, 100], protocol="roler")
    col = parse_column("R_cumu:final-dorl")
    assert (col.kind, col.metric, col.aggregation, col.ref_label) == ("paired", "R_cumu", "final", "dorl")
    t = build_agents_table(collect_runs(root),
                           ReportConfig(layout="agents", columns=["R_cumu:curve-dorl", "R_cumu:final-dorl"]),
                           {"envs": ["coat"], "agents": ["r3s", "dorl"]}, "pair")
    assert t.header == ["agent", "coat R_cumu curve minus dorl (paired by seed)",
                        "coat R_cumu final minus dorl (paired by seed)"]
    # curve: (4 - 2, 15 - 12) = (2, 3): mean 2.5, sample std 0.71; final: (5 - 2, 17 - 12) = (3, 5): 4 +- 1.41
    assert t.rows[0] == ["r3s", "+2.50 ± 0.71", "+4.00 ± 1.41"]
    assert t.rows[1] == ["dorl", "+0.00 ± 0.00", "+0.00 ± 0.00"]
    with pytest.raises(ValueError, match="METRIC:AGG-AGENT"):
        parse_column("R_cumu:final-dorl/gt_oracle:optimal")
