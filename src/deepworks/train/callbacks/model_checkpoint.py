"""Model checkpoint: save every N epochs and/or steps, keep the last k and the best."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepworks.registry import register_callback
from deepworks.rundir import CHECKPOINTS
from deepworks.train.callbacks.base import Callback, improved, resolve_mode
from deepworks.train.checkpoint import CheckpointDir


@register_callback("model_checkpoint")
class ModelCheckpoint(Callback):
    """Write complete, resumable checkpoints into ``<run>/checkpoints/`` (see
    ``deepworks.train.checkpoint``): ``last`` links the newest, ``best`` the best by ``monitor``.

    Args:
        monitor: Value that decides the best epoch, e.g. "val/loss".
        mode: "min", "max" or "auto" (the direction the task declares for ``monitor``).
        save_best: Keep the best checkpoint.
        every_n_epochs: Save after every n-th epoch (None: never at epoch ends).
        every_n_steps: Also save every n optimizer steps, mid-epoch included.
        keep_last: Number of most recent checkpoints kept (the best is kept besides).
    """

    order = 50

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: str = "auto",
        save_best: bool = True,
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        keep_last: int = 2,
    ):
        self.monitor, self.mode = monitor, mode  # "auto": resolved at the start, see below
        self.save_best = save_best
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.keep_last = keep_last
        self.best: float | None = None
        self.best_epoch = -1
        self.dir: CheckpointDir | None = None

    def on_train_start(self, trainer) -> None:
        self.mode = resolve_mode(self.monitor, self.mode, trainer.task, "train.checkpoint.monitor")
        if trainer.run_dir is not None:
            self.dir = CheckpointDir(Path(trainer.run_dir) / CHECKPOINTS, self.keep_last)

    def save(self, trainer, best: bool = False) -> Path | None:
        """Save now (also used by the Trainer when a signal asks it to stop)."""
        if self.dir is None:
            return None
        return self.dir.save(trainer.global_step, trainer.save_checkpoint, best=best)

    def on_batch_end(self, trainer, loss) -> None:
        due = self.every_n_steps and trainer.global_step % self.every_n_steps == 0
        if due and trainer.batch_in_epoch < trainer.batches_per_epoch:  # epoch ends: see below
            self.save(trainer)

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        monitor, mode = self.monitor, self.mode
        if monitor not in logs:  # e.g. val/accuracy without a validation split
            monitor, mode = "train/loss", "min"
        value = logs.get(monitor)
        is_best = self.save_best and value is not None and improved(float(value), self.best, mode)
        if is_best:
            self.best, self.best_epoch = float(value), int(logs["epoch"])
        due = self.every_n_epochs and (int(logs["epoch"]) + 1) % self.every_n_epochs == 0
        if is_best or due:
            self.save(trainer, best=is_best)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
