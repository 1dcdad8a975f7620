"""`recgym worldmodel ...`: fit (or load from the cache) world models and report their quality.

Heavy modules (torch, loaders) are imported inside the commands so `recgym --help` stays fast.
"""

from __future__ import annotations

import typer

from recgym.cli.common import parse_json_config

app = typer.Typer(help="World models: fit / load from cache, report quality on the unbiased test data.",
                  no_args_is_help=True)


@app.command("fit")
def fit(
    data: str = typer.Option(..., "--data", help="dataset name (coat, yahoo, kuairand, kuairec, ml1m, synthetic)"),
    kind: str = typer.Option("diffusion", "--kind", help="deepfm | diffusion | mf | knn"),
    config: str = typer.Option(None, "--config", help="JSON config overrides, e.g. '{\"epochs\": 3}'"),
    device: str = typer.Option("cpu", "--device"),
    seed: int = typer.Option(0, "--seed"),
    refit: bool = typer.Option(False, "--refit", help="ignore the cache and fit again"),
    data_dir: str = typer.Option(None, "--data-dir"),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="progress bars (a line every few seconds when output is not a terminal)"),
) -> None:
    """Fit (or load from the cache) one world model and print its quality on the test data."""
    from recgym.data import load_dataset
    from recgym.worldmodels import cache_path, default_config, fit_or_load
    from recgym.worldmodels.report import format_table, quality

    ds = load_dataset(data, data_dir=data_dir)
    cfg = parse_json_config(config, '{"epochs": 3}')
    if not cfg:
        cfg = default_config(kind, ds.name)
    model = fit_or_load(kind, ds, cfg, device=device, seed=seed, refit=refit, progress=progress)
    row = quality(model, ds)
    row.update(data=ds.name, kind=kind, fit_s=model.fit_seconds)
    typer.echo(format_table([row]))
    typer.echo(f"cached at {cache_path(kind, ds, cfg, seed)}")


@app.command("report")
def report(
    data: str = typer.Option(..., "--data", help="dataset name"),
    kinds: str = typer.Option("mf,knn,diffusion,deepfm", "--kinds", help="comma-separated world-model kinds"),
    device: str = typer.Option("cpu", "--device"),
    seed: int = typer.Option(0, "--seed"),
    data_dir: str = typer.Option(None, "--data-dir"),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="progress bars (a line every few seconds when output is not a terminal)"),
) -> None:
    """Quality table (RMSE, MAE, AUC, uncertainty/error correlation, fit time) of several world models."""
    from recgym.data import load_dataset
    from recgym.worldmodels import default_config, fit_or_load
    from recgym.worldmodels.report import format_table, quality

    ds = load_dataset(data, data_dir=data_dir)
    rows = []
    for kind in [k.strip() for k in kinds.split(",") if k.strip()]:
        model = fit_or_load(kind, ds, default_config(kind, ds.name), device=device, seed=seed, progress=progress)
        row = quality(model, ds)
        row.update(data=ds.name, kind=kind, fit_s=model.fit_seconds)
        rows.append(row)
    typer.echo(format_table(rows))


@app.command("quality")
def quality_table(
    data: str = typer.Option("coat,yahoo,synthetic", "--data", help="comma-separated dataset names"),
    kinds: str = typer.Option("mf,knn,diffusion,deepfm", "--kinds", help="comma-separated world-model kinds"),
    device: str = typer.Option("cpu", "--device"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
    cache: bool = typer.Option(False, "--cache", help="use fit_or_load (cached) instead of fresh, timed fits"),
    greedy: bool = typer.Option(False, "--greedy", help="add the greedy top-30 ground-truth returns"),
    sets: list[str] = typer.Option(None, "--set", help="KIND.FIELD=VALUE config override (repeatable)"),
    json_out: str = typer.Option(None, "--json-out"),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="progress bars (a line every few seconds when output is not a terminal)"),
) -> None:
    """Fit every kind on every dataset and score it on the unbiased test data (`worldmodels` suite's probe)."""
    import torch

    from recgym.benchmarks.quality import parse_sets, worldmodel_quality
    from recgym.cli.common import print_rows, split_list

    try:
        overrides = parse_sets(sets or [])
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    torch.set_num_threads(threads)
    rows = worldmodel_quality(split_list(data, "--data"), split_list(kinds, "--kinds"), device=device, seed=seed,
                              cache=cache, greedy=greedy, overrides=overrides, progress=progress, log=typer.echo)
    print_rows("world-model quality", rows, json_out)
