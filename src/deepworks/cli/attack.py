"""``deepworks attack RUN --method pgd --eps 0.05,0.1``: clean vs robust accuracy of a run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from deepworks.cli import app, out
from deepworks.cli.progress import PartsProgress


@app.command()
def attack(
    run: Path = typer.Argument(..., help="Run directory of a classification run"),
    method: str = typer.Option("pgd", "--method", "-m", help="fgsm, pgd, cw or square"),
    eps: str = typer.Option("0.1", "--eps", help="Budget(s) in raw input units: 0.1 or 0.05,0.1"),
    steps: int = typer.Option(
        None, "--steps", help="Steps (pgd), Adam steps per search round (cw), queries (square)"
    ),
    alpha: float = typer.Option(None, "--alpha", help="PGD step size (default 2.5 * eps / steps)"),
    norm: str = typer.Option(None, "--norm", help="PGD norm: linf or l2"),
    split: str = typer.Option("test", "--split", help="Split to attack: test, val or train"),
    n: int = typer.Option(None, "--n", help="Attack only the first N samples"),
    out_dir: Path = typer.Option(None, "--out", help="Folder for the files (RUN/attacks/METHOD)"),
    seed: int = typer.Option(0, "--seed", help="Seed of the attack's random draws"),
    batch_size: int = typer.Option(256, "--batch-size", help="Samples attacked at once"),
    clip_min: float = typer.Option(None, "--clip-min", help="Smallest valid input (data min)"),
    clip_max: float = typer.Option(None, "--clip-max", help="Largest valid input (data max)"),
    checkpoint: str = typer.Option("best", help="Checkpoint to load: best or last"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar"),
) -> None:
    """Attack a trained classifier: clean vs robust accuracy at each eps, example images.

    Writes results.json, results.csv and examples.png (image data) to RUN/attacks/METHOD/.
    """
    from deepworks.cli.train import graded_line
    from deepworks.errors import ConfigError
    from deepworks.robust.evaluate import attack_run

    if checkpoint not in ("best", "last"):
        raise ConfigError(f"--checkpoint {checkpoint!r}: choose best or last")
    options = {"steps": steps, "alpha": alpha, "norm": norm}
    with PartsProgress(quiet) as progress:
        report = attack_run(
            run,
            method,
            eps,
            split,
            n,
            out_dir,
            seed,
            batch_size,
            clip_min,
            clip_max,
            checkpoint,
            options,
            on_progress=progress.update,
        )
    if out_dir is None:  # the run's report gains the robustness section
        from deepworks.report import write_report

        write_report(run)
    out.print(_table(report))
    out.print(f"files:  {report['out']}", markup=False)
    out.print(f"graded: {graded_line(run, checkpoint)}", markup=False)


def _table(report: dict) -> Table:
    opts = ", ".join(f"{k}={v}" for k, v in report["options"].items())
    title = (
        f"{report['method']}{f' ({opts})' if opts else ''} on {report['samples']} "
        f"{report['split']} samples, inputs in [{report['clip'][0]:g}, {report['clip'][1]:g}]"
    )
    table = Table(title=title, title_justify="left")
    for name in ("eps", "clean acc", "robust acc", "success", f"mean {report['norm']}", "time"):
        table.add_column(name, justify="right")
    for r in report["results"]:
        size = r["mean_linf"] if report["norm"] == "linf" else r["mean_l2"]
        table.add_row(
            f"{r['eps']:g}",
            f"{r['clean_accuracy']:.4f}",
            f"{r['robust_accuracy']:.4f}",
            f"{r['success_rate']:.4f}",
            f"{size:.4f}",
            f"{r['seconds']:.1f}s",
        )
    return table
