"""Probes: named measurements a suite runs beside (or instead of) its grid.

A probe is a plain function returning table rows (a list of flat dicts) or printed text; ``[[probes]]`` in a
suite names one from `PROBES` with keyword ``args``. `recgym.benchmarks.run.run_probes` runs them into
``runs/<suite>/<name>/`` and `recgym report` prints their rows as tables.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

from recgym.benchmarks.perf.a2c_speed import a2c_speed
from recgym.benchmarks.perf.data_load import data_load_times
from recgym.benchmarks.perf.denoise import denoise_env_throughput, refit_cost, refit_gradient_snr
from recgym.benchmarks.perf.env import env_throughput
from recgym.benchmarks.quality import diffrec_table, shaping_scale, worldmodel_quality, yahoo_completion

PROBES: dict[str, Callable[..., Any]] = {
    "env_throughput": env_throughput,
    "a2c_speed": a2c_speed,
    "data_load": data_load_times,
    "denoise_env": denoise_env_throughput,
    "refit_cost": refit_cost,
    "refit_gradient_snr": refit_gradient_snr,
    "worldmodel_quality": worldmodel_quality,
    "shaping_scale": shaping_scale,
    "yahoo_completion": yahoo_completion,
    "diffrec_table": diffrec_table,
}
PROBE_FILE = "probe.json"  # the record a probe folder holds (see run_probes)


def call_probe(probe: str, args: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Run ``PROBES[probe](**args)``; return (rows, text), text = what it printed plus a returned string."""
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; probes: {sorted(PROBES)}")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = PROBES[probe](**args)
    if isinstance(out, str):
        return [], buf.getvalue() + out
    return [dict(r) for r in out or []], buf.getvalue()
