"""The local backend: the grid's runs one after the other in this process, with rich progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recgym.benchmarks.grid import RunSpec
from recgym.benchmarks.run import RunResult, execute_run


def grid_progress(enabled: bool) -> Any:
    """A rich Progress for the grid (disabled: a no-op progress)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=False)


def run_grid_local(specs: list[RunSpec], root: Path, *, progress: bool = True,
                   tensorboard: bool = True) -> list[RunResult]:
    """Run ``specs`` in order under ``root``; one result per spec."""
    from rich.markup import escape

    results: list[RunResult] = []
    with grid_progress(progress) as bar:
        grid = bar.add_task("grid", total=len(specs))
        for spec in specs:
            label = spec.label()
            task = bar.add_task(f"  {label}", total=spec.train_budget)

            def cb(done: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=done, total=total)

            res = execute_run(spec, root, on_progress=cb, tensorboard=tensorboard)
            bar.update(task, completed=spec.train_budget, description=f"  {label} [{res.status}]")
            bar.remove_task(task)
            if res.status == "failed":
                bar.console.print(f"[red]run {label} failed[/red]: {escape(str(res.error))} "
                                  f"(see {res.run_dir / 'error.txt'})")
            elif res.status in ("locked", "conflict"):
                bar.console.print(f"[yellow]run {label} skipped[/yellow]: {escape(str(res.error))}")
            bar.advance(grid)
            results.append(res)
    return results
