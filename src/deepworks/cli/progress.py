"""A rich progress bar on stderr for commands that work through parts (attacks per eps, the
audit's parts): one bar per label, each with its count, elapsed time and ETA; none with -q."""

from __future__ import annotations

from deepworks.cli import err


class PartsProgress:
    """``with PartsProgress(quiet) as progress: progress.update(label, done, total)``.

    Args:
        quiet: Show nothing.
        one_bar: Move a single bar from label to label (the audit's parts) instead of adding a
            bar per label (the attacks' eps).
        prefix: Bold text before each description.
    """

    def __init__(self, quiet: bool, one_bar: bool = False, prefix: str = ""):
        self.quiet, self.one_bar, self.prefix = quiet, one_bar, prefix
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> PartsProgress:
        if not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn(f"[bold]{self.prefix}[/bold]{{task.description}}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            )
        return self

    def update(self, label: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if not self.tasks:
            self.bar.start()
        key = "" if self.one_bar else label
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(label, total=total)
        self.bar.update(self.tasks[key], completed=done, total=total, description=label)

    def __exit__(self, *exc) -> None:
        if self.bar is not None and self.tasks:
            self.bar.stop()
