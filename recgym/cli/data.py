"""`recgym data ...`: list, describe, download and verify datasets.

Heavy modules (loaders, pandas, the downloader) are imported inside the commands so `recgym --help` is fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from recgym.data.registry import dataset_info, dataset_names, find_dataset, registered_datasets

app = typer.Typer(help="Datasets: list, info, download, verify.", no_args_is_help=True)

# Names, sources, licences and key files come from the dataset registry (`recgym.data.registry`).
DATASET_NAMES: tuple[str, ...] = dataset_names()

_console = Console()


def _check_name(name: str) -> str:
    info = find_dataset(name)
    if info is None:
        raise typer.BadParameter(f"unknown dataset {name!r}; valid names: {', '.join(dataset_names())}",
                                 param_hint="NAME")
    return info.name


def dataset_status(name: str, data_dir: str | Path | None = None) -> str:
    """``built-in`` (synthetic), ``present``, ``partial`` (some key files missing) or ``missing``."""
    from recgym.data.paths import data_root

    alternatives = dataset_info(name).presence_files
    if not alternatives:
        return "built-in"
    root = data_root(data_dir)
    best = 0.0
    for files in alternatives:
        found = sum((root / f).is_file() for f in files)
        if found == len(files):
            return "present"
        best = max(best, found / len(files))
    return "partial" if best > 0 else "missing"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command("list")
def list_cmd(
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data root (default: $RECGYM_DATA_DIR)"),
) -> None:
    """List the datasets, whether they are present under the data folder, and where they come from."""
    from recgym.data.paths import data_root

    table = Table(title=f"recgym datasets (data root: {data_root(data_dir)})")
    for col in ("name", "status", "source", "licence"):
        table.add_column(col)
    for info in registered_datasets():
        table.add_row(info.name, dataset_status(info.name, data_dir), info.origin, info.licence)
    _console.print(table)


@app.command("info")
def info_cmd(
    name: str = typer.Argument(..., help=f"one of: {', '.join(DATASET_NAMES)}"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data root (default: $RECGYM_DATA_DIR)"),
    max_turn: int = typer.Option(30, "--max-turn", min=1, help="episode length for the reference returns"),
    seed: int = typer.Option(0, "--seed", help="synthetic only: generator seed"),
    n_users: int = typer.Option(500, "--n-users", min=1, help="synthetic only"),
    n_items: int = typer.Option(400, "--n-items", min=1, help="synthetic only"),
) -> None:
    """Summary of a dataset; for ground-truth sets with the distance quit rule, optimal and random returns."""
    key = _check_name(name)
    import numpy as np

    from recgym.data import load_dataset
    from recgym.data.paths import DataNotFoundError
    from recgym.data.synthetic import optimal_return, random_return

    kwargs: dict[str, Any] = {}
    if key == "synthetic":
        kwargs = {"seed": seed, "n_users": n_users, "n_items": n_items}
    try:
        ds = load_dataset(key, data_dir=data_dir, **kwargs)
    except DataNotFoundError as exc:
        _fail(str(exc))
        return
    except (ValueError, TypeError) as exc:
        _fail(f"{key}: {exc}")
        return

    table = Table(title=f"dataset {ds.name}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for field, value in ds.summary().items():
        table.add_row(field, _fmt(value))
    table.add_row("positive_threshold", _fmt(float(ds.positive_threshold)))
    if len(ds.train):
        table.add_row("train_reward_mean", _fmt(float(ds.train["reward"].mean())))
    if len(ds.test):
        table.add_row("test_reward_mean", _fmt(float(ds.test["reward"].mean())))
    gt = ds.ground_truth
    if gt is not None:
        table.add_row("ground_truth_mean", _fmt(float(np.mean(gt, dtype=np.float64))))
        table.add_row("ground_truth_positive_share", _fmt(float((gt >= ds.positive_threshold).mean())))
    provenance = ds.meta.get("ground_truth")
    if isinstance(provenance, dict):
        table.add_row("ground_truth", str(provenance.get("source", "")))
        comparable = provenance.get("comparable_to_published")
        table.add_row("ground_truth_comparable_to_published", "yes" if comparable else "NO")
        if provenance.get("note"):
            table.add_row("ground_truth_note", str(provenance["note"]))
        for k in ("heldout_rmse", "heldout_mae", "distance_rows", "missing_cells", "duplicate_pairs"):
            if k in provenance:
                table.add_row(f"ground_truth_{k}", _fmt(provenance[k]))
    pct = ds.meta.get("gt_column_distance_percentiles")
    if isinstance(pct, dict) and "p50" in pct:
        table.add_row("item_distance_median", _fmt(float(pct["p50"])))
    if "ground_truth_method" in ds.meta:
        table.add_row("ground_truth_method", str(ds.meta["ground_truth_method"]))
    _console.print(table)

    if gt is None or ds.quit_rule != "distance":
        return
    ret = Table(title=f"expected return per episode, max_turn={max_turn}, distance quit rule with M=0 (nobody quits)")
    for col in ("policy", "NX (no repeat)", "FB (repeats)"):
        ret.add_column(col, justify="right" if col != "policy" else "left")
    for label, fn in (("optimal", optimal_return), ("random", random_return)):
        nx = fn(gt, max_turn, no_repeat=True).mean
        fb = fn(gt, max_turn, no_repeat=False).mean
        ret.add_row(label, f"{nx:.3f}", f"{fb:.3f}")
    _console.print(ret)


@app.command("download")
def download_cmd(
    name: str = typer.Argument(..., help="coat, ml1m, kuairand or kuairec (yahoo: see --accept-licence)"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data root (default: $RECGYM_DATA_DIR)"),
    force: bool = typer.Option(False, "--force", help="download again even if the folder is complete"),
    accept_licence: bool = typer.Option(
        False, "--accept-licence",
        help="yahoo only: you hold the Yahoo! Webscope R3 licence and its files are in place; fetch RL4Rec's "
        "pseudo ground truth (yahoo_pseudoGT_ratingM.ascii) that the published Yahoo numbers use",
    ),
) -> None:
    """Download a dataset from its official host, verify it, and unpack it atomically."""
    key = _check_name(name)
    if key == "synthetic":
        typer.echo("synthetic is generated on the fly: nothing to download.")
        return
    from recgym.data.download import DownloadError, download

    try:
        path = download(dataset_info(key).variant_of or key, data_dir=data_dir, force=force,
                        accept_licence=accept_licence)
    except DownloadError as exc:  # includes LicenceRequiredError (yahoo)
        _fail(str(exc))
        return
    except ValueError as exc:
        _fail(str(exc))
        return
    if key == "yahoo":
        typer.echo(f"yahoo: RL4Rec's pseudo ground truth is in {path}; GroundTruthRec-Yahoo-v0 now uses it")
        return
    typer.echo(f"{key}: ready in {path}")
    if key in ("ml1m", "ml1m_noisy"):
        typer.echo("note: the DiffRec split files (ml-1m/diffrec/...) come from the DiffRec repository, not GroupLens.")


# `recgym.data.cache.verify` statuses: OK, MISMATCH, MISSING, UNCHECKED (present, no reference checksum).
_PASSING = ("OK", "UNCHECKED")
_STATUS_STYLE = {"OK": "green", "UNCHECKED": "yellow"}


@app.command("verify")
def verify_cmd(
    name: str = typer.Argument(..., help=f"one of: {', '.join(DATASET_NAMES)}"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data root (default: $RECGYM_DATA_DIR)"),
) -> None:
    """Check a dataset's files against the checksums: one line per file, OK / MISMATCH / MISSING."""
    key = _check_name(name)
    if key == "synthetic":
        typer.echo("synthetic is generated on the fly: nothing to verify.")
        return
    from recgym.data.cache import verify
    from recgym.data.paths import data_root

    try:
        report = verify(key, data_dir)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    rows = [(str(path), str(status)) for path, status in report.items()]
    table = Table(title=f"verify {key} (data root: {data_root(data_dir)})")
    table.add_column("file")
    table.add_column("status")
    for path, status in rows:
        style = _STATUS_STYLE.get(status.upper(), "red")
        table.add_row(path, f"[{style}]{status}[/{style}]")
    _console.print(table)
    if not rows:
        _fail(f"{key}: no files to check")
    bad = [r for r in rows if r[1].upper() not in _PASSING]
    if bad:
        _fail(f"{key}: {len(bad)} of {len(rows)} files failed verification (MISMATCH or MISSING)")
    unchecked = sum(r[1].upper() == "UNCHECKED" for r in rows)
    note = f" ({unchecked} present without a reference checksum)" if unchecked else ""
    typer.echo(f"{key}: {len(rows) - unchecked} files OK{note}")
