"""The published aggregations: how DORL, ROLeR and EasyRL4Rec turn one run's evaluation curve into a table cell.

Each of them evaluates the policy once per training epoch (100 test episodes) and reports, for one run:

- DORL ("Alleviating Matthew Effect of Offline Reinforcement Learning in Interactive Recommendation",
  arXiv:2307.04571) and ROLeR (arXiv:2407.13163): the mean +- std over **all** evaluations of the run (DORL-codes
  ``results_for_paper/visual_utils.py`` ``handle_table`` with ``final_rate=1``);
- EasyRL4Rec (arXiv:2402.15164): the mean +- std over the **last 25 %** of the evaluations (its
  ``results_for_paper/visual_utils.py`` ``handle_one_col`` keeps the evaluations from index
  ``int((1 - final_rate) * n)`` on; here ``final_rate = 0.25``).

The std is pandas' ``Series.std()``: the sample std (n - 1), NaN for a single value. recgym's runs keep the
curve in ``result.json`` (one entry per evaluation, in training order), so the same numbers can be computed from
them: `aggregate_curve`. Which aggregation a run gets follows its protocol preset (`PROTOCOL_AGGREGATION`):
the preset names the publication whose numbers it reproduces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AGGREGATIONS", "PROTOCOL_AGGREGATION", "Aggregation", "aggregate_curve", "aggregation_for",
           "all_evaluations", "last_fraction"]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n == 1:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def all_evaluations(values: Sequence[float]) -> tuple[float, float]:
    """DORL / ROLeR: (mean, sample std) over every evaluation of a run (std NaN for one value, nan, nan for none)."""
    return _mean_std([float(v) for v in values])


def last_fraction(values: Sequence[float], fraction: float = 0.25) -> tuple[float, float]:
    """EasyRL4Rec: (mean, sample std) over the evaluations from index ``int((1 - fraction) * n)`` on, i.e. the
    last ``fraction`` of the run (at least one evaluation when there is any)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    vals = [float(v) for v in values]
    start = int((1.0 - fraction) * len(vals))
    return _mean_std(vals[start:])


@dataclass(frozen=True)
class Aggregation:
    """One published aggregation: ``name`` (a key of `AGGREGATIONS`), a short ``label`` for table headers and
    the ``source`` it follows."""

    name: str
    label: str
    source: str
    fraction: float = 1.0  # the share of the run's evaluations (from its end) that are averaged

    def __call__(self, values: Sequence[float]) -> tuple[float, float]:
        return all_evaluations(values) if self.fraction >= 1.0 else last_fraction(values, self.fraction)


AGGREGATIONS: dict[str, Aggregation] = {
    "all_evals": Aggregation("all_evals", "all evals", "DORL / ROLeR: mean ± std over all evaluations of a run"),
    "last_25pct": Aggregation("last_25pct", "last 25%", "EasyRL4Rec: mean ± std over the last 25% of a run's "
                              "evaluations", 0.25),
}
# Protocol preset (recgym.envs.protocol) -> the aggregation of the publication it reproduces.
PROTOCOL_AGGREGATION: dict[str, str] = {"dorl": "all_evals", "dorl_code": "all_evals", "roler": "all_evals",
                                        "easyrl4rec": "last_25pct"}


def aggregation_for(protocol: str | None) -> Aggregation | None:
    """The published aggregation of a protocol preset (None for ``custom`` or an unknown / missing protocol)."""
    key = PROTOCOL_AGGREGATION.get(str(protocol)) if protocol else None
    return AGGREGATIONS[key] if key else None


def aggregate_curve(curve: Sequence[dict[str, object]], metric: str, aggregation: Aggregation
                    ) -> tuple[float, float]:
    """``aggregation`` of ``metric`` over a run's curve (``result.json``'s ``curve``: dicts with ``step`` and the
    metrics), taken in step order; evaluations without the metric (or with a null) are left out."""
    ordered = sorted((c for c in curve if isinstance(c.get(metric), (int, float))), key=lambda c: c.get("step", 0))
    return aggregation([float(c[metric]) for c in ordered])  # type: ignore[arg-type]
