"""The `recgym` command line. Each command group lives in its own module and imports heavy code lazily."""

from __future__ import annotations

import typer

from recgym.benchmarks.cli_bench import app as bench_app
from recgym.benchmarks.cli_data import app as data_app
from recgym.benchmarks.cli_pretrain import app as pretrain_app
from recgym.benchmarks.cli_worldmodel import app as worldmodel_app

app = typer.Typer(help="recgym: interactive-recommendation envs, world models, agents and benchmarks.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(data_app, name="data")
app.add_typer(pretrain_app, name="pretrain")
app.add_typer(worldmodel_app, name="worldmodel")
app.add_typer(bench_app)  # no name: `recgym bench` and `recgym report` are top-level commands


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
