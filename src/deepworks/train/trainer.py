"""The Trainer owns the loop: devices, precision, compile, batching, callbacks, checkpoints.

What one step means belongs to the Task (``deepworks.tasks``). The loop is written for speed:
batches come from a tensor-resident batcher, the running loss stays on the device and is read only
every ``log_every_n_steps`` steps, gradients are reset with ``set_to_none``, the optimizer is
fused, and on CUDA bf16 autocast is on by default and the finiteness check of the loss is kept on
the device too (``deepworks.train.finite``), so no step waits for the GPU.

Example:
    >>> trainer = Trainer(epochs=20, optimizer={"name": "adam", "lr": 1e-3})
    >>> result = trainer.fit(model, data, task="classification")
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepworks.config import TrainConfig, validate
from deepworks.data.augment import build_augment
from deepworks.data.batching import make_loader
from deepworks.data.bundle import DataBundle, LazySplit, Split
from deepworks.errors import CheckpointError, ConfigError, DeepworksError
from deepworks.registry import CALLBACKS, TASKS
from deepworks.rundir import CHECKPOINTS
from deepworks.tasks.base import Diverged, Task
from deepworks.train.callbacks import (
    EMA,
    Callback,
    EarlyStopping,
    HistoryLogger,
    LRMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from deepworks.train.checkpoint import (
    join_tensors,
    load_checkpoint,
    save_checkpoint,
    split_tensors,
)
from deepworks.train.finite import FiniteWatch, skips_on_found_inf
from deepworks.train.rng import get_rng_state, set_rng_state
from deepworks.transfer import freeze_backbone, keep_frozen_norms_in_eval
from deepworks.utils import resolve_device, seed_everything


class StopReason(str, Enum):
    """Why training ended before its epoch budget (``NONE``: it ran the budget)."""

    NONE = ""
    MAX_STEPS = "max_steps"
    EARLY_STOPPING = "early_stopping"
    NON_FINITE = "non_finite"
    DIVERGED = "diverged"
    CALLBACK = "callback"


@dataclass
class FitResult:
    """What ``Trainer.fit`` returns."""

    model: nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, float]  # last epoch's logs
    epochs_run: int
    train_time_s: float
    samples_per_s: float
    stop_reason: str = ""  # the stop's message ("" when training ran its budget)
    best: dict[str, Any] = field(default_factory=dict)
    stop: StopReason = StopReason.NONE


@dataclass
class _Loop:
    """What one ``fit`` call's loop works with, fixed at set-up."""

    train_loader: Any
    step_model: nn.Module  # the model, or its torch.compile'd wrapper
    augment: Any
    channels_last: bool
    interval: str | None  # when the schedule steps: "step", "epoch", "plateau" or never
    manual: bool  # the task steps its own optimizers
    scaler: torch.amp.GradScaler
    check_every: int  # steps between host reads of the device-side finiteness check
    save_every: int | None  # ModelCheckpoint.every_n_steps
    mark: Any  # profiler regions, or a no-op
    penalized: list[torch.Tensor]  # weights under the L1/L2 penalty
    batch_end: list[Callback]  # callbacks that override on_batch_end
    signals: SignalGuard | None = None


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
        self.batch_in_epoch = 0
        self.watch: FiniteWatch | None = None  # the device-side NaN/Inf check (see fit)
        self.batches_per_epoch = 0
        self.total_steps = 0
        self.should_stop = False
        self.stop, self.stop_reason = StopReason.NONE, ""
        self.history: list[dict[str, Any]] = []  # one row of logs per finished epoch
        self.samples_seen, self.train_time = 0, 0.0
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
        if c.ema is not None:
            cbs.append(EMA(decay=c.ema))
        for i, cb in enumerate(c.callbacks):
            cbs.append(CALLBACKS.build(cb.name, cb.kwargs, where=f"train.callbacks.{i}"))
        cbs += self.task.callbacks() if self.task is not None else []
        cbs += self.extra_callbacks
        return sorted(cbs, key=lambda cb: cb.order)

    def loader(self, split: Split | LazySplit, train: bool):
        c = self.config
        return make_loader(
            split,
            c.batch_size if train else (c.eval_batch_size or max(c.batch_size, 256)),
            shuffle=train and (self.task is None or self.task.shuffle_train),
            seed=self.seed,
            kind=c.loader,
            num_workers=c.num_workers,
            device=self.device,
        )

    def _penalty_params(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]

    # --- the loop ---------------------------------------------------------------------------
    def fit(
        self,
        model: nn.Module,
        data: DataBundle,
        task: Task | str | dict = "classification",
        resume: str | Path | None = None,
    ) -> FitResult:
        """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch.

        Args:
            resume: A checkpoint directory to continue from, exactly: weights, optimizer,
                scheduler, generators, callbacks and the position within the epoch.
        """
        loop = self._setup(model, data, task)
        if resume is not None:
            self._restore(resume)
        for cb in self.callbacks:
            cb.on_train_start(self)
        loop.signals = SignalGuard()
        try:
            while self.epoch < self.config.epochs and not self.should_stop:
                if not self._train_epoch(loop):
                    break  # non-finite or diverged: nothing of this epoch is logged or saved
                self._end_epoch(loop, data)
        except BaseException as exc:
            for cb in self.callbacks:
                cb.on_exception(self, exc)
            raise
        finally:
            loop.signals.restore()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return FitResult(
            model=self.model,
            history=self.history,
            metrics=self.history[-1] if self.history else {},
            epochs_run=len(self.history),
            train_time_s=self.train_time,
            samples_per_s=self.samples_seen / self.train_time if self.train_time else 0.0,
            stop_reason=self.stop_reason,
            best=_best(self.callbacks),
            stop=self.stop,
        )

    def request_stop(self, reason: StopReason, message: str) -> None:
        """Stop after the current step (callbacks call this, e.g. early stopping)."""
        self.should_stop, self.stop, self.stop_reason = True, StopReason(reason), message

    def _setup(self, model: nn.Module, data: DataBundle, task: Task | str | dict) -> _Loop:
        """Everything the loop needs: task, device and layout, optimizer, schedule, callbacks."""
        c = self.config
        seed_everything(self.seed, c.deterministic)
        self.task = self._build_task(task)
        self.model = model.to(self.device)
        self.task.setup(data, c.loss, self.device, model)
        # recurrent models clip gradients unless the config says otherwise (exploding gradients)
        self.clip_norm = c.grad_clip_norm
        if self.clip_norm is None:
            self.clip_norm = getattr(model, "default_grad_clip_norm", None)
        conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        # NHWC for conv nets: cuDNN's fast layout, and oneDNN's on the CPU (1.1-1.5x per step)
        channels_last = c.channels_last
        if channels_last is None:
            channels_last = conv and self.device.type in ("cpu", "cuda")
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if c.tta != "none" and self.task.name == "detection":
            raise ConfigError("train.tta: flip is not supported for detection; use tta: none")
        augment = build_augment(c.augment, data.num_classes)
        if augment is not None and augment.soft_labels:
            self._check_soft_labels()
        if c.freeze_backbone:
            freeze_backbone(self.model)

        train_loader = self.loader(data.train, train=True)
        self.sampler = train_loader.sampler
        self.batches_per_epoch = len(train_loader)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / c.accumulate)
        self.optimizer, self.scheduler, interval = self.task.configure_optimizers(
            self.model, c, self.steps_per_epoch
        )
        self.total_steps = self.steps_per_epoch * c.epochs
        if c.max_steps:
            self.total_steps = min(self.total_steps, c.max_steps)
        manual = self.task.manual_optimization
        if manual and (c.accumulate > 1 or c.l1 or c.l2 or c.precision == "fp16"):
            raise ConfigError(
                f"train: the {self.task.name} task steps its own optimizers; remove "
                "accumulate, l1, l2 and precision: fp16 from train"
            )
        self.callbacks = self._build_callbacks()
        scaler = torch.amp.GradScaler(enabled=c.precision == "fp16" and self.device.type == "cuda")
        # the finiteness check: read every step on the CPU (free there), else kept on the device
        every = c.check_finite_every or (1 if self.device.type == "cpu" else c.log_every_n_steps)
        deferred = every > 1 and not manual and c.on_nonfinite != "skip_batch"
        deferred = deferred and not scaler.is_enabled() and skips_on_found_inf(self.optimizer)
        self.watch = FiniteWatch(self.device) if deferred else None
        saver = next((cb for cb in self.callbacks if isinstance(cb, ModelCheckpoint)), None)
        # named regions for the profiler (``--profile``); free no-ops otherwise
        profiling = any(getattr(cb, "profiles", False) for cb in self.callbacks)
        # the whole run's history and training time (restored on resume)
        self.history = []
        self.samples_seen, self.train_time = 0, 0.0
        self.should_stop, self.stop, self.stop_reason = False, StopReason.NONE, ""
        self.epoch = self.global_step = self.batch_in_epoch = 0
        self._running = self._fresh_running()
        return _Loop(
            train_loader=train_loader,
            step_model=torch.compile(self.model) if c.compile else self.model,
            augment=augment,
            channels_last=channels_last,
            interval=interval,
            manual=manual,
            scaler=scaler,
            check_every=every,
            save_every=saver.every_n_steps if saver is not None else None,
            mark=torch.profiler.record_function if profiling else _no_region,
            penalized=self._penalty_params() if (c.l1 or c.l2) else [],
            batch_end=[cb for cb in self.callbacks if _overrides(cb, "on_batch_end")],
        )

    def _train_epoch(self, loop: _Loop) -> bool:
        """One pass over the training batches (from the resumed position); False if a non-finite
        value or a diverging task stopped it."""
        for cb in self.callbacks:
            cb.on_epoch_start(self)
        if self.batch_in_epoch == 0:
            self.task.start_epoch()
        self.model.train()
        keep_frozen_norms_in_eval(self.model)
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(loop.train_loader, start=self.batch_in_epoch):
            self.batch_in_epoch = i + 1
            if not self._train_batch(loop, x, y):
                break
        if self.watch is not None and self.stop is not StopReason.NON_FINITE:
            self._read_watch()
        if self.stop in (StopReason.NON_FINITE, StopReason.DIVERGED):
            return False
        if self.device.type == "cuda":  # the queued steps belong to this epoch's time
            torch.cuda.synchronize(self.device)
        self.train_time += time.perf_counter() - t0
        return True

    def _train_batch(self, loop: _Loop, x: torch.Tensor, y: torch.Tensor) -> bool:
        """Forward and backward one batch, and the optimization step when it completes an
        accumulation; False when the epoch must end here."""
        c = self.config
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if loop.augment is not None:
            x, y = loop.augment(x, y)
        if loop.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            with self.autocast(), loop.mark("deepworks.forward"):
                loss, outputs = self.task.training_step(loop.step_model, x, y)
        except Diverged as exc:
            self._diverged(str(exc))
            return False
        if not loop.manual:
            if loop.penalized:
                loss = loss + self._penalty(loop.penalized)
            if self.watch is not None:
                self.watch.note(loss, self.global_step + 1)
            elif not self._finite(loss, "loss"):
                if c.on_nonfinite == "skip_batch":
                    self.optimizer.zero_grad(set_to_none=True)
                    return True
                return False
            with loop.mark("deepworks.backward"):
                scaled = loss / c.accumulate if c.accumulate > 1 else loss
                loop.scaler.scale(scaled).backward()
        running, stats, seen, counted = self._running
        running += loss.detach()  # in place, on the device: no host read
        s = self.task.batch_stats(outputs.detach(), y)
        if s is not None:
            stats = s if stats is None else stats + s
        self._running = (running, stats, seen + len(y), counted + 1)
        if self.batch_in_epoch % c.accumulate and self.batch_in_epoch < self.batches_per_epoch:
            return True
        if not loop.manual:  # manual tasks stepped their optimizers in training_step
            with loop.mark("deepworks.optimizer"):
                stepped = self._optimizer_step(loop.scaler)
            if not stepped:
                return c.on_nonfinite == "skip_batch"
        return self._after_step(loop, loss)

    def _after_step(self, loop: _Loop, loss: torch.Tensor) -> bool:
        """Count the step, advance a per-step schedule, run batch-end callbacks, honour signals
        and ``max_steps``; False when the epoch must end here."""
        c = self.config
        if loop.interval == "step":
            self.scheduler.step()
        self.global_step += 1
        if self.watch is not None:
            due = self.global_step % loop.check_every == 0
            due = due or (loop.save_every and self.global_step % loop.save_every == 0)
            if (due or loop.signals.caught is not None) and self._read_watch():
                return False
        for cb in loop.batch_end:
            cb.on_batch_end(self, loss.detach())
        if loop.signals.caught is not None:
            self._interrupted(loop.signals.caught)
        if c.max_steps and self.global_step >= c.max_steps:
            self.request_stop(StopReason.MAX_STEPS, f"max_steps={c.max_steps} reached")
            return False
        return True

    def _end_epoch(self, loop: _Loop, data: DataBundle) -> None:
        """Log the epoch, validate, step per-epoch schedules and run the epoch-end callbacks
        (which write history and checkpoints)."""
        logs = self._epoch_logs(*self._running)
        self.samples_seen += self._running[2]
        if data.val is not None and len(data.val):
            for cb in self.callbacks:
                cb.on_validation_start(self)
            val = self.evaluate(self.model, data.val, full=self.config.val_metrics == "full")
            logs |= {f"val/{k}": v for k, v in val.metrics.items()}
            for cb in self.callbacks:
                cb.on_validation_end(self, logs)
        if loop.interval == "epoch":
            self.scheduler.step()
        elif loop.interval == "plateau":
            monitor = getattr(self.scheduler, "monitor", "val/loss")
            if monitor not in logs:
                raise ConfigError(f"train.scheduler.monitor: {monitor!r} is not logged")
            self.scheduler.step(logs[monitor])
        logs["time"] = round(self.train_time, 4)
        self.batch_in_epoch = self.batches_per_epoch  # a checkpoint now resumes at the next epoch
        self.history.append(logs)  # callbacks complete the row (lr, ...) in place
        for cb in self.callbacks:
            cb.on_epoch_end(self, logs)
        self.epoch += 1
        self.batch_in_epoch = 0
        self._running = self._fresh_running()

    def _check_soft_labels(self) -> None:
        loss = self.config.loss.name or self.task.losses[0]
        if self.task.name != "classification" or loss != "cross_entropy":
            raise ConfigError(
                f"train.augment: mixup / cutmix make soft labels, which only the classification "
                f"task with the cross_entropy loss takes (this run: {self.task.name}, {loss})"
            )

    def _fresh_running(self) -> tuple:
        """Per-epoch sums kept on the device: (loss, task stats, samples, batches)."""
        return torch.zeros((), device=self.device), None, 0, 0

    def _epoch_logs(self, running, stats, seen: int, n_batches: int) -> dict[str, Any]:
        logs: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step}
        logs["train/loss"] = float(running) / max(1, n_batches)
        if stats is not None:
            for k, v in self.task.stats_metrics(stats, seen).items():
                logs[f"train/{k}"] = v
        return logs

    def _finite(self, value: torch.Tensor, name: str) -> bool:
        """Check a loss or gradient norm; on a non-finite value act per ``on_nonfinite``."""
        if bool(torch.isfinite(value)):
            return True
        culprit = name
        if name == "gradient norm":
            culprit = next(
                (
                    f"gradient of {n}"
                    for n, p in self.model.named_parameters()
                    if p.grad is not None and not torch.isfinite(p.grad).all()
                ),
                "gradient",
            )
        self._nonfinite(culprit, float(value.detach()), self.global_step + 1)
        return False

    def _read_watch(self) -> bool:
        """Read the device-side finiteness record (one sync); True if training must stop.

        The fused optimizer skipped every update from the first non-finite step on, so the weights
        and optimizer state are those of the step before it; the step counter goes back there too.
        """
        found = self.watch.read()
        if found is None:
            return False
        step, value, name = found
        self.global_step = step - 1
        self._nonfinite(name, value, step)
        return True

    def _nonfinite(self, culprit: str, value: float, step: int) -> None:
        """Act per ``on_nonfinite`` on a non-finite loss or gradient found at ``step``."""
        c = self.config
        message = (
            f"non-finite {culprit} ({value}) at step {step} "
            f"(epoch {self.epoch}); the last checkpoint is the last finite state. "
            "Lower train.optimizer.lr, set train.grad_clip_norm, or check the data"
        )
        if c.on_nonfinite == "raise":
            raise NonFiniteError(message)
        self.optimizer.zero_grad(set_to_none=True)
        if c.on_nonfinite == "stop":
            self.request_stop(StopReason.NON_FINITE, message)

    def _diverged(self, what: str) -> None:
        """The task found training beyond repair: stop (or raise, per ``on_nonfinite``) with a
        message naming the last good checkpoint."""
        last = self.run_dir / CHECKPOINTS / "last" if self.run_dir is not None else None
        kept = (
            f"the last good checkpoint is {last.resolve()}"
            if last is not None and last.exists()
            else "no checkpoint was written before it"
        )
        message = f"diverged: {what} at step {self.global_step + 1} (epoch {self.epoch}); {kept}"
        if self.config.on_nonfinite == "raise":
            raise NonFiniteError(message)
        self.optimizer.zero_grad(set_to_none=True)
        self.request_stop(StopReason.DIVERGED, message)

    def _interrupted(self, signum: int) -> None:
        """A signal arrived: the step is done; write a checkpoint and stop with exit code 3."""
        saver = next((cb for cb in self.callbacks if isinstance(cb, ModelCheckpoint)), None)
        path = saver.save(self) if saver is not None else None
        name = signal.Signals(signum).name
        if path is None:
            raise TrainingInterrupted(
                f"{name} received: stopped after step {self.global_step}; no checkpoint was "
                "written (no run directory, or checkpoint: null)"
            )
        raise TrainingInterrupted(
            f"{name} received: stopped after step {self.global_step}, checkpoint written to "
            f"{path}; continue with: deepworks train --resume {self.run_dir}"
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

    def _optimizer_step(self, scaler: torch.amp.GradScaler) -> bool:
        """Clip, step and reset gradients; False (no step) if the gradient norm is not finite."""
        c = self.config
        clip_norm = self.clip_norm
        if clip_norm or c.grad_clip_value:
            scaler.unscale_(self.optimizer)
            params = [p for p in self.model.parameters() if p.grad is not None]
            if c.grad_clip_value:
                torch.nn.utils.clip_grad_value_(params, c.grad_clip_value)
            if clip_norm:
                norm = torch.nn.utils.clip_grad_norm_(params, clip_norm)
                if self.watch is not None:
                    self.watch.note(norm, self.global_step + 1, kind=1)
                elif not scaler.is_enabled() and not self._finite(norm, "gradient norm"):
                    return False
        if self.watch is None:
            scaler.step(self.optimizer)
        else:  # skipped in the kernel once anything was non-finite (read later, see _read_watch)
            self.optimizer.found_inf = self.watch.found_inf
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    # --- evaluation -------------------------------------------------------------------------
    @torch.inference_mode()
    def outputs(self, model: nn.Module, split: Split | LazySplit) -> torch.Tensor:
        """Model outputs for a whole split, in order, gathered on the device."""
        model.eval()
        outs = []
        flip = self.config.tta == "flip"
        default_step = type(self.task).eval_step is Task.eval_step
        for x, y in self.loader(split, train=False):
            x = x.to(self.device, non_blocking=True)
            with self.autocast():
                if not default_step:
                    outs.append(self.task.eval_step(model, x, y.to(self.device)).float())
                    continue
                out = model(x).float()
                if flip and x.ndim == 4:  # test-time augmentation: mirror, predict, mirror back
                    mirrored = model(x.flip(-1)).float()
                    out = (out + (mirrored.flip(-1) if out.ndim == 4 else mirrored)) / 2
            outs.append(out)
        return torch.cat(outs)

    def evaluate(self, model: nn.Module, split: Split | LazySplit, full: bool = True) -> EvalResult:
        """Loss and metrics of ``model`` on one split (``full=False``: headline metrics only)."""
        out = self.outputs(model, split)
        metrics, details, preds = self.task.evaluate(out, split.y.to(out.device), full)
        return EvalResult(metrics, details, preds)

    def validate(self, model: nn.Module, data: DataBundle, task: Task | str | None = None):
        return self.evaluate_split(model, data, "val", task)

    def test(self, model: nn.Module, data: DataBundle, task: Task | str | None = None):
        return self.evaluate_split(model, data, "test", task)

    def evaluate_split(
        self,
        model: nn.Module,
        data: DataBundle,
        name: str,
        task: Task | str | None = None,
    ) -> EvalResult:
        """Metrics (``<name>/accuracy``, ...), details and predictions of ``model`` on the split
        ``name`` ("train", "val" or "test") of ``data``; ``task`` defaults to the fitted one."""
        split = getattr(data, name)
        if split is None or not len(split):
            raise DeepworksError(f"data.split.{name}: the dataset has no {name} split; set one")
        if task is not None or self.task is None:
            self.task = self._build_task(task or data.task_type)
            self.task.setup(data, self.config.loss, self.device, model)
        result = self.evaluate(model.to(self.device), split)
        result.metrics = {f"{name}/{k}": v for k, v in result.metrics.items()}
        return result

    def predict(self, model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Predictions for new inputs (already scaled like the training data)."""
        y = torch.zeros(len(x))
        return self.task.predict(self.outputs(model.to(self.device), Split(x, y)))

    # --- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> Path:
        """Write everything a resumed run needs to ``path`` (see ``deepworks.train.checkpoint``).

        Refuses to save non-finite weights, so the last checkpoint is always a finite state.
        """
        for name, p in self.model.state_dict().items():
            if p.is_floating_point() and not torch.isfinite(p).all():
                raise NonFiniteError(f"not saving a checkpoint: {name} has non-finite values")
        done = self.batch_in_epoch >= self.batches_per_epoch
        running, stats, seen, counted = self._running
        state = {
            "epoch": self.epoch + 1 if done else self.epoch,
            "batch_in_epoch": 0 if done else self.batch_in_epoch,
            "global_step": self.global_step,
            "should_stop": self.should_stop,
            "stop": self.stop.value,
            "stop_reason": self.stop_reason,
            "running": None if done else [running, stats, seen, counted],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "sampler": self.sampler.state_dict(),
            "rng": get_rng_state(),
            "task": self.task.state(),
            "task_carry": self.task.carry_state(),
            "history": self.history,
            "samples_seen": self.samples_seen,
            "train_time": self.train_time,
            "callbacks": {k: cb.state_dict() for k, cb in _callback_keys(self.callbacks).items()},
            "train_config": self.config.model_dump(mode="json"),
        }
        skeleton, tensors = split_tensors(state, "state")
        info = {"step": self.global_step, "epoch": self.epoch, "epoch_done": done}
        return save_checkpoint(
            path,
            {"model": self.model.state_dict(), "state": tensors},
            {"info": info, "state": skeleton},
        )

    def _restore(self, path: str | Path) -> None:
        """Load a checkpoint written by :meth:`save_checkpoint` into the set-up loop."""
        tensors, saved = load_checkpoint(path)
        try:
            state = join_tensors(saved["state"], tensors["state"])
            self.model.load_state_dict(tensors["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            _match_param_layout(self.optimizer)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: does not fit this model/optimizer ({str(exc).splitlines()[0]})"
            ) from exc
        saved_callbacks = state["callbacks"]
        for key, cb in _callback_keys(self.callbacks).items():
            if key in saved_callbacks:  # callbacks new to this run keep their initial state
                cb.load_state_dict(saved_callbacks[key])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.should_stop, self.stop_reason = state["should_stop"], state["stop_reason"]
        self.stop = StopReason(state.get("stop", ""))
        self._resume_schedule(state)
        self.task.load_state(state["task"])
        self.history = list(state.get("history", []))
        self.samples_seen = state.get("samples_seen", 0)
        self.train_time = state.get("train_time", 0.0)
        carry = state.get("task_carry") or {}
        self.task.load_carry_state({k: v.to(self.device) for k, v in carry.items()})
        start = self.batch_in_epoch * self.config.batch_size
        self.sampler.load_state_dict(state["sampler"], start=start)
        if state["running"] is not None:
            loss, stats, seen, counted = state["running"]
            self._running = (loss.to(self.device), _to(stats, self.device), seen, counted)
        set_rng_state(state["rng"])

    def _resume_schedule(self, state: dict[str, Any]) -> None:
        """Restore the LR schedule, or, when the run is resumed with another length
        (``--set train.epochs=80``), fit it to the new length.

        Schedules that do not depend on the run's length (step, exponential, plateau, constant
        after warm-up) continue as saved. Those sized by it (one-cycle, cosine, warm-up then
        cosine/linear decay) are rebuilt for the new length and positioned at the resumed step:
        the rate from there on is the new schedule's. A length shorter than what was already
        trained is refused.
        """
        c = self.config
        saved = state.get("train_config") or {}
        old = (saved.get("epochs", c.epochs), saved.get("max_steps", c.max_steps))
        if old != (c.epochs, c.max_steps):
            check_run_length(c, state["epoch"], self.global_step)
            if self.stop is StopReason.MAX_STEPS:  # the old budget ended it; the new one goes on
                self.should_stop, self.stop, self.stop_reason = False, StopReason.NONE, ""
        if self.scheduler is None or state["scheduler"] is None:
            return
        if old == (c.epochs, c.max_steps) or not getattr(
            self.scheduler, "sized_by_run_length", False
        ):
            self.scheduler.load_state_dict(state["scheduler"])
            return
        # the fresh scheduler is built for the new length: replay it to the resumed step
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("initial_lr", group["lr"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
            for _ in range(self.global_step):
                self.scheduler.step()
        warnings.warn(
            f"train.scheduler {c.scheduler.name} is sized by the run's length: rebuilt for "
            f"{self.total_steps} steps and continued at step {self.global_step} "
            f"(lr {self.optimizer.param_groups[0]['lr']:.3g})",
            stacklevel=2,
        )


def check_run_length(config: TrainConfig, epochs_done: int, steps_done: int) -> None:
    """Refuse, in one line, to resume a run with fewer epochs (or steps) than it has trained."""
    c = config
    if c.epochs < epochs_done or (c.max_steps is not None and c.max_steps < steps_done):
        raise ConfigError(
            f"train.epochs={c.epochs}: the run already trained {epochs_done} epoch(s) "
            f"({steps_done} steps); to train longer give more, e.g. "
            f"--set train.epochs={2 * max(1, epochs_done)}"
        )


class NonFiniteError(DeepworksError):
    """A loss, gradient or weight became NaN or infinite (``on_nonfinite: raise``)."""


class TrainingInterrupted(DeepworksError):
    """SIGINT / SIGTERM stopped training after a checkpoint was written (exit code 3)."""

    exit_code = 3


class SignalGuard:
    """Turn the first SIGINT / SIGTERM into a flag the loop checks after each step; a second
    SIGINT interrupts at once. Only in the main thread (signal handlers cannot be set elsewhere)."""

    def __init__(self):
        self.caught: int | None = None
        self.previous = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.caught is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.caught = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _callback_keys(callbacks: list[Callback]) -> dict[str, Callback]:
    """Stable keys for callback states: class name, plus a counter for repeated classes."""
    keys: dict[str, Callback] = {}
    for cb in callbacks:
        name = type(cb).__name__
        key, n = name, 1
        while key in keys:
            n += 1
            key = f"{name}#{n}"
        keys[key] = cb
    return keys


def _match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give loaded optimizer moments their parameter's memory layout.

    Checkpoints store tensors contiguous (NCHW); the parameters of a ``channels_last`` conv net
    are NHWC. A fused or foreach optimizer walks a parameter and its moments as flat memory, so
    moments in another layout would be updated against the wrong elements.
    """
    inner = getattr(optimizer, "optimizers", None)  # an OptimizerSet: each of its optimizers
    if inner is not None:
        for opt in inner.values():
            _match_param_layout(opt)
        return
    for p, state in optimizer.state.items():
        for key, value in state.items():
            is_moment = isinstance(value, torch.Tensor) and value.shape == p.shape
            if is_moment and value.stride() != p.stride():
                state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def _no_region(name: str) -> contextlib.nullcontext:
    return contextlib.nullcontext()


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)


def _overrides(cb: Callback, hook: str) -> bool:
    return getattr(type(cb), hook) is not getattr(Callback, hook)


def _best(callbacks: list[Callback]) -> dict[str, Any]:
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint | EarlyStopping) and cb.best is not None:
            return {"monitor": cb.monitor, "value": cb.best, "epoch": cb.best_epoch}
    return {}
