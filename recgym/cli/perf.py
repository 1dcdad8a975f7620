"""`recgym perf ...`: performance probes (env and data throughput, DiffusionDenoise env, ReFiT cost).

Each command calls the plain function in `recgym.benchmarks.perf` that the ``throughput`` suite also runs.
"""

from __future__ import annotations

import typer

from recgym.cli.common import print_rows, split_list

app = typer.Typer(help="Performance probes: env steps/s, data load times, denoise env, ReFiT cost.",
                  no_args_is_help=True)


@app.command("env", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def env(ctx: typer.Context) -> None:
    """Env steps/s: batched torch env vs SyncVectorEnv vs a Python loop. Extra arguments go to the benchmark
    (e.g. ``recgym perf env --num-envs 1,64 --steps 20``; ``recgym perf env -- --help`` lists them)."""
    from recgym.benchmarks.perf.env import env_throughput

    try:
        typer.echo(env_throughput(ctx.args), nl=False)
    except SystemExit as exc:  # argparse: --help or a bad flag (it has printed why)
        if exc.code:
            raise typer.Exit(int(exc.code) if isinstance(exc.code, int) else 2) from exc


@app.command("data-load")
def data_load(
    datasets: str = typer.Option("coat,yahoo,ml1m,ml1m_noisy,kuairand,kuairec", "--datasets"),
    data_dir: str = typer.Option(None, "--data-dir", help="data root (default: RECGYM_DATA_DIR)"),
    json_out: str = typer.Option(None, "--json-out"),
) -> None:
    """Cold (parse + ground truth, empty temporary cache) vs cached load time of each present dataset."""
    from recgym.benchmarks.perf.data_load import data_load_times

    try:
        rows = data_load_times(split_list(datasets, "--datasets"), data_dir)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    print_rows("data load times (s)", rows, json_out)


@app.command("denoise")
def denoise(
    data: str = typer.Option("ml1m", "--data", help="dataset (ml1m, ml1m_noisy, coat, yahoo, synthetic)"),
    batch_sizes: str = typer.Option("16,64,256,1024", "--batch-sizes"),
    modes: str = typer.Option("latent,residual", "--modes", help="action modes: latent, residual, guidance"),
    episodes: int = typer.Option(1, "--episodes"),
    devices: str = typer.Option("auto", "--devices", help="comma list, or auto = cpu (+ cuda when available)"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
    data_dir: str = typer.Option(None, "--data-dir"),
    json_out: str = typer.Option(None, "--json-out"),
) -> None:
    """DiffusionDenoise env steps/s and users/s per batch size and mode, and one DiffRec pre-training epoch."""
    from recgym.benchmarks.perf.denoise import denoise_env_throughput

    rows = denoise_env_throughput(data, split_list(batch_sizes, "--batch-sizes", int), split_list(modes, "--modes"),
                                  episodes, devices, threads, data_dir)
    print_rows(f"DiffusionDenoise-{data} throughput", rows, json_out)


@app.command("refit-cost")
def refit_cost(
    data: str = typer.Option("ml1m", "--data"),
    device: str = typer.Option("cpu", "--device"),
    batch: int = typer.Option(64, "--batch", help="users per ReFiT iteration (paper: 64)"),
    samples_per_user: int = typer.Option(32, "--samples-per-user"),
    iterations: int = typer.Option(3, "--iterations", help="ReFiT iterations timed"),
    threads: int = typer.Option(2, "--threads"),
    json_out: str = typer.Option(None, "--json-out"),
) -> None:
    """Seconds per ReFiT iteration vs per DiffRec pre-training epoch, and each phase's peak memory."""
    from recgym.benchmarks.perf.denoise import refit_cost as measure

    print_rows("ReFiT cost", measure(data, device, batch, samples_per_user, iterations, threads), json_out)
