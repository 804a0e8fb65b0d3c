"""Every metric a supervised run logs: its task's, the loop's and the callbacks'.

The task declares what ``evaluate`` and ``stats_metrics`` emit (``Task.metrics``); the Trainer's
loop adds ``epoch``, ``step`` and ``time`` to every row of ``history.csv`` and the run's summary
(``train/samples_per_s``, ``train/epochs``, ``train/stopped_early``, ``best/epoch``) to
``metrics.json``; callbacks declare what they add (``LRMonitor.metrics``: ``lr``, ...).
:func:`run_metrics` puts them together for the CLI tables and the report.
"""

from __future__ import annotations

from deepworks.evaluate.specs import MetricSpec, merge
from deepworks.registry import CALLBACKS, TASKS
from deepworks.tasks.base import Task

#: What the loop and the run summary log beside the task's metrics (none is a score).
LOOP_METRICS = (
    MetricSpec("epoch", None, fmt=".0f"),
    MetricSpec("step", None, fmt=".0f"),
    MetricSpec("time", None, label="Training time (s)", fmt=".1f"),
    MetricSpec("samples_per_s", None, label="Samples per second", fmt=",.0f"),
    MetricSpec("epochs", None, label="Epochs run", fmt=".0f"),
    MetricSpec("stopped_early", None, label="Stopped early", fmt=".0f"),
)


def callback_metrics() -> tuple[MetricSpec, ...]:
    """The specs every registered callback declares (``Callback.metrics``)."""
    return merge(*(getattr(CALLBACKS.get(name), "metrics", ()) for name in CALLBACKS.names()))


def run_metrics(task: str | Task | type[Task] | None) -> tuple[MetricSpec, ...]:
    """The specs of a run of ``task`` (a registered name, a Task or its class; None or an
    unknown name: the base Task's ``loss`` only), then the loop's and the callbacks'."""
    if isinstance(task, str):
        task = TASKS.get(task) if task in TASKS else None
    own = (task or Task).metrics
    names = {s.name for s in own}
    rest = [s for s in (*LOOP_METRICS, *callback_metrics()) if s.name not in names]
    return (*own, *rest)
