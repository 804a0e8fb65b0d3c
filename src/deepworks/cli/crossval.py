"""``deepworks crossval CONFIG --folds 5``: k-fold cross-validation, mean ± std per metric."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from deepworks.cli import app, out


@app.command()
def crossval(
    config: Path = typer.Argument(..., help="YAML run config"),
    folds: int = typer.Option(5, "--folds", "-k", help="Number of folds (>= 2)"),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.epochs=5"),
    output: Path = typer.Option(None, "--output", "-o", help="Also write the results as JSON"),
) -> None:
    """Train on k folds and report the mean and standard deviation of each test metric."""
    from deepworks.config import load_config
    from deepworks.evaluate.specs import find
    from deepworks.recipes.crossval import crossval as run_crossval
    from deepworks.train.specs import run_metrics
    from deepworks.utils import atomic_write_text

    result = run_crossval(config, folds=folds, overrides=set_)
    table = Table(title=f"{config}: {folds}-fold cross-validation", title_justify="left")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    specs = run_metrics(load_config(config, set_).task.name)
    for key, mean in result["mean"].items():
        spec = find(key, specs)
        if key.startswith("test/") and spec is not None and spec.headline:
            table.add_row(key, f"{spec.format(mean)} ± {spec.format(result['std'][key])}")
    out.print(table)
    if output is not None:
        atomic_write_text(output, json.dumps(result, indent=1))
