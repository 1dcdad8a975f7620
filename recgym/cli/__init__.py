"""The `recgym` command line. Each command group lives in its own module and imports heavy code lazily.

``recgym bench`` / ``recgym report`` (`recgym.cli.bench`), ``recgym data`` (`recgym.cli.data`), ``recgym
pretrain`` (`recgym.cli.pretrain`), ``recgym worldmodel`` (`recgym.cli.worldmodel`), ``recgym perf``
(`recgym.cli.perf`). Also runnable as ``python -m recgym.cli``.
"""

from __future__ import annotations

import typer

from recgym.cli.bench import app as bench_app
from recgym.cli.data import app as data_app
from recgym.cli.perf import app as perf_app
from recgym.cli.pretrain import app as pretrain_app
from recgym.cli.worldmodel import app as worldmodel_app

app = typer.Typer(help="recgym: interactive-recommendation envs, world models, agents and benchmarks.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(data_app, name="data")
app.add_typer(pretrain_app, name="pretrain")
app.add_typer(worldmodel_app, name="worldmodel")
app.add_typer(perf_app, name="perf")
app.add_typer(bench_app)  # no name: `recgym bench` and `recgym report` are top-level commands


def main() -> None:
    """Console-script entry point."""
    app()
