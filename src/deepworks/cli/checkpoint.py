"""``deepworks checkpoint verify RUN``: check every checkpoint of a run against its manifest."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from deepworks.cli import app, out

checkpoint_app = typer.Typer(help="Inspect and verify checkpoints.", no_args_is_help=True)
app.add_typer(checkpoint_app, name="checkpoint")


@checkpoint_app.command("verify")
def verify(run: Path = typer.Argument(..., help="Run directory (or its checkpoints/ folder)")):
    """Verify the SHA-256 of every file of every checkpoint; exit 2 if any is damaged."""
    from deepworks.errors import CheckpointError
    from deepworks.rundir import RunDir
    from deepworks.train.checkpoint import CheckpointDir, verify_checkpoint

    root = RunDir(run).checkpoints if RunDir(run).checkpoints.is_dir() else run
    ckpts = CheckpointDir(root)
    steps = ckpts.steps()
    if not steps:
        raise CheckpointError(f"{run}: no checkpoints found (expected {root}/step-*)")
    links = {name: ckpts.target(name) for name in ("last", "best")}
    table = Table(title=str(root), title_justify="left")
    for column in ("checkpoint", "links", "files", "status"):
        table.add_column(column)
    bad = []
    for path in steps:
        tags = ", ".join(n for n, t in links.items() if t == path.resolve())
        try:
            files = verify_checkpoint(path)
            table.add_row(path.name, tags, str(len(files)), "ok")
        except CheckpointError as exc:
            bad.append(str(exc))
            table.add_row(path.name, tags, "-", f"DAMAGED: {exc}")
    out.print(table)
    if bad:
        raise CheckpointError(f"{len(bad)} of {len(steps)} checkpoint(s) damaged; first: {bad[0]}")
