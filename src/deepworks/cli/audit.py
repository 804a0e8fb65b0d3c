"""``deepworks audit RUN``: one HTML report card of a trained model (``RUN/audit/audit.html``).

Examples::

    deepworks audit runs/digits_cnn
    deepworks audit runs/digits_cnn --n 200 --eps 0.05,0.1,0.2 --method pgd --inputs 4
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from deepworks.cli import app, out
from deepworks.cli.progress import PartsProgress


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
    from deepworks.audit import audit_run
    from deepworks.cli.train import graded_line

    with PartsProgress(quiet, one_bar=True, prefix="audit ") as progress:
        result = audit_run(
            run, n, eps, method, inputs, checkpoint, seed, on_progress=progress.update
        )
    out.print(summary_table(result))
    out.print(f"card:   {result['html']}", markup=False)
    out.print(f"graded: {graded_line(run, checkpoint)}", markup=False)


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
