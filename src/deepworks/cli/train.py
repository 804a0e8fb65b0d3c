"""``deepworks train CONFIG [--set k=v ...] [--out DIR]``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from deepworks.cli import app, err, out


def metrics_table(
    metrics: dict[str, float],
    title: str,
    task: str | None = None,
    prefixes=("test/", "val/"),
    extra_specs: tuple = (),
) -> Table:
    """The headline metrics of a run of ``task`` as a rich table: its declared headline specs
    (see :mod:`deepworks.evaluate.specs`; ``extra_specs``: a recipe's own) in their order, with
    their formats and labels."""
    from deepworks.evaluate.specs import find, merge, split_name
    from deepworks.train.specs import run_metrics

    specs = merge(extra_specs, run_metrics(task))
    order = {spec.name: i for i, spec in enumerate(specs)}
    rows = []
    for key, value in metrics.items():
        prefix, leaf = split_name(key)
        spec = find(key, specs)
        if f"{prefix}/" in prefixes and spec is not None and spec.headline:
            rank = (prefixes.index(f"{prefix}/"), order[spec.name], key)
            rows.append((rank, key, spec.format(value), spec.label_for(leaf)))
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("label")
    for _, key, value, label in sorted(rows):
        table.add_row(key, value, label)
    return table


def graded_line(run_dir: Path, which: str = "best") -> str:
    """Which checkpoint a run's metrics come from, e.g. ``best = step-00000120 (step 120, end
    of epoch 5)``; every command that grades or loads a run prints it."""
    from deepworks.errors import CheckpointError
    from deepworks.run import graded_info
    from deepworks.train.checkpoint import describe_checkpoint

    try:
        info = graded_info(run_dir, which)
    except CheckpointError:
        return "final weights (the run saved no checkpoint)"
    return describe_checkpoint(info, info["link"])


_PREFIXES = ("test/", "val/", "train/")


@app.command()
def train(
    config: Path = typer.Argument(None, help="YAML run config, e.g. examples/digits_mlp.yaml"),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.epochs=5"),
    out_dir: Path = typer.Option(
        None,
        "--out",
        help="Parent folder of the run (default: the config's out key, ./runs if it has none)",
    ),
    resume: Path = typer.Option(
        None,
        "--resume",
        help="Continue a run from its newest valid checkpoint (exactly where it stopped)",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar"),
    profile: bool = typer.Option(
        False,
        "--profile",
        help="Profile 10 training steps: <run>/profile/trace.json, top ops, time outside the model",
    ),
) -> None:
    """Train a model from a config; writes a run directory with metrics and a report.

    Interrupted by SIGINT/SIGTERM, training finishes its step, writes a checkpoint and exits with
    code 3; `deepworks train --resume RUN` continues it.
    """
    from deepworks.recipes import train as train_run
    from deepworks.rundir import RunDir

    def warn(line: str) -> None:
        err.print(f"warning: {line}", markup=False)

    def info(line: str) -> None:  # an expected step worth telling, not a warning
        err.print(line, markup=False)

    callbacks = []
    if profile:
        from deepworks.train.callbacks import Profiler

        callbacks.append(Profiler(printer=lambda line: err.print(line, markup=False)))
    run = train_run(
        config,
        overrides=set_,
        out=out_dir,
        progress=False if quiet else None,
        resume=resume,
        warn=warn,
        info=info,
        callbacks=callbacks,
    )
    if run.stop_reason:
        err.print(f"stopped: {run.stop_reason}", markup=False)
    task = getattr(getattr(run.config, "task", None), "name", None)
    if task is not None:  # a supervised run: its held-out metrics, graded on one checkpoint
        out.print(metrics_table(run.metrics, f"{run.config.name}: test metrics", task))
        out.print(f"graded: {graded_line(run.dir)}")
    else:  # another recipe: the headline metrics it declares
        from deepworks.registry import RECIPES

        specs = RECIPES.get(run.config.recipe).metrics
        title = f"{run.config.name}: test metrics"
        table = metrics_table(run.metrics, title, None, _PREFIXES, specs)
        out.print(table)
    out.print(f"run:    {run.dir}")
    report = RunDir(run.dir).report_path
    if report.exists():
        out.print(f"report: {report}")
