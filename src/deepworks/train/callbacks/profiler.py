"""Profile a few training steps: a torch profiler trace plus where the step time goes.

``deepworks train CONFIG --profile`` (or ``Trainer(callbacks=[Profiler()])``) records steps
``wait + warmup`` to ``wait + warmup + active`` with ``torch.profiler`` and then lets training go
on unprofiled. It writes ``<run>/profile/trace.json`` (open it in Perfetto or
``chrome://tracing``) and ``<run>/profile/summary.json``, and prints the top operators and the
split of the step time:

- ``forward`` and ``backward``: the model (the Trainer marks these regions);
- ``optimizer``: clipping, the optimizer step and zeroing the gradients;
- ``other``: everything else in a step: fetching and moving the batch, augmentation, metrics,
  callbacks, logging.

"Outside the model" is ``optimizer + other``: the part a training loop, not the network, costs.
Times are host (CPU) times; on a GPU each profiled step ends with a synchronize so that a step's
wall time includes its kernels.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from deepworks.registry import register_callback
from deepworks.rundir import PROFILE
from deepworks.train.callbacks.base import Callback

REGIONS = ("forward", "backward", "optimizer")


@register_callback("profiler")
class Profiler(Callback):
    """Profile ``active`` training steps after ``wait + warmup`` steps.

    Args:
        wait: Steps skipped before the profiler starts (first-call costs).
        warmup: Steps profiled but discarded (the profiler's own start-up).
        active: Steps recorded.
        top: Operators listed in the printed table.
        out_dir: Where trace.json and summary.json go (default: ``<run>/profile``; without a
            run directory nothing is written and ``summary`` holds the figures).
    """

    profiles = True  # the Trainer marks its forward / backward / optimizer regions
    order = 90

    def __init__(
        self,
        wait: int = 2,
        warmup: int = 2,
        active: int = 10,
        top: int = 12,
        out_dir: str | None = None,
        printer: Callable[[str], None] | None = None,
    ):
        self.wait, self.warmup, self.active, self.top = wait, warmup, active, top
        self.out_dir, self.printer = out_dir, printer
        self.prof: profile | None = None
        self.summary: dict[str, Any] | None = None

    def on_train_start(self, trainer) -> None:
        if self.summary is not None:
            return
        activities = [ProfilerActivity.CPU]
        self.cuda = trainer.device.type == "cuda"
        if self.cuda:
            activities.append(ProfilerActivity.CUDA)
        sched = schedule(wait=self.wait, warmup=self.warmup, active=self.active, repeat=1)
        # libkineto writes "USDT: ... profiler_start" markers to stderr at every log level up to
        # ERROR; a level above its highest (USDT = 5), read when kineto starts, keeps them out
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
        self.prof = profile(activities=activities, schedule=sched)
        self.prof.start()
        self.steps, self.step_times = 0, []
        self.last = time.perf_counter()
        run_dir = getattr(trainer, "run_dir", None)
        default = Path(run_dir) / PROFILE if run_dir is not None else None
        self.path = Path(self.out_dir) if self.out_dir else default

    def on_batch_end(self, trainer, loss: torch.Tensor) -> None:
        if self.prof is None:
            return
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.steps >= self.wait + self.warmup:
            self.step_times.append(now - self.last)
        self.steps += 1
        self.prof.step()
        if self.steps >= self.wait + self.warmup + self.active:
            self._finish()
        self.last = time.perf_counter()

    def on_train_end(self, trainer) -> None:
        if self.prof is not None:
            self._finish()

    def on_exception(self, trainer, exc: BaseException) -> None:
        if self.prof is not None:
            self.prof.stop()
            self.prof = None

    def _finish(self) -> None:
        prof, self.prof = self.prof, None
        prof.stop()
        if not self.step_times:
            return
        self.summary = summarize(prof.key_averages(), self.step_times, self.top)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(self.path / "trace.json"))
            (self.path / "summary.json").write_text(json.dumps(self.summary, indent=1))
        if self.printer is not None:
            for line in format_summary(self.summary):
                self.printer(line)


def summarize(averages, step_times: list[float], top: int) -> dict[str, Any]:
    """Step-time split and top operators (by self CPU time) from ``key_averages()``."""
    n = len(step_times)
    step_ms = 1e3 * sum(step_times) / n
    by_name = {e.key: e for e in averages}
    split = {}
    for region in REGIONS:
        event = by_name.get(f"deepworks.{region}")
        split[region] = event.cpu_time_total / 1e3 / n if event is not None else 0.0
    split["other"] = max(0.0, step_ms - sum(split.values()))
    ops = [e for e in averages if not e.key.startswith(("deepworks.", "ProfilerStep"))]
    ops.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    total_self = sum(e.self_cpu_time_total for e in ops) or 1.0
    return {
        "steps": n,
        "step_ms": step_ms,
        "split_ms": split,
        "outside_model_fraction": (split["optimizer"] + split["other"]) / step_ms,
        "top_ops": [
            {
                "name": e.key,
                "calls": e.count // n if n else e.count,
                "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / n,
                "share": e.self_cpu_time_total / total_self,
            }
            for e in ops[:top]
        ],
    }


def format_summary(summary: dict[str, Any]) -> list[str]:
    split, step = summary["split_ms"], summary["step_ms"]
    lines = [
        f"profile: {summary['steps']} steps, {step:.2f} ms per step; "
        + ", ".join(f"{k} {v:.2f} ms ({v / step:.0%})" for k, v in split.items()),
        f"profile: {summary['outside_model_fraction']:.1%} of the step time is outside the model "
        "(optimizer + data, metrics, callbacks)",
        "profile: top operators by self CPU time per step:",
    ]
    for op in summary["top_ops"]:
        lines.append(
            f"  {op['self_cpu_ms_per_step']:8.3f} ms  {op['share']:6.1%}  "
            f"{op['calls']:4d}x  {op['name']}"
        )
    return lines
