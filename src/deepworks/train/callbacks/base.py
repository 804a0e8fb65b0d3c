"""Callbacks: named no-op hooks the Trainer calls at fixed points of the loop.

Override only the hooks you need. ``logs`` is the dict of the current epoch's values (``epoch``,
``train/loss``, ``val/accuracy``, ``lr``, ...); a callback may add entries to it in
``on_epoch_end``. ``state_dict`` / ``load_state_dict`` let a resumed run restore a callback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deepworks.evaluate.specs import MetricSpec

if TYPE_CHECKING:
    import torch


class Callback:
    """Base callback; every hook does nothing.

    Each hook gets the :class:`~deepworks.train.trainer.Trainer` that calls it (typed ``Any``
    here: the Trainer's module imports this one, so this one does not import it back).
    """

    #: Order among callbacks at the same hook: lower runs first (loggers run last).
    order = 0
    #: Specs of the values this callback adds to the logs (see :mod:`deepworks.evaluate.specs`).
    metrics: tuple[MetricSpec, ...] = ()

    def on_train_start(self, trainer: Any) -> None: ...

    def on_epoch_start(self, trainer: Any) -> None: ...

    def on_batch_end(self, trainer: Any, loss: torch.Tensor) -> None:
        """After each optimizer step; ``loss`` is a device tensor (reading it syncs)."""

    def on_validation_start(self, trainer: Any) -> None: ...

    def on_validation_end(self, trainer: Any, logs: dict[str, Any]) -> None: ...

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Any) -> None: ...

    def on_exception(self, trainer: Any, exc: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def resolve_mode(monitor: str, mode: str, task: Any, where: str = "") -> str:
    """ "min" or "max" for ``monitor``: ``mode`` itself, or for "auto" the direction ``task``
    (a Task) declares for it. A monitor the task does not declare is a ConfigError either way
    (see :meth:`deepworks.tasks.base.Task.metric`)."""
    spec = task.metric(monitor, where)
    return spec.direction if mode == "auto" else mode


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta
