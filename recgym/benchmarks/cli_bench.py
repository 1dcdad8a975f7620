"""`recgym bench` (run a grid of env x agent x seed) and `recgym report` (tables and plots of a suite's runs).

Added to the root app with ``app.add_typer(bench_app)`` (no name), so both are top-level commands. Heavy
modules (torch, the envs, matplotlib) are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Benchmarks: run suites and report them.")


def _parse_kv(pairs: list[str], what: str) -> dict:
    """``key=value`` pairs; values are parsed as JSON when they parse (numbers, booleans, lists), else kept."""
    out: dict = {}
    for p in pairs:
        if "=" not in p:
            raise typer.BadParameter(f"{what} expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


@app.command("bench")
def bench(
    suite: str = typer.Option(None, "--suite", "-s",
                              help="shipped suite name (quick, interactive, interactive_small, dac4rec, refit, throughput) or a TOML file"),
    env: list[str] = typer.Option(None, "--env", help="env id (repeatable), e.g. GroundTruthRec-Synthetic-v0"),
    agent: list[str] = typer.Option(None, "--agent", help="registered agent name (repeatable)"),
    seeds: int = typer.Option(3, "--seeds", help="number of seeds (0..N-1) when using flags"),
    budget: int = typer.Option(10_000, "--budget", help="training env steps per run when using flags"),
    eval_episodes: int = typer.Option(100, "--eval-episodes", help="episodes per evaluation (flags)"),
    eval_every: int = typer.Option(0, "--eval-every", help="env steps between evaluations (flags; 0 = at the end)"),
    num_envs: int = typer.Option(16, "--num-envs", help="parallel envs of the env given to the agent (flags)"),
    protocol: str = typer.Option(None, "--protocol", help="protocol protocol (flags), e.g. dorl, roler, easyrl4rec"),
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
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bars"),
) -> None:
    """Run a grid of (env, agent, seed); finished runs are skipped, crashed runs recorded in error.txt."""
    import dataclasses
    import importlib

    from rich.console import Console
    from rich.markup import escape

    from recgym.benchmarks.runner import SuiteError, load_suite, run_grid, suite_from_flags, summarize

    console = Console()
    if backend not in ("local", "ray"):
        raise typer.BadParameter(f"--backend must be local or ray, got {backend!r}")
    for mod in imports or []:
        importlib.import_module(mod)
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
    except SuiteError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if device:
        s = dataclasses.replace(s, device=device)
    if s.scripts and not s.envs:  # a scripts-only suite (e.g. throughput)
        from recgym.benchmarks.runner import run_scripts

        console.print(f"suite [bold]{s.name}[/bold]: {len(s.scripts)} scripts -> {runs_dir / s.name}")
        if dry_run:
            for sc in s.scripts:
                console.print(f"  python -m {sc.module} {' '.join(sc.args)}")
            return
        script_results = run_scripts(s, runs_dir, progress=not no_progress)
        console.print("scripts: " + ", ".join(f"{r.name} {r.status}" for r in script_results))
        if any(r.status == "failed" for r in script_results):
            raise typer.Exit(1)
        return
    specs = s.runs()
    for env_name, missing in s.missing_data().items():
        console.print(f"[yellow]skipping env entry {env_name!r}[/yellow]: data files missing under the data root: "
                      f"{escape(str(missing))} (see `recgym data download` / RECGYM_DATA_DIR)")
    if not specs:
        console.print("[red]nothing to run[/red]")
        raise typer.Exit(1)
    console.print(f"suite [bold]{s.name}[/bold]: {len(specs)} runs "
                  f"({len(s.envs)} envs x {len(s.agents)} agents x {len(s.seeds)} seeds) -> {runs_dir / s.name}")
    if dry_run:
        for sp in specs:
            console.print(f"  {sp.relpath()}")
        return
    if backend == "ray":
        from recgym.benchmarks.ray_backend import require_ray

        try:
            require_ray()
        except ImportError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from exc
    results = run_grid(specs, runs_dir, backend=backend, progress=not no_progress, ray_address=ray_address,
                       gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    counts = summarize(results)
    console.print("runs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if counts.get("failed"):
        console.print(f"[yellow]{counts['failed']} run(s) failed; see error.txt in their folders; rerun to retry[/yellow]")


@app.command("report")
def report(
    suite_dir: Path = typer.Argument(..., help="a suite's runs folder, e.g. runs/quick"),
    out: Path = typer.Option(None, "--out", help="output folder (default: <suite_dir>/_report)"),
    no_plots: bool = typer.Option(False, "--no-plots", help="tables only, no PNGs"),
) -> None:
    """Tables (mean ± std over seeds; curve average and final; published numbers) as text, Markdown, CSV, PNG."""
    from recgym.benchmarks.report import make_report

    try:
        make_report(suite_dir, out_dir=out, plots=not no_plots, show=True)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
