"""Progress bar: a rich bar over all training steps with ETA and live loss / metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deepworks.registry import register_callback
from deepworks.train.callbacks.base import Callback


def make_progress() -> Progress:
    """The rich bar every long loop shows on stderr: description, bar, n/N, elapsed, ETA, info."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=False,
    )


@contextlib.contextmanager
def progress_bar(show: bool, description: str, total: int, completed: int = 0) -> Iterator:
    """A bar over ``total`` units of an outer loop (episodes, trials, rounds) for ``with``; it
    yields ``advance(n=1, info="")``, a no-op when ``show`` is false."""
    if not show:
        yield lambda n=1, info="": None
        return
    progress = make_progress()
    task = progress.add_task(description, total=total, completed=completed, info="")
    with progress:
        yield lambda n=1, info="": progress.update(task, advance=n, info=info)


@register_callback("progress")
class ProgressBar(Callback):
    """Show a progress bar on stderr; the loss is read every ``refresh_every`` steps only.

    Args:
        refresh_every: Steps between loss reads (each read waits for the device).
        show: Metrics shown after each epoch, besides the loss.
    """

    def __init__(
        self,
        refresh_every: int = 50,
        show: tuple[str, ...] = ("val/loss", "val/accuracy", "val/r2"),
    ):
        self.refresh_every, self.show = refresh_every, tuple(show)
        self.progress: Progress | None = None
        self.task_id = None
        self.epoch_text = ""

    def on_train_start(self, trainer) -> None:
        self.progress = make_progress()
        self.progress.start()
        self.task_id = self.progress.add_task(
            "train", total=trainer.total_steps, completed=trainer.global_step, info=""
        )

    def on_batch_end(self, trainer, loss) -> None:
        if trainer.global_step % self.refresh_every == 0:
            info = f"loss {float(loss):.4f} {self.epoch_text}"
            self.progress.update(self.task_id, completed=trainer.global_step, info=info)

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        shown = [f"{k} {logs[k]:.4f}" for k in self.show if k in logs]
        self.epoch_text = f"| epoch {logs['epoch']} " + " ".join(shown)
        info = f"loss {logs.get('train/loss', float('nan')):.4f} {self.epoch_text}"
        self.progress.update(
            self.task_id,
            completed=trainer.global_step,
            info=info,
            description=f"epoch {logs['epoch'] + 1}/{trainer.config.epochs}",
        )

    def on_train_end(self, trainer) -> None:
        self._stop()

    def on_exception(self, trainer, exc) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
