"""`recgym bench` (run a suite: a grid of env x agent x seed, and its probes) and `recgym report` (its tables).

Added to the root app with ``app.add_typer(bench_app)`` (no name), so both are top-level commands. Heavy
modules (torch, the envs, matplotlib) are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Benchmarks: run suites and report them.")


def _parse_kv(pairs: list[str], what: str) -> dict[str, Any]:
    """``key=value`` pairs; values are parsed as JSON when they parse (numbers, booleans, lists), else kept."""
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise typer.BadParameter(f"{what} expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


# Statuses of a run or probe that make `recgym bench` exit non-zero, with what to do about each.
BAD_STATUSES = ("failed", "locked", "conflict")
_HINTS = {"failed": "see error.txt in its folder; rerun to retry",
          "locked": "another process is running it, or --force-unlock",
          "conflict": "a finished run of another config holds its folder"}


def specs_need_device_here(suite: Any, backend: str, dry_run: bool) -> bool:
    """Whether this machine must have the suite's device: runs execute here (local backend, not a dry run)."""
    return backend == "local" and not dry_run and bool(suite.envs)


def print_listing(console: Any) -> None:
    """Shipped suites, registered agents with their budget units, and the probes."""
    from rich.table import Table

    from recgym.agents.base import agent_spec, registered_agents
    from recgym.benchmarks.probes import PROBES
    from recgym.benchmarks.suite import load_suite, shipped_suites

    suites = Table(title="shipped suites (recgym bench --suite NAME)")
    for h in ("suite", "runs", "probes", "description"):
        suites.add_column(h)
    for name in shipped_suites():
        s = load_suite(name, validate=False)
        n = s.n_runs()
        suites.add_row(name, str(n), ", ".join(p.name for p in s.probes) or "-", s.description or "-")
    console.print(suites)
    agents = Table(title="agents (train_budget counts the agent's budget unit)")
    agents.add_column("agent")
    agents.add_column("budget unit")
    agents.add_column("training env")
    for name in registered_agents():
        spec = agent_spec(name)
        train = "-" if spec.train_env is None else f"{spec.train_env.family} {spec.train_env.kwargs or ''}".strip()
        agents.add_row(name, spec.budget_unit, train)
    console.print(agents)
    console.print("probes ([[probes]] probe = NAME): " + ", ".join(sorted(PROBES)))


