"""What a training step means. The Task owns the step; the Trainer owns the loop.

A task turns a batch into a loss (``training_step``), knows its loss functions and how many outputs
its model needs, turns gathered outputs into metrics (``evaluate``), and builds its optimizer and
LR schedule (``configure_optimizers``). The Trainer calls these and does everything else once, for
every task: devices, precision, compile, callbacks, checkpoints, logging.

A task declares every metric its ``evaluate`` and ``stats_metrics`` emit in ``metrics`` (see
:mod:`deepworks.evaluate.specs`): early stopping, checkpoints and ``reduce_on_plateau`` read
which way is better from it, the CLI and the report its headlines, labels and formats, and a
monitor it does not declare is a config error (:meth:`Task.check_monitors`). A subclass's
``metrics`` extend its parent's; ``loss`` is declared here, for every task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from deepworks.config import LossConfig, TrainConfig
from deepworks.data.bundle import DataBundle
from deepworks.errors import ConfigError, DeepworksError
from deepworks.evaluate.specs import MetricSpec, check_specs, resolve, split_name
from deepworks.optim import backbone_param_groups, param_groups
from deepworks.registry import LOSSES, OPTIMIZERS, SCHEDULERS


class Diverged(DeepworksError):
    """Raised by :meth:`Task.training_step` when training has gone wrong beyond repair (a GAN
    player's loss is not finite, the discriminator has saturated); the Trainer stops with this
    message and names the last good checkpoint."""


class Task:
    """Base task. Subclasses set ``losses`` (allowed names, the first is the default)."""

    name = "task"
    losses: tuple[str, ...] = ()
    #: False for tasks whose consecutive training batches continue each other (truncated BPTT
    #: with a carried hidden state): the Trainer then keeps the training split in order.
    shuffle_train = True
    #: True for tasks that run backward and step their own optimizers inside
    #: :meth:`training_step` (a GAN's two players); the Trainer then only counts the step.
    manual_optimization = False
    #: Every metric :meth:`evaluate` and :meth:`stats_metrics` emit. A subclass declares its own;
    #: they come first, followed by those of its parents it does not redeclare.
    metrics: tuple[MetricSpec, ...] = (MetricSpec("loss", "min", headline=True, label="Loss"),)
    #: Whether ``deepworks explain`` and ``deepworks audit`` can explain the task's model: one
    #: input tensor in, one score per class (or one value) per sample out.
    explainable = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = tuple(cls.__dict__.get("metrics", ()))
        names = {s.name for s in own}
        inherited: list[MetricSpec] = []
        for base in cls.__bases__:
            for spec in getattr(base, "metrics", ()):
                if spec.name not in names:
                    names.add(spec.name)
                    inherited.append(spec)
        check_specs(own, cls.__name__)
        cls.metrics = own + tuple(inherited)

    @classmethod
    def metric(cls, monitor: str, where: str = "") -> MetricSpec:
        """The spec of a value monitored during training (``val/accuracy``, ``train/loss``);
        a one-line ConfigError if the task does not declare it or it is not logged per epoch."""
        spec = resolve(monitor, cls.metrics, task=cls.name, where=where)
        prefix, leaf = split_name(monitor)
        if prefix not in ("train", "val"):
            pre = f"{where}: " if where else ""
            raise ConfigError(
                f"{pre}{monitor!r} is not logged during training; monitor 'val/{leaf}' "
                f"(or 'train/{leaf}')"
            )
        return spec

    @classmethod
    def check_monitors(cls, train: TrainConfig, where: str | Callable[[str], str] = "") -> None:
        """Check every monitored metric of a train config against the declared ``metrics``
        (early stopping, checkpoints, ``reduce_on_plateau``, callbacks with a ``monitor``).

        ``where``: the config file, or a function of the dotted key that starts the error line.
        """
        for key, monitor in monitored(train):
            cls.metric(monitor, where(key) if callable(where) else f"{where}: {key}".lstrip(": "))

    def __init__(self):
        self.loss_fn: nn.Module | None = None
        self.data_info: dict[str, Any] = {}

    # --- set-up -----------------------------------------------------------------------------
    def loss_name(self, loss: LossConfig) -> str:
        name = loss.name or self.losses[0]
        if name not in LOSSES:
            LOSSES.get(name, where="train.loss.name")  # raises with choices and a close match
        if name not in self.losses:
            raise ConfigError(
                f"train.loss.name: {name!r} does not fit the {self.name} task "
                f"(choices: {', '.join(self.losses)})"
            )
        return name

    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        """Width of the model's output layer for this task and loss."""
        return data.num_outputs

    def setup(
        self, data: DataBundle, loss: LossConfig, device: torch.device, model: nn.Module = None
    ) -> None:
        """Build the loss for ``data`` (class weights need its training split); ``model`` tells
        what the model outputs."""
        self.data_info = data.describe() | {"class_names": data.class_names}
        weight = self.class_weights(data, loss)
        self.loss_fn = LOSSES.build(
            self.loss_name(loss), loss.kwargs, where="train.loss", weight=weight
        ).to(device)

    def class_weights(self, data: DataBundle, loss: LossConfig) -> torch.Tensor | None:
        if loss.class_weights is None:
            return None
        if data.num_classes is None:
            raise ConfigError(f"train.loss.class_weights: {data.task_type} data has no classes")
        if loss.class_weights == "balanced":
            return data.class_weights()
        weights = torch.tensor(loss.class_weights, dtype=torch.float32)
        if len(weights) != data.num_classes:
            raise ConfigError(
                f"train.loss.class_weights: {len(weights)} weights given for "
                f"{data.num_classes} classes; give one per class or 'balanced'"
            )
        return weights

    def state(self) -> dict[str, Any]:
        """What ``predict`` needs besides the weights (e.g. target scaling), JSON-serializable."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def configure_optimizers(
        self, model: nn.Module, train: TrainConfig, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, Any, str | None]:
        """(optimizer, scheduler or None, scheduler interval: "step" / "epoch" / "plateau").

        The optimizer and the schedule are the ones the config names (``OPTIMIZERS``,
        ``SCHEDULERS``: :mod:`deepworks.train.optimizers`, :mod:`deepworks.train.schedulers`),
        over the parameter groups of :mod:`deepworks.optim`.
        """
        opt = train.optimizer
        if train.backbone_lr is not None or train.freeze_backbone:
            groups = backbone_param_groups(model, opt.lr, opt.weight_decay, train.backbone_lr)
        else:
            groups = param_groups(model, opt.weight_decay)
        optimizer = OPTIMIZERS.build(
            opt.name, opt.kwargs, where="train.optimizer", params=groups, lr=opt.lr
        )
        if train.scheduler is None:
            return optimizer, None, None
        s = train.scheduler
        epochs = train.epochs
        if train.max_steps:  # schedules end with the epoch in which max_steps stops training
            epochs = min(epochs, -(-train.max_steps // steps_per_epoch))
        scheduler, interval = SCHEDULERS.build(
            s.name,
            s.kwargs,
            where="train.scheduler",
            optimizer=optimizer,
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
        )
        if interval == "plateau" and getattr(scheduler, "mode_auto", False):
            monitor = getattr(scheduler, "monitor", "val/loss")
            direction = self.metric(monitor, "train.scheduler.monitor").direction
            scheduler.set_mode(direction)
        return optimizer, scheduler, interval

    # --- the step ---------------------------------------------------------------------------
    def training_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward one batch; return (loss, outputs)."""
        outputs = model(x)
        return self.loss_fn(outputs, y), outputs

    def callbacks(self) -> list:
        """Callbacks this task adds to the run's (e.g. sample grids after every epoch)."""
        return []

    def save_pictures(self, model: nn.Module, data: DataBundle, run_dir) -> None:
        """Write the task's pictures for the report (sample grids, reconstructions) once
        training is done. Default: none."""

    def start_epoch(self) -> None:
        """Called by the Trainer before each training epoch (e.g. to reset a carried state)."""

    def carry_state(self) -> dict[str, torch.Tensor]:
        """Tensors carried from one training step to the next (a recurrent hidden state), saved
        in checkpoints so that a resumed run continues exactly."""
        return {}

    def load_carry_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`carry_state` returned."""

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """Per-batch sums kept on the device for cheap training metrics (None: no metrics)."""
        return None

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        return {}

    # --- evaluation -------------------------------------------------------------------------
    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The outputs of one evaluation batch, gathered over a split for :meth:`evaluate`
        (e.g. decoded sequences instead of teacher-forced logits). Default: ``model(x)``."""
        return model(x)

    def evaluate(
        self, outputs: torch.Tensor, y: torch.Tensor, full: bool = True
    ) -> tuple[dict[str, float], dict[str, Any] | None, dict[str, np.ndarray]]:
        """From all outputs (N, ...) and targets of a split: (metrics, details, predictions).

        ``full=False`` (per-epoch validation) may compute only the headline metrics.
        """
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        """Outputs → {"y_pred": ..., "y_prob": ...} for ``predict`` and reports."""
        raise NotImplementedError


def monitored(train: TrainConfig) -> list[tuple[str, str]]:
    """(config key, monitored metric) pairs of a train config."""
    found = []
    if train.early_stopping is not None:
        found.append(("train.early_stopping.monitor", train.early_stopping.monitor))
    if train.checkpoint is not None:
        found.append(("train.checkpoint.monitor", train.checkpoint.monitor))
    if train.scheduler is not None and train.scheduler.name == "reduce_on_plateau":
        found.append(("train.scheduler.monitor", train.scheduler.kwargs.get("monitor", "val/loss")))
    for i, cb in enumerate(train.callbacks):
        if isinstance(cb.kwargs.get("monitor"), str):
            found.append((f"train.callbacks.{i}.monitor", cb.kwargs["monitor"]))
    return found
