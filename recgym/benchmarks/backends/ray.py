"""`--backend ray`: the grid as Ray tasks, one per run, writing the same ``runs/`` layout.

A local Ray is started by default (and shut down afterwards); ``address=`` joins a running cluster (the
workers must see the same ``runs/`` folder, e.g. a shared file system, and have recgym installed). Each task
asks for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (a fraction packs several runs on one GPU); its run
uses ``cuda`` only if the spec's device says so. Finished runs are skipped before any task is sent; the
per-run lock still guards against two drivers running the same grid. A task whose worker process dies (killed,
out of memory, node lost) is retried up to ``max_retries`` times: the dead worker's lock went with its
process, so the retry takes the folder and starts the run afresh. An exception raised by the run itself is not
retried (it is recorded in the run's ``error.txt``, as with the local backend).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recgym.benchmarks.backends.local import grid_progress
from recgym.benchmarks.grid import RunSpec
from recgym.benchmarks.run import RunResult, execute_run, finished_run

INSTALL_HINT = "--backend ray needs Ray: pip install 'recgym[ray]'"


def require_ray() -> Any:
    """The ``ray`` module, or ImportError with the install hint."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return ray


def local_runtime_env() -> dict[str, Any]:
    """Runtime env for a local Ray: workers import recgym (and suite plugins) from where this process does."""
    import recgym

    pkg_root = str(Path(recgym.__file__).resolve().parent.parent)
    paths = [pkg_root, os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def _execute_remote(spec_dict: dict[str, Any], root: str, tensorboard: bool) -> dict[str, Any]:
    """Body of a Ray task: run one spec; return a picklable summary."""
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("RECGYM_RAY_THREADS", "1"))))
    spec = RunSpec.from_dict(spec_dict)
    res = execute_run(spec, root, tensorboard=tensorboard)
    return {"status": res.status, "run_dir": str(res.run_dir), "wall_s": res.wall_s, "error": res.error,
            "final": res.final}


def run_grid_ray(specs: Sequence[RunSpec], root: Path, *, address: str | None = None, gpus_per_run: float = 0.0,
                 cpus_per_run: float = 1.0, progress: bool = True, tensorboard: bool = True,
                 init_kwargs: dict[str, Any] | None = None, max_retries: int = 2) -> list[RunResult]:
    """Run ``specs`` as Ray tasks; results in the order of ``specs``. ``max_retries``: reruns of a task whose
    worker died."""
    from rich.markup import escape

    ray = require_ray()
    root = Path(root).resolve()
    results: dict[int, RunResult] = {}
    todo = []
    for i, spec in enumerate(specs):
        run_dir = root / spec.relpath()
        done = finished_run(spec, run_dir) if (run_dir / "DONE").exists() else None
        if done is not None:
            results[i] = done
        else:
            todo.append(i)
    started = False
    if todo and not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["runtime_env"] = local_runtime_env()
        kwargs.update(init_kwargs or {})
        ray.init(**kwargs)
        started = True
    try:
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=int(max_retries),
                          retry_exceptions=False)(_execute_remote)
        pending = {task.remote(specs[i].to_dict(), str(root), tensorboard): i for i in todo}
        with grid_progress(progress) as bar:
            grid = bar.add_task("grid (ray)", total=len(specs), completed=len(specs) - len(todo))
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                ref = ready[0]
                i = pending.pop(ref)
                spec = specs[i]
                try:
                    out = ray.get(ref)
                    res = RunResult(spec, out["status"], Path(out["run_dir"]), wall_s=out["wall_s"],
                                    error=out["error"], final=out["final"])
                except Exception as exc:  # noqa: BLE001 - the worker died more than max_retries times
                    res = RunResult(spec, "failed", root / spec.relpath(),
                                    error=f"ray task failed after {max_retries} retries: {exc}")
                label = spec.label()
                if res.status == "failed":
                    bar.console.print(f"[red]run {label} failed[/red]: {escape(str(res.error))}")
                bar.advance(grid)
                results[i] = res
    finally:
        if started:
            ray.shutdown()
    return [results[i] for i in range(len(specs))]
