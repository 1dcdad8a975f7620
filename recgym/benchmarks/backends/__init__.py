"""Where a grid's runs execute: `run_grid` dispatches to the local loop or to Ray (both write ``runs/``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from recgym.benchmarks.grid import RunSpec, expand
from recgym.benchmarks.run import RUNS_DIR, RunResult
from recgym.benchmarks.suite import Suite, SuiteError

BACKENDS = ("local", "ray")


def run_grid(specs: Sequence[RunSpec] | Suite, root: Path | str = RUNS_DIR, *, backend: str = "local",
             progress: bool = True, ray_address: str | None = None, gpus_per_run: float = 0.0,
             cpus_per_run: float = 1.0, tensorboard: bool = True) -> list[RunResult]:
    """Run every spec (skipping finished ones) with the local or the Ray backend; return one result per spec."""
    if isinstance(specs, Suite):
        specs = expand(specs)
    specs = list(specs)
    rel = [s.relpath() for s in specs]
    if len(set(rel)) != len(rel):
        raise SuiteError("two runs of the grid would write the same folder")
    root = Path(root)
    if backend == "ray":
        from recgym.benchmarks.backends.ray import run_grid_ray

        return run_grid_ray(specs, root, address=ray_address, gpus_per_run=gpus_per_run,
                            cpus_per_run=cpus_per_run, progress=progress, tensorboard=tensorboard)
    if backend != "local":
        raise ValueError(f"unknown backend {backend!r}; valid: {list(BACKENDS)}")
    from recgym.benchmarks.backends.local import run_grid_local

    return run_grid_local(specs, root, progress=progress, tensorboard=tensorboard)
