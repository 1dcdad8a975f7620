"""`recgym perf ...`: performance probes (env and data throughput, A2C training speed, DiffusionDenoise env,
ReFiT cost, cold gym.make with DiffRec pre-training).

Each command calls the plain function in `recgym.benchmarks.perf` that the ``throughput`` suite also runs.
"""

from __future__ import annotations

import json

import typer

from recgym.cli.common import parse_json_config, print_rows, split_list

app = typer.Typer(help="Performance probes: env steps/s, A2C speed, data load times, denoise env, ReFiT cost, "
                       "DiffRec pre-training.",
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


@app.command("a2c")
def a2c(
    data: str = typer.Option("coat", "--data", help="dataset of the GroundTruthRec env (roler protocol)"),
    agent: str = typer.Option("gt", "--agent", help="A2C agent (gt, a2c, or a world-model method)"),
    budget: int = typer.Option(150_000, "--budget", help="training env steps per run"),
    seeds: str = typer.Option("0", "--seeds", help="comma list of seeds"),
    variant: list[str] = typer.Option(None, "--variant",
                                      help="'LABEL [key=value ...]' (repeatable); default: default and faithful"),
    num_envs: int = typer.Option(100, "--num-envs"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
    device: str = typer.Option("cpu", "--device"),
    json_out: str = typer.Option(None, "--json-out"),
) -> None:
    """A2C end to end: env steps/s of learn() and the R_cumu it reaches, per config variant and seed."""
    from recgym.benchmarks.perf.a2c_speed import a2c_speed, format_a2c_speed

    try:
        rows = a2c_speed(variant or None, split_list(seeds, "--seeds", int), data, agent, budget, num_envs, threads,
                         device)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(format_a2c_speed(rows), nl=False)
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
    batch: int = typer.Option(64, "--batch", help="users per fine-tuning iteration (paper: 64)"),
    iterations: int = typer.Option(200, "--iterations", help="fine-tuning iterations (paper: 200)"),
    eval_every: int = typer.Option(20, "--eval-every", help="iterations between validations (all users)"),
    agent: str = typer.Option("refit", "--agent", help="refit or refit_lastep"),
    threads: int = typer.Option(2, "--threads"),
    json_out: str = typer.Option(None, "--json-out"),
) -> None:
    """Fine-tuning to its best validation point vs DiffRec pre-training to convergence: wall time, work, peak
    memory (each phase in a fresh process; pre-training runs from scratch)."""
    from recgym.benchmarks.perf.denoise import refit_cost as measure

    print_rows("ReFiT cost", measure(data, device, batch, iterations, eval_every, threads, agent), json_out)


@app.command("pretrain")
def pretrain(
    data: str = typer.Option("ml1m", "--data", help="dataset with a DiffusionDenoise env (ml1m, ml1m_noisy, coat, "
                                                    "yahoo, synthetic)"),
    devices: str = typer.Option("auto", "--devices", help="comma list, or auto = cpu (+ cuda when available)"),
    selection: str = typer.Option("default", "--selection",
                                  help="DiffRec model-selection rules to time, comma list: default, subset, full"),
    config: str = typer.Option(None, "--config", help="JSON overrides of the DiffRec config, e.g. "
                                                       "'{\"eval_every\": 1}' (with --selection full: the "
                                                       "rule of recgym's earlier default)"),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: torch's default, all cores)"),
    data_dir: str = typer.Option(None, "--data-dir"),
    cache_dir: str = typer.Option(None, "--cache-dir", help="an empty (or new) cache folder to pre-train into and "
                                                            "keep (default: a temporary one, removed); one run only"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars of the pre-training"),
    json_out: str = typer.Option(None, "--json-out"),
) -> None:
    """Cold gym.make("DiffusionDenoise-<DATA>-v0") on an empty cache: its seconds, DiffRec pre-training seconds
    (training / evaluation) and test R@20 / N@20, next to the original DiffRec code's reference on ML-1M."""
    from recgym.benchmarks.perf.pretrain import pretrain_cost
    from recgym.recommenders import SELECTION_RULES, DiffRecConfig, default_config

    rules = split_list(selection, "--selection")
    bad = [r for r in rules if r != "default" and r not in SELECTION_RULES]
    if bad or not rules:
        raise typer.BadParameter(f"--selection: {bad or rules}; valid: default, {', '.join(SELECTION_RULES)}")
    overrides = parse_json_config(config, '{"eval_every": 1}')
    try:  # a bad field fails here, not in the child process
        DiffRecConfig.from_dict({**default_config(data).to_dict(), **overrides})
    except (TypeError, ValueError) as err:
        raise typer.BadParameter(str(err)) from err
    selections = [None if r == "default" else r for r in rules]
    if cache_dir is not None and len(selections) * len(split_list(devices, "--devices")) > 1:
        raise typer.BadParameter("--cache-dir holds one run: give one --selection and one device with it")
    try:
        rows = pretrain_cost(data, devices, selections, threads, data_dir, progress=progress, config=overrides,
                             cache_dir=cache_dir)
    except ValueError as err:  # a non-empty --cache-dir
        raise typer.BadParameter(str(err)) from err
    print_rows(f"DiffusionDenoise-{data}: cold gym.make and DiffRec pre-training", rows, json_out)



@app.command("refit-snr")
def refit_snr(
    data: str = typer.Option("ml1m", "--data"),
    agents: str = typer.Option("refit,refit_lastep", "--agents"),
    iterations: int = typer.Option(16, "--iterations", help="gradient estimates per agent"),
    batch: int = typer.Option(64, "--batch", help="users per iteration (paper: 64)"),
    device: str = typer.Option("cpu", "--device"),
    threads: int = typer.Option(1, "--threads"),
    diffrec_config: str = typer.Option(None, "--diffrec-config", help="JSON overrides of the env's DiffRecConfig"),
    json_out: str = typer.Option(None, "--json-out"),
) -> None:
    """Signal in the chain fine-tuners' policy gradient at the pre-trained weights (cosine of the two halves'
    means, per-iteration SNR)."""
    import json

    from recgym.benchmarks.perf.denoise import refit_gradient_snr

    env_kwargs = {"config": json.loads(diffrec_config)} if diffrec_config else None
    rows = refit_gradient_snr(data, split_list(agents, "--agents"), iterations, batch, device, threads, env_kwargs)
    print_rows("ReFiT gradient signal", rows, json_out)
