"""``deepworks evaluate RUN``: re-evaluate a run's saved model on its test (or val) split."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from deepworks.cli import app, out


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory made by deepworks train"),
    split: str = typer.Option("test", help="Split to evaluate: test or val"),
    checkpoint: str = typer.Option("best", help="Checkpoint to load: best or last"),
    as_json: bool = typer.Option(False, "--json", help="Print all metrics as JSON"),
) -> None:
    """Evaluate the model of a run directory on its held-out data."""
    from deepworks.cli.train import graded_line, metrics_table
    from deepworks.errors import ConfigError
    from deepworks.run import evaluate as evaluate_run
    from deepworks.rundir import RunDir

    if split not in ("test", "val"):
        raise ConfigError(f"--split {split!r}: choose test or val")
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"--checkpoint {checkpoint!r}: choose best or last")
    metrics = evaluate_run(run, split=split, which=checkpoint)
    if as_json:
        out.print_json(json.dumps(metrics))
    else:
        task = RunDir.open(run).task
        out.print(metrics_table(metrics, f"{run}: {split} metrics", task, (f"{split}/",)))
        out.print(f"graded: {graded_line(run, checkpoint)}")
