"""`recgym pretrain diffrec --data ml1m`: pre-train (or load) DiffRec and print it next to EASE and MostPop.

The table splits DiffRec's pre-training seconds into training (``train s``) and evaluation for model selection
(``eval s``); ``--config '{"selection": "full"}'`` selects with DiffRec's published rule (`DiffRecConfig`).

All three are scored with the DiffRec protocol (Recall / NDCG @10 / @20 on valid and test), by
`recgym.benchmarks.quality.diffrec_table` (also the ``diffrec_table`` probe of the ``refit`` suite). Heavy
modules are imported inside the command.
"""

from __future__ import annotations

import json

import typer

from recgym.cli.common import parse_json_config
from recgym.data.cache import atomic_write_bytes

app = typer.Typer(help="Pre-train diffusion recommenders (cached) and compare them with baselines.",
                  no_args_is_help=True)

_COLS = [("valid", "Recall@10"), ("valid", "Recall@20"), ("valid", "NDCG@10"), ("valid", "NDCG@20"),
         ("test", "Recall@10"), ("test", "Recall@20"), ("test", "NDCG@10"), ("test", "NDCG@20")]


@app.command("diffrec")
def diffrec(
    data: str = typer.Option("ml1m", "--data", help="dataset: ml1m, ml1m_noisy, coat, yahoo, synthetic"),
    config: str = typer.Option(None, "--config", help="JSON overrides of DiffRecConfig, e.g. '{\"seed\": 2}'"),
    device: str = typer.Option("cpu", "--device"),
    force: bool = typer.Option(False, "--force", help="retrain even if a cached checkpoint exists"),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="also fit EASE and MostPop"),
    data_dir: str = typer.Option(None, "--data-dir"),
    json_out: str = typer.Option(None, "--json-out", help="also write the table as JSON here"),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: torch's default, all cores)"),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="progress bar (a line every few seconds when output is not a terminal)"),
) -> None:
    """Pre-train DiffRec on DATA (cached under the recgym cache) and print ours vs EASE vs MostPop."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from recgym.benchmarks.quality import diffrec_table

    if threads > 0:
        torch.set_num_threads(threads)
    console = Console(width=max(Console().width, 120))
    try:
        rows = diffrec_table(data, device, parse_json_config(config, '{"selection": "full"}'), force=force,
                             baselines=baselines, data_dir=data_dir, progress=progress)
    except (TypeError, ValueError) as err:
        raise typer.BadParameter(str(err)) from err
    table = Table(title=f"{data}: DiffRec protocol, v = valid (train masked), t = test (train + valid masked)")
    table.add_column("model")
    for split, name in _COLS:
        table.add_column(f"{split[0]} {name.replace('Recall', 'R').replace('NDCG', 'N')}", justify="right")
    table.add_column("train s", justify="right")
    table.add_column("eval s", justify="right")
    for r in rows:
        secs = [r.get("train_s"), r.get("eval_s")]
        txt = ["-" if s is None else f"{s:.1f}" for s in secs]
        table.add_row(r["model"], *[f"{r[f'{s} {n}']:.4f}" for s, n in _COLS], txt[0],
                      txt[1] + (" (cached)" if r["cached"] else ""))
    console.print(table)
    extra = {k: rows[0].get(k) for k in ("best_epoch", "epochs_run", "seconds_per_epoch", "wall_s", "checkpoint")}
    console.print(f"DiffRec: {extra}; EASE lambda = {next((r['lambda'] for r in rows if 'lambda' in r), None)}")
    if json_out:
        atomic_write_bytes(json_out, json.dumps({"dataset": data, "rows": rows}, indent=1, default=str).encode())
