"""Early stopping: end training when a monitored metric stops improving."""

from __future__ import annotations

import copy
from typing import Any

from deepworks.errors import ConfigError
from deepworks.registry import register_callback
from deepworks.train.callbacks.base import Callback, improved, resolve_mode


@register_callback("early_stopping")
class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: A logged value, e.g. "val/loss" or "val/accuracy".
        patience: Epochs without improvement before stopping.
        mode: "min", "max" or "auto" (the direction the task declares for ``monitor``).
        min_delta: Smallest change that counts as an improvement.
        restore_best: Put the best epoch's weights back into the model at the end.
    """

    def __init__(
        self,
        monitor: str = "val/loss",
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 0.0,
        restore_best: bool = True,
    ):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = mode  # "auto" is resolved from the task's metric specs at the start
        self.restore_best = restore_best
        self.best: float | None = None
        self.best_epoch = -1
        self.wait = 0
        self.best_weights: dict | None = None

    def on_train_start(self, trainer) -> None:
        where = "train.early_stopping.monitor"
        self.mode = resolve_mode(self.monitor, self.mode, trainer.task, where)

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise ConfigError(
                f"train.early_stopping.monitor: {self.monitor!r} is not logged "
                f"(logged: {', '.join(k for k in logs if '/' in k)})"
            )
        value = float(logs[self.monitor])
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, int(logs["epoch"]), 0
            if self.restore_best:
                self.best_weights = copy.deepcopy(trainer.model.state_dict())
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.request_stop(
                    "early_stopping",
                    f"early stopping: {self.monitor} did not improve for {self.patience} epochs "
                    f"(best {self.best:.4g} at epoch {self.best_epoch})",
                )

    def on_train_end(self, trainer) -> None:
        if self.restore_best and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        state = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        if self.best_weights is not None:  # so a resumed run restores the same weights
            state["best_weights"] = self.best_weights
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights = state.get("best_weights")
