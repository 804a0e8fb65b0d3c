"""Learning-rate schedules by name.

Each factory returns ``(scheduler, interval)``: "step" schedules advance after every optimizer
step (smooth warmup / cosine / one-cycle curves), "epoch" ones after every epoch, and
reduce_on_plateau after every validation with the monitored value.
"""

from __future__ import annotations

import math
from typing import Literal

from torch.optim import Optimizer, lr_scheduler

from deepworks.registry import register_scheduler


def sized_by_run_length(scheduler):
    """Mark a schedule whose shape depends on the run's total steps: a run resumed with another
    length rebuilds it for the new one (see ``Trainer._resume_schedule``)."""
    scheduler.sized_by_run_length = True
    return scheduler


@register_scheduler("step")
def step(
    optimizer: Optimizer, steps_per_epoch: int, epochs: int, step_size: int = 10, gamma: float = 0.1
):
    """Multiply the LR by ``gamma`` every ``step_size`` epochs.

    Args:
        step_size: Epochs between two decays.
        gamma: Factor the LR is multiplied by at each decay.
    """
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma), "epoch"


@register_scheduler("exponential")
def exponential(optimizer: Optimizer, steps_per_epoch: int, epochs: int, gamma: float = 0.95):
    """Multiply the LR by ``gamma`` after every epoch.

    Args:
        gamma: Factor the LR is multiplied by after each epoch.
    """
    return lr_scheduler.ExponentialLR(optimizer, gamma=gamma), "epoch"


@register_scheduler("cosine")
def cosine(optimizer: Optimizer, steps_per_epoch: int, epochs: int, eta_min: float = 0.0):
    """Cosine annealing from the initial LR to ``eta_min`` over the whole run.

    Args:
        eta_min: The LR at the end of the run.
    """
    total = max(1, steps_per_epoch * epochs)
    sched = lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=eta_min)
    return sized_by_run_length(sched), "step"


@register_scheduler("one_cycle")
def one_cycle(
    optimizer: Optimizer,
    steps_per_epoch: int,
    epochs: int,
    max_lr: float | None = None,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
):
    """One-cycle policy (Smith): warm up to ``max_lr`` (default: the optimizer's lr), anneal.

    Args:
        max_lr: The peak LR (default: ``train.optimizer.lr``).
        pct_start: Fraction of the run spent warming up.
        div_factor: The LR starts at ``max_lr / div_factor``.
        final_div_factor: The LR ends at the start LR divided by this.
    """
    max_lr = max_lr or optimizer.param_groups[0]["lr"]
    total = max(4, steps_per_epoch * epochs)
    # OneCycleLR needs at least one step in each phase: keep the warmup within [1.5, total - 1.5]
    pct_start = min(max(pct_start, 1.5 / total), 1 - 1.5 / total)
    sched = lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=total,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )
    return sized_by_run_length(sched), "step"


class WarmupThen:
    """LR factor: linear warmup from ``start_factor`` to 1 over ``warmup`` steps, then constant,
    cosine decay to ``min_factor`` or linear decay to ``min_factor`` over the remaining steps."""

    def __init__(self, warmup: int, total: int, after: str, start_factor: float, min_factor: float):
        self.warmup, self.total, self.after = warmup, total, after
        self.start_factor, self.min_factor = start_factor, min_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start_factor + (1 - self.start_factor) * step / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        if self.after == "cosine":
            return self.min_factor + (1 - self.min_factor) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        if self.after == "linear":
            return 1 - (1 - self.min_factor) * progress
        return 1.0


@register_scheduler("warmup")
def warmup(
    optimizer: Optimizer,
    steps_per_epoch: int,
    epochs: int,
    warmup_steps: int | None = None,
    warmup_epochs: float = 1.0,
    after: str = "cosine",
    start_factor: float = 0.01,
    min_factor: float = 0.0,
):
    """Linear warmup (``warmup_steps`` or ``warmup_epochs``), then cosine, linear or constant.

    Args:
        warmup_steps: Optimizer steps of the warmup (takes precedence over ``warmup_epochs``).
        warmup_epochs: Epochs of the warmup (may be a fraction).
        after: What follows the warmup: "cosine", "linear" (decay to ``min_factor``) or
            "constant".
        start_factor: The warmup starts at this fraction of the LR.
        min_factor: The decay ends at this fraction of the LR.
    """
    if after not in ("cosine", "linear", "constant"):
        raise ValueError(f"after must be cosine, linear or constant, not {after!r}")
    total = max(1, steps_per_epoch * epochs)
    n = warmup_steps if warmup_steps is not None else round(warmup_epochs * steps_per_epoch)
    fn = WarmupThen(max(1, n), total, after, start_factor, min_factor)
    sched = lr_scheduler.LambdaLR(optimizer, fn)
    return (sized_by_run_length(sched) if after != "constant" else sched), "step"


class ReduceOnPlateau(lr_scheduler.ReduceLROnPlateau):
    """torch's ReduceLROnPlateau, whose mode the task can set from its metric spec."""

    def set_mode(self, mode: str) -> None:
        """Compare with ``mode`` ("min" or "max") from now on, forgetting the best so far."""
        self._init_is_better(
            mode=mode, threshold=self.threshold, threshold_mode=self.threshold_mode
        )
        self._reset()
        self.mode_auto = False


@register_scheduler("reduce_on_plateau")
def reduce_on_plateau(
    optimizer: Optimizer,
    steps_per_epoch: int,
    epochs: int,
    monitor: str = "val/loss",
    mode: Literal["auto", "min", "max"] = "auto",
    factor: float = 0.1,
    patience: int = 5,
    min_lr: float = 0.0,
):
    """Divide the LR by 1/``factor`` when ``monitor`` stops improving for ``patience`` epochs
    (``mode: auto``: the direction the task declares for ``monitor``).

    Args:
        monitor: The logged value watched, e.g. "val/loss".
        mode: "min", "max" or "auto" (the direction declared for ``monitor``).
        factor: Factor the LR is multiplied by on a plateau.
        patience: Epochs without improvement before the LR is reduced.
        min_lr: The LR is never reduced below this.
    """
    sched = ReduceOnPlateau(
        optimizer,
        mode="min" if mode == "auto" else mode,
        factor=factor,
        patience=patience,
        min_lr=min_lr,
    )
    sched.monitor = monitor
    sched.mode_auto = mode == "auto"  # set by Task.configure_optimizers from the metric's spec
    return sched, "plateau"
