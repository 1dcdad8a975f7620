"""The `recgym` command line. Each command group lives in its own module and imports heavy code lazily."""

from __future__ import annotations

import typer

from recgym.benchmarks.cli_data import app as data_app

app = typer.Typer(help="recgym: interactive-recommendation envs, world models, agents and benchmarks.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(data_app, name="data")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
