"""``deepworks audit RUN``: one HTML report card of a trained model (``RUN/audit/audit.html``).

Examples::

    deepworks audit runs/digits_cnn
    deepworks audit runs/digits_cnn --n 200 --eps 0.05,0.1,0.2 --method pgd --inputs 4
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from deepworks.cli import app, err, out


@app.command()
def audit(
    run: Path = typer.Argument(..., help="Run directory of a classification or regression run"),
    n: int = typer.Option(500, "--n", help="Test samples attacked for the robustness curve"),
    eps: str = typer.Option(
        None,
        "--eps",
        help="Attack budgets: raw units for images, fractions of each feature's range for "
        "tabular data (default 0.05,0.1,0.2 of the range)",
    ),
    method: str = typer.Option("pgd", "--method", "-m", help="Main attack; FGSM is drawn beside"),
    inputs: int = typer.Option(4, "--inputs", help="Test inputs explained"),
    checkpoint: str = typer.Option("best", help="Checkpoint to load: best or last"),
    seed: int = typer.Option(0, help="Seed of the attacks and the sanity check"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar"),
) -> None:
    """Grade a trained model: metrics, speed, calibration, robustness, explanations, errors.

    Writes RUN/audit/audit.html (self-contained) and RUN/audit/audit.json.
    """
    from deepworks.audit import PARTS, audit_run

    with _Progress(quiet, len(PARTS)) as progress:
        result = audit_run(
            run, n, eps, method, inputs, checkpoint, seed, on_progress=progress.update
        )
    out.print(summary_table(result))
    out.print(f"card:   {result['html']}", markup=False)


def summary_table(result: dict) -> Table:
    """The grades of an audit as a table: figure, value, verdict."""
    table = Table(title=f"audit of {result['run']}", title_justify="left")
    for name, justify in (("figure", "left"), ("value", "right"), ("verdict", "left")):
        table.add_column(name, justify=justify)
    model = result["model"]
    for g in result["grades"]:
        table.add_row(g["name"], g["text"], g["verdict"])
    table.add_row("latency", f"{model['latency_ms']:.2f} ms", "batch 1, CPU")
    table.add_row("throughput", f"{model['throughput_per_s']:,.0f}/s", f"batch {model['batch']}")
    for note in result.get("notes", {}).values():
        table.add_row("note", "", note)
    return table


class _Progress:
    """One rich bar over the parts of the audit, on stderr (none with -q)."""

    def __init__(self, quiet: bool, total: int):
        self.quiet, self.total = quiet, total
        self.bar = None
        self.task = None

    def __enter__(self) -> _Progress:
        if not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]audit[/bold] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=False,
            )
        return self

    def update(self, part: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task(part, total=total)
        self.bar.update(self.task, completed=done, description=part)

    def __exit__(self, *exc) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.stop()
