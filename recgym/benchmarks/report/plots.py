"""PNG plots of a suite's runs for `recgym report`: evaluation curves and final / curve-average bars per env.

The curves' x axis is the training budget: at most 5 ticks, labelled compactly (``200k``, ``1.2M``:
`count_label`) so that the labels of a 600,000-step run do not run into each other.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from recgym.benchmarks.report.tables import CURVE_METRICS, EnvTable, RunRecord, mean_std


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def plot_env(records: list[RunRecord], table: EnvTable, out_dir: Path) -> list[Path]:
    """``curves_<env>.png`` and ``bars_<env>.png`` for one env."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written: list[Path] = []
    done = [r for r in records if r.env == table.env and r.status == "done"]
    metrics = [m for m in CURVE_METRICS if m in table.metrics] or table.metrics[:1]
    if not metrics:
        return written
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    agents = sorted({r.agent for r in done})
    for ax, m in zip(axes[0], metrics, strict=True):
        for idx, agent in enumerate(agents):
            color = plt.get_cmap("tab10")(idx % 10)
            per_seed = [dict(r.curve().get(m, [])) for r in done if r.agent == agent]
            steps = sorted({s for c in per_seed for s in c})
            if not steps:
                continue
            means, stds = [], []
            for s in steps:
                vals = [c[s] for c in per_seed if s in c]
                mu, sd = mean_std(vals)
                means.append(mu)
                stds.append(sd)
            x, mu, sd = np.array(steps), np.array(means), np.array(stds)
            if len(x) == 1:  # one evaluation (e.g. a static policy): a level line across the plot
                ax.axhline(mu[0], ls="--", lw=1.2, color=color, label=f"{agent} (one eval)")
                ax.axhspan(mu[0] - sd[0], mu[0] + sd[0], color=color, alpha=0.12)
                continue
            ax.plot(x, mu, marker="o" if len(x) < 30 else None, ms=3, color=color, label=agent)
            ax.fill_between(x, mu - sd, mu + sd, color=color, alpha=0.2)
        ax.set_title(m)
        ax.set_xlabel(_unit(done))
        format_budget_axis(ax)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    env_id = f" ({table.env_id})" if table.env_id != table.env else ""
    fig.suptitle(f"{table.env}{env_id}, protocol {table.protocol}", fontsize=9)
    fig.tight_layout()
    path = out_dir / f"curves_{_safe(table.env)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    m = "R_cumu" if "R_cumu" in table.metrics else table.metrics[0]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(table.rows) + 2), 3.8))
    x = np.arange(len(table.rows))
    w = 0.38
    for off, agg, label in ((-w / 2, "curve_mean", "curve average"), (w / 2, "final", "final")):
        mu = [r.get((m, agg), (math.nan, 0))[0] for r in table.rows]
        sd = [r.get((m, agg), (0, 0))[1] for r in table.rows]
        ax.bar(x + off, mu, w, yerr=sd, capsize=3, label=label)
    pubs = [(i, r["published"][m]) for i, r in enumerate(table.rows) if "published" in r and m in r["published"]]
    if pubs:
        ax.scatter([i for i, _ in pubs], [v for _, v in pubs], marker="x", color="black", zorder=3,
                   label="published")
    ax.set_xticks(x, [r["agent"] for r in table.rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(m)
    ax.set_title(f"{table.env}: {m}\n(mean ± std over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out_dir / f"bars_{_safe(table.env)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def count_label(x: float, _pos: int | None = None) -> str:
    """A compact tick label for a count: ``0``, ``500``, ``12.5k``, ``200k``, ``1.2M`` (3 significant digits)."""
    x = float(f"{x:.3g}")  # round first, so that 999,999 reads 1M, not 1e+03k
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def format_budget_axis(ax: Any) -> None:
    """At most 5 integer ticks at round values on ``ax``'s x axis, labelled with `count_label`; the axis starts at
    0 when the data does not go below it (a training budget)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10], integer=True, min_n_ticks=2))
    ax.xaxis.set_major_formatter(FuncFormatter(count_label))
    if ax.dataLim.x0 >= 0:
        ax.set_xlim(left=0)


def _unit(records: list[RunRecord]) -> str:
    """The x-axis label: the runs' budget unit when they share one."""
    units = {r.result.get("budget_unit") for r in records}
    return str(units.pop()).replace("_", " ") if len(units) == 1 and None not in units else "budget units"