@app.command("bench")
def bench(
    suite: str = typer.Option(None, "--suite", "-s",
                              help="shipped suite name (see --list) or a TOML file (format: recgym/benchmarks/suites/README.md)"),
    env: list[str] = typer.Option(None, "--env", help="env id (repeatable), e.g. GroundTruthRec-Synthetic-v0"),
    agent: list[str] = typer.Option(None, "--agent", help="registered agent name (repeatable; see --list)"),
    seeds: int = typer.Option(3, "--seeds", help="number of seeds (0..N-1) when using flags"),
    budget: int = typer.Option(10_000, "--budget",
                               help="training budget per run (flags), in each agent's budget unit: env_steps, "
                                    "gradient_steps or iterations (--list shows each agent's)"),
    eval_episodes: int = typer.Option(100, "--eval-episodes", help="episodes per evaluation (flags)"),
    eval_every: int = typer.Option(0, "--eval-every", help="budget units between evaluations (flags; 0 = at the end)"),
    num_envs: int = typer.Option(16, "--num-envs", help="parallel envs of the evaluation / training env (flags)"),
    protocol: str = typer.Option(None, "--protocol", help="env protocol (flags), e.g. dorl, roler, easyrl4rec"),
    env_kw: list[str] = typer.Option(None, "--env-kw", help="env kwarg key=value (flags, repeatable)"),
    agent_kw: list[str] = typer.Option(None, "--agent-kw", help="agent config key=value (flags, repeatable)"),
    name: str = typer.Option("adhoc", "--name", help="suite name (folder under runs/) when using flags"),
    device: str = typer.Option(None, "--device", help="cpu or cuda (overrides the suite)"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="root of the runs/ layout"),
    backend: str = typer.Option("local", "--backend", help="local or ray"),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address (default: a local Ray)"),
    gpus_per_run: float = typer.Option(0.0, "--gpus-per-run", help="GPU fraction per Ray task"),
    cpus_per_run: float = typer.Option(1.0, "--cpus-per-run", help="CPUs per Ray task"),
    imports: list[str] = typer.Option(None, "--import", help="module registering extra agents/envs (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and list the runs, run nothing"),
    list_: bool = typer.Option(False, "--list", help="list shipped suites, agents with their budget units, probes"),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="progress bars (a line every few seconds when output is not a terminal)"),
    force_unlock: bool = typer.Option(False, "--force-unlock",
                                      help="remove the locks of this suite's run folders first (only when no process "
                                           "uses them any more, e.g. a lock kept by a shared file system)"),
) -> None:
    """Run a suite (a grid of env x agent x seed, and probes); finished runs are skipped, failures recorded.

    Budgets count each agent's own unit: env steps, gradient steps or iterations (see --list). Every run's env
    kwargs, agent config and device are checked before the first run starts. Exit status: 0 when every run and
    probe is done (or was already), 1 when any failed or was skipped because it was locked or conflicts with a
    finished run of another config (the last line says which), 2 for an invalid suite or option.
    """
    import dataclasses
    import importlib

    from rich.console import Console
    from rich.markup import escape

    from recgym.benchmarks.backends import BACKENDS, run_grid
    from recgym.benchmarks.grid import expand
    from recgym.benchmarks.run import budget_unit, run_probes, summarize
    from recgym.benchmarks.run import force_unlock as unlock
    from recgym.benchmarks.suite import (
        SuiteError,
        device_problem,
        device_unavailable,
        load_suite,
        save_suite_record,
        suite_from_flags,
    )

    console = Console()
    if backend not in BACKENDS:
        raise typer.BadParameter(f"--backend must be one of {list(BACKENDS)}, got {backend!r}")
    if runs_dir.exists() and not runs_dir.is_dir():
        console.print(f"[red]error:[/red] --runs-dir {escape(str(runs_dir))} is a file; expected a folder (it is "
                      "created if missing)")
        raise typer.Exit(2)
    for mod in imports or []:
        importlib.import_module(mod)
    if list_:
        print_listing(console)
        return
    try:
        if suite:
            if env or agent:
                raise SuiteError("give either --suite or --env/--agent flags, not both")
            s = load_suite(suite)
            if imports:
                s = dataclasses.replace(s, imports=tuple(s.imports) + tuple(imports))
        else:
            s = suite_from_flags(env or [], agent or [], seeds, budget, name=name, eval_episodes=eval_episodes,
                                 eval_every=eval_every, num_envs=num_envs, device=device or "cpu", protocol=protocol,
                                 env_kwargs=_parse_kv(env_kw or [], "--env-kw"),
                                 agent_config=_parse_kv(agent_kw or [], "--agent-kw"), imports=tuple(imports or ()))
        if device:
            if device_problem(device):
                raise SuiteError(f"--device: {device_problem(device)}")
            s = dataclasses.replace(s, device=device)
        if specs_need_device_here(s, backend, dry_run) and device_unavailable(s.device):
            raise SuiteError(f"{s.path or '<flags>'}: {device_unavailable(s.device)}")
    except SuiteError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    specs = expand(s)
    for entry, missing in s.missing_data().items():
        console.print(f"[yellow]skipping entry {entry!r}[/yellow]: data files missing under the data root: "
                      f"{escape(str(missing))} (see `recgym data download` / RECGYM_DATA_DIR)")
    if not specs and not s.probes:
        console.print("[red]nothing to run[/red]")
        raise typer.Exit(1)
    per_agent = any(a.seeds is not None for a in s.agents)
    seeds = "per-agent seeds" if per_agent else f"{len(s.seeds)} seeds"
    console.print(f"suite [bold]{s.name}[/bold]: {len(specs)} runs ({len(s.envs)} envs x {len(s.agents)} agents x "
                  f"{seeds}), {len(s.probes)} probes -> {runs_dir / s.name}")
    if dry_run:
        for sp in specs:
            console.print(f"  {sp.relpath()}  (budget {sp.train_budget} {budget_unit(sp.agent)})")
        for p in s.probes:
            console.print(f"  {Path(s.name) / p.name}  (probe {p.probe} {json.dumps(p.args)})")
        return
    if backend == "ray" and specs:
        from recgym.benchmarks.backends.ray import require_ray

        try:
            require_ray()
        except ImportError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from exc
    save_suite_record(s, runs_dir)
    if force_unlock:
        removed = unlock([runs_dir / sp.relpath() for sp in specs] + [runs_dir / s.name / p.name for p in s.probes])
        for path in removed:
            console.print(f"[yellow]removed the lock {escape(str(path))}[/yellow] (--force-unlock; its holder, if "
                          "still running, is not stopped)")
        if not removed:
            console.print("--force-unlock: no run folder of this suite was locked")
    bad: dict[str, int] = {}
    if specs:
        results = run_grid(specs, runs_dir, backend=backend, progress=progress, ray_address=ray_address,
                           gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
        counts = summarize(results)
        for status in BAD_STATUSES:
            bad[status] = bad.get(status, 0) + counts.get(status, 0)
        console.print("runs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if s.probes:
        probe_results = run_probes(s, runs_dir, progress=progress)
        for r in probe_results:
            if r.status in BAD_STATUSES:
                bad[r.status] = bad.get(r.status, 0) + 1
            if r.error:
                console.print(f"[yellow]probe {r.name} {r.status}[/yellow]: {escape(str(r.error))}")
        console.print("probes: " + ", ".join(f"{r.name} {r.status}" for r in probe_results))
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        what = ", ".join(f"{v} {k} ({_HINTS[k]})" for k, v in bad.items())
        console.print(f"[red]not complete: {escape(what)}; exit status 1[/red]", soft_wrap=True)
        raise typer.Exit(1)
    console.print("all runs and probes done")


@app.command("report")
def report(
    suite_dir: Path = typer.Argument(..., help="a suite's runs folder, e.g. runs/quick"),
    out: Path = typer.Option(None, "--out", help="output folder (default: <suite_dir>/_report)"),
    no_plots: bool = typer.Option(False, "--no-plots", help="tables only, no PNGs"),
    wide: bool = typer.Option(False, "--wide", help="print every metric and aggregation (default: a summary "
                                                    "that fits 100 columns; report.md always has both)"),
) -> None:
    """Tables and plots of a suite's runs and probes (text, Markdown, CSV, PNG), in the suite's layout.

    Mean ± std over seeds: R_cumu final, % of the optimum, Length, CV, R_cumu under the published aggregation of
    the protocol's source (DORL / ROLeR: all evaluations; EasyRL4Rec: the last 25%) and the published number
    where the suite names one. Rows measured on a fallback ground truth are marked *.
    """
    from recgym.benchmarks.report import make_report

    try:
        make_report(suite_dir, out_dir=out, plots=not no_plots, show=True, wide=wide)
    except (FileNotFoundError, NotADirectoryError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
