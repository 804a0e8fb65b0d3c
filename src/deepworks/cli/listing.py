"""``deepworks list models|datasets|tasks|...|attacks|explainers``."""

from __future__ import annotations

import typer
from rich.table import Table

from deepworks.cli import app, out


@app.command("list")
def list_(
    kind: str = typer.Argument(
        "models",
        help="models, datasets, tasks, losses, optimizers, schedulers, callbacks, augmentations, "
        "attacks or explainers",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also list each one's options"),
) -> None:
    """List registered components with a one-line description."""
    from deepworks.errors import ConfigError, unknown_choice
    from deepworks.registry import REGISTRIES

    if kind not in REGISTRIES:
        raise ConfigError(unknown_choice("a registry", kind, REGISTRIES, "deepworks list"))
    if verbose:  # the options come from the factories themselves: the registries are loaded
        from deepworks.cli.describe import print_entries

        print_entries(kind)
        return
    from deepworks.catalog import entries  # names read from the source: no torch to import

    table = Table(title=kind, title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, description in entries(kind):
        table.add_row(name, description)
    out.print(table)
