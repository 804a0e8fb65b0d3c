"""Model checkpoint: save the last epoch and the best one by a monitored metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepworks.registry import register_callback
from deepworks.train.callbacks.base import Callback, improved, resolve_mode


@register_callback("model_checkpoint")
class ModelCheckpoint(Callback):
    """Write ``checkpoints/last`` after every epoch and ``checkpoints/best`` when ``monitor``
    improves (safetensors, atomic; see ``deepworks.train.checkpoint``).

    Args:
        monitor: Value that decides the best epoch, e.g. "val/loss".
        mode: "min", "max" or "auto".
        save_best: Keep the best checkpoint.
        save_last: Keep the last checkpoint.
    """

    order = 50

    def __init__(self, monitor: str = "val/loss", mode: str = "auto", save_best: bool = True,
                 save_last: bool = True):
        self.monitor, self.mode = monitor, resolve_mode(monitor, mode)
        self.save_best, self.save_last = save_best, save_last
        self.best: float | None = None
        self.best_epoch = -1

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        if trainer.run_dir is None:
            return
        root = Path(trainer.run_dir) / "checkpoints"
        value = logs.get(self.monitor, logs.get("train/loss"))
        if self.save_best and value is not None and improved(float(value), self.best, self.mode):
            self.best, self.best_epoch = float(value), int(logs["epoch"])
            trainer.save_checkpoint(root / "best", logs)
        if self.save_last:
            trainer.save_checkpoint(root / "last", logs)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
