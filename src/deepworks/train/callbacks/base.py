"""Callbacks: named no-op hooks the Trainer calls at fixed points of the loop.

Override only the hooks you need. ``logs`` is the dict of the current epoch's values (``epoch``,
``train/loss``, ``val/accuracy``, ``lr``, ...); a callback may add entries to it in
``on_epoch_end``. ``state_dict`` / ``load_state_dict`` let a resumed run restore a callback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from deepworks.train.trainer import Trainer


class Callback:
    """Base callback; every hook does nothing."""

    #: Order among callbacks at the same hook: lower runs first (loggers run last).
    order = 0

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer) -> None: ...

    def on_batch_end(self, trainer: Trainer, loss: torch.Tensor) -> None:
        """After each optimizer step; ``loss`` is a device tensor (reading it syncs)."""

    def on_validation_start(self, trainer: Trainer) -> None: ...

    def on_validation_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def resolve_mode(monitor: str, mode: str) -> str:
    """ "min" or "max" for ``monitor`` when ``mode`` is "auto" (losses down, accuracies up)."""
    if mode != "auto":
        return mode
    from deepworks.evaluate.metrics import higher_is_better

    return "max" if higher_is_better(monitor) else "min"


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta
