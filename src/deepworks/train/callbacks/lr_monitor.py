"""Learning-rate monitor: logs the LR (and momentum) of each optimizer param group."""

from __future__ import annotations

from typing import Any

from deepworks.evaluate.specs import MetricSpec
from deepworks.registry import register_callback
from deepworks.train.callbacks.base import Callback


@register_callback("lr_monitor")
class LRMonitor(Callback):
    """Add ``lr`` (first param group) and ``lr/group{i}`` for other groups to the epoch logs.

    Args:
        log_momentum: Also log ``momentum`` (SGD) or ``beta1`` (Adam family).
    """

    order = -10  # before loggers and checkpoints read the logs
    metrics = (
        MetricSpec("lr", None, label="Learning rate", fmt=".3g"),
        MetricSpec("lr/group*", None, label="Learning rate of group {}", fmt=".3g"),
        MetricSpec("momentum", None, fmt=".3g"),
        MetricSpec("beta1", None, label="Adam β1", fmt=".3g"),
    )

    def __init__(self, log_momentum: bool = False):
        self.log_momentum = log_momentum
        self.groups: list[dict[str, Any]] = []

    def on_epoch_start(self, trainer) -> None:
        # the LR the epoch trains with; epoch schedulers step before on_epoch_end. An epoch
        # resumed mid-way keeps the rate it started with (restored by load_state_dict).
        if trainer.batch_in_epoch > 0 and self.groups:
            return
        keys = ("lr", "momentum", "betas")
        self.groups = [{k: g[k] for k in keys if k in g} for g in trainer.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"groups": self.groups}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.groups = [dict(g) for g in state.get("groups", [])]

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        groups = self.groups
        logs["lr"] = groups[0]["lr"]
        for i, group in enumerate(groups[1:], start=1):
            if group["lr"] != groups[0]["lr"]:
                logs[f"lr/group{i}"] = group["lr"]
        if self.log_momentum:
            g = groups[0]
            if "momentum" in g:
                logs["momentum"] = g["momentum"]
            elif "betas" in g:
                logs["beta1"] = g["betas"][0]
