"""The Trainer owns the loop: devices, precision, compile, batching, callbacks, checkpoints.

What one step means belongs to the Task (``deepworks.tasks``). The loop is written for speed:
batches come from a tensor-resident batcher, the running loss stays on the device and is read only
every ``log_every_n_steps`` steps, gradients are reset with ``set_to_none``, and on CUDA the
optimizer is fused and bf16 autocast is on by default.

Example:
    >>> trainer = Trainer(epochs=20, optimizer={"name": "adam", "lr": 1e-3})
    >>> result = trainer.fit(model, data, task="classification")
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepworks.config import TrainConfig, validate
from deepworks.data.batching import make_loader
from deepworks.data.bundle import DataBundle, LazySplit, Split
from deepworks.errors import ConfigError, DeepworksError
from deepworks.registry import CALLBACKS, TASKS
from deepworks.tasks.base import Task
from deepworks.train.callbacks import (
    Callback,
    EarlyStopping,
    HistoryLogger,
    LRMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from deepworks.train.checkpoint import save_checkpoint, split_tensors
from deepworks.utils import resolve_device, seed_everything


@dataclass
class FitResult:
    """What ``Trainer.fit`` returns."""

    model: nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, float]  # last epoch's logs
    epochs_run: int
    train_time_s: float
    samples_per_s: float
    stop_reason: str = ""
    best: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    """What ``Trainer.validate`` / ``Trainer.test`` return."""

    metrics: dict[str, float]
    details: dict[str, Any] | None
    predictions: dict[str, np.ndarray]


class Trainer:
    """Train any model on any task; configured by a :class:`TrainConfig` or its keywords.

    Args:
        config: A ``TrainConfig`` (or dict); keyword arguments override its fields.
        callbacks: Extra :class:`Callback` instances.
        run_dir: Where history and checkpoints go (None: nothing is written).
        seed: Seed of weights init order, shuffling and dropout.
    """

    def __init__(
        self,
        config: TrainConfig | dict[str, Any] | None = None,
        *,
        callbacks: list[Callback] | None = None,
        run_dir: str | Path | None = None,
        seed: int = 0,
        **kwargs: Any,
    ):
        raw = config.model_dump() if isinstance(config, TrainConfig) else dict(config or {})
        self.config: TrainConfig = validate(TrainConfig, raw | kwargs, "train")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.seed = seed
        self.device = resolve_device(self.config.device)
        self.extra_callbacks = list(callbacks or [])
        self.callbacks: list[Callback] = []
        self.epoch = 0
        self.global_step = 0
        self.total_steps = 0
        self.should_stop = False
        self.stop_reason = ""
        self.model: nn.Module | None = None
        self.task: Task | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None

    # --- set-up -----------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA for precision "auto"; fp32 elsewhere unless asked."""
        p = self.config.precision
        if p == "auto":
            p = "bf16" if self.device.type == "cuda" else "fp32"
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _build_task(self, task: Task | str | dict) -> Task:
        if isinstance(task, Task):
            return task
        if isinstance(task, str):
            return TASKS.build(task, {}, where="task")
        task = dict(task)
        return TASKS.build(task.pop("name"), task, where="task")

    def _build_callbacks(self) -> list[Callback]:
        c = self.config
        cbs: list[Callback] = [LRMonitor(), HistoryLogger()]
        if c.progress:
            cbs.append(ProgressBar(refresh_every=c.log_every_n_steps))
        if c.early_stopping is not None:
            cbs.append(EarlyStopping(**c.early_stopping.model_dump()))
        if c.checkpoint is not None:
            cbs.append(ModelCheckpoint(**c.checkpoint.model_dump()))
        for i, cb in enumerate(c.callbacks):
            cbs.append(CALLBACKS.build(cb.name, cb.kwargs, where=f"train.callbacks.{i}"))
        cbs += self.extra_callbacks
        return sorted(cbs, key=lambda cb: cb.order)

    def loader(self, split: Split | LazySplit, train: bool):
        c = self.config
        return make_loader(
            split,
            c.batch_size if train else (c.eval_batch_size or max(c.batch_size, 256)),
            shuffle=train,
            seed=self.seed,
            kind=c.loader,
            num_workers=c.num_workers,
            device=self.device,
        )

    def _penalty_params(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]

    # --- the loop ---------------------------------------------------------------------------
    def fit(
        self, model: nn.Module, data: DataBundle, task: Task | str | dict = "classification"
    ) -> FitResult:
        """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch."""
        c = self.config
        seed_everything(self.seed, c.deterministic)
        self.task = self._build_task(task)
        self.model = model.to(self.device)
        self.task.setup(data, c.loss, self.device)
        conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        channels_last = conv and self.device.type == "cuda"
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        step_model = torch.compile(self.model) if c.compile else self.model

        train_loader = self.loader(data.train, train=True)
        batches = len(train_loader)
        steps_per_epoch = math.ceil(batches / c.accumulate)
        self.optimizer, self.scheduler, interval = self.task.configure_optimizers(
            self.model, c, steps_per_epoch
        )
        self.total_steps = steps_per_epoch * c.epochs
        if c.max_steps:
            self.total_steps = min(self.total_steps, c.max_steps)
        self.callbacks = self._build_callbacks()
        batch_end = [cb for cb in self.callbacks if _overrides(cb, "on_batch_end")]
        penalized = self._penalty_params() if (c.l1 or c.l2) else []
        scaler = torch.amp.GradScaler(enabled=c.precision == "fp16" and self.device.type == "cuda")
        history: list[dict[str, Any]] = []
        samples, t_train = 0, 0.0
        self.should_stop = False

        for cb in self.callbacks:
            cb.on_train_start(self)
        try:
            for self.epoch in range(self.epoch, c.epochs):
                for cb in self.callbacks:
                    cb.on_epoch_start(self)
                self.model.train()
                t0 = time.perf_counter()
                running = torch.zeros((), device=self.device)
                stats = None
                seen = 0
                for i, (x, y) in enumerate(train_loader):
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                    if channels_last and x.ndim == 4:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with self.autocast():
                        loss, outputs = self.task.training_step(step_model, x, y)
                    if penalized:
                        loss = loss + self._penalty(penalized)
                    scaler.scale(loss / c.accumulate if c.accumulate > 1 else loss).backward()
                    running += loss.detach()
                    s = self.task.batch_stats(outputs.detach(), y)
                    if s is not None:
                        stats = s if stats is None else stats + s
                    seen += len(y)
                    if (i + 1) % c.accumulate and i + 1 < batches:
                        continue
                    self._optimizer_step(scaler)
                    if interval == "step":
                        self.scheduler.step()
                    self.global_step += 1
                    for cb in batch_end:
                        cb.on_batch_end(self, loss.detach())
                    if c.max_steps and self.global_step >= c.max_steps:
                        self.should_stop = True
                        self.stop_reason = f"max_steps={c.max_steps} reached"
                        break
                n_batches = i + 1
                t_train += time.perf_counter() - t0
                samples += seen
                logs = {"epoch": self.epoch, "step": self.global_step}
                logs["train/loss"] = float(running) / n_batches
                if stats is not None:
                    for k, v in self.task.stats_metrics(stats, seen).items():
                        logs[f"train/{k}"] = v
                if not math.isfinite(logs["train/loss"]):
                    raise DeepworksError(
                        f"training diverged: train/loss is {logs['train/loss']} in epoch "
                        f"{self.epoch}; lower train.optimizer.lr or set train.grad_clip_norm"
                    )
                if data.val is not None and len(data.val):
                    val = self.evaluate(self.model, data.val)
                    logs |= {f"val/{k}": v for k, v in val.metrics.items()}
                    for cb in self.callbacks:
                        cb.on_validation_end(self, logs)
                if interval == "epoch":
                    self.scheduler.step()
                elif interval == "plateau":
                    monitor = getattr(self.scheduler, "monitor", "val/loss")
                    if monitor not in logs:
                        raise ConfigError(f"train.scheduler.monitor: {monitor!r} is not logged")
                    self.scheduler.step(logs[monitor])
                logs["time"] = round(t_train, 4)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, logs)
                history.append(logs)
                if self.should_stop:
                    break
            self.epoch += 1
        except BaseException as exc:
            for cb in self.callbacks:
                cb.on_exception(self, exc)
            raise
        for cb in self.callbacks:
            cb.on_train_end(self)
        return FitResult(
            model=self.model,
            history=history,
            metrics=history[-1] if history else {},
            epochs_run=len(history),
            train_time_s=t_train,
            samples_per_s=samples / t_train if t_train else 0.0,
            stop_reason=self.stop_reason,
            best=_best(self.callbacks),
        )

    def _penalty(self, params: list[torch.Tensor]) -> torch.Tensor:
        """L1 (sparsity, lasso) and L2 (ridge) penalties on the weights, added to the loss."""
        c = self.config
        total = 0.0
        if c.l1:
            total = total + c.l1 * sum(p.abs().sum() for p in params)
        if c.l2:
            total = total + c.l2 * sum(p.pow(2).sum() for p in params)
        return total

    def _optimizer_step(self, scaler: torch.amp.GradScaler) -> None:
        c = self.config
        if c.grad_clip_norm or c.grad_clip_value:
            scaler.unscale_(self.optimizer)
            params = [p for p in self.model.parameters() if p.grad is not None]
            if c.grad_clip_value:
                torch.nn.utils.clip_grad_value_(params, c.grad_clip_value)
            if c.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(params, c.grad_clip_norm)
        scaler.step(self.optimizer)
        scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    # --- evaluation -------------------------------------------------------------------------
    @torch.inference_mode()
    def outputs(self, model: nn.Module, split: Split | LazySplit) -> torch.Tensor:
        """Model outputs for a whole split, in order, gathered on the device."""
        model.eval()
        outs = []
        for x, _ in self.loader(split, train=False):
            with self.autocast():
                outs.append(model(x.to(self.device, non_blocking=True)).float())
        return torch.cat(outs)

    def evaluate(self, model: nn.Module, split: Split | LazySplit) -> EvalResult:
        """Loss and metrics of ``model`` on one split."""
        out = self.outputs(model, split)
        metrics, details, preds = self.task.evaluate(out, split.y.to(out.device))
        return EvalResult(metrics, details, preds)

    def validate(self, model: nn.Module, data: DataBundle, task: Task | str | None = None):
        return self._eval_split(model, data, "val", task)

    def test(self, model: nn.Module, data: DataBundle, task: Task | str | None = None):
        return self._eval_split(model, data, "test", task)

    def _eval_split(self, model, data, name, task) -> EvalResult:
        split = getattr(data, name)
        if split is None or not len(split):
            raise DeepworksError(f"data.split.{name}: the dataset has no {name} split; set one")
        if task is not None or self.task is None:
            self.task = self._build_task(task or data.task_type)
            self.task.setup(data, self.config.loss, self.device)
        result = self.evaluate(model.to(self.device), split)
        result.metrics = {f"{name}/{k}": v for k, v in result.metrics.items()}
        return result

    def predict(self, model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Predictions for new inputs (already scaled like the training data)."""
        y = torch.zeros(len(x))
        return self.task.predict(self.outputs(model.to(self.device), Split(x, y)))

    # --- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path, logs: dict[str, Any] | None = None) -> Path:
        """Write model, optimizer and scheduler state and the loop position to ``path``."""
        opt_skeleton, opt_tensors = split_tensors(self.optimizer.state_dict(), "optimizer")
        sched = self.scheduler.state_dict() if self.scheduler is not None else None
        sched_skeleton, sched_tensors = split_tensors(sched, "scheduler")
        state = {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "logs": logs or {},
            "optimizer": opt_skeleton,
            "scheduler": sched_skeleton,
            "task": self.task.state(),
            "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
        }
        return save_checkpoint(
            path,
            {"model": self.model.state_dict(), "optimizer": opt_tensors | sched_tensors},
            state,
        )


def _overrides(cb: Callback, hook: str) -> bool:
    return getattr(type(cb), hook) is not getattr(Callback, hook)


def _best(callbacks: list[Callback]) -> dict[str, Any]:
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint | EarlyStopping) and cb.best is not None:
            return {"monitor": cb.monitor, "value": cb.best, "epoch": cb.best_epoch}
    return {}
