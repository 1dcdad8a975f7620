"""`recgym perf ...`: performance probes (env and data throughput, DiffusionDenoise env, ReFiT cost).

Each command calls the plain function in `recgym.benchmarks.perf` that the ``throughput`` suite also runs.
"""

from __future__ import annotations

import json

import typer

from recgym.cli.common import print_rows, split_list

app = typer.Typer(help="Performance probes: env steps/s, data load times, denoise env, ReFiT cost.",
                  no_args_is_help=True)


@app.command("env")
def env(
    worlds: str = typer.Option("coat,kuairand", "--worlds", help="comma list: coat, kuairand (synthetic worlds)"),
    num_envs: str = typer.Option("1,64,1024,16384", "--num-envs", help="comma list of batch sizes"),
    repeats: int = typer.Option(3, "--repeats", help="measurements per cell; the best is reported"),
    min_time: float = typer.Option(0.25, "--min-time", help="seconds per measurement (at least)"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto (cpu, then cuda when available)"),
    json_out: str = typer.Option(None, "--json-out"),
) -> None:
    """Env steps/s: the batched rec env (with and without action checks) vs a minimal fused torch step."""
    from recgym.benchmarks.perf.env import env_throughput, format_env_throughput

    try:
        rows = env_throughput(split_list(worlds, "--worlds"), split_list(num_envs, "--num-envs", int), device,
                              threads, repeats, min_time)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(format_env_throughput(rows), nl=False)
    if json_out:
        from recgym.data.cache import atomic_write_bytes

        atomic_write_bytes(json_out, json.dumps(rows, indent=1).encode())


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
