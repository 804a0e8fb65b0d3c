"""Metric specs: every metric a run emits is declared once, where it is produced.

A :class:`MetricSpec` names a metric as it follows a split prefix in ``metrics.json`` and
``history.csv`` (``accuracy`` in ``val/accuracy``), says which way is better (``"max"`` or
``"min"``; None for figures that are no score, such as a decision threshold or the epoch),
whether it is a headline (the CLI's metrics table, the report's cards), and how people see it
(``label``, ``fmt``). A name may end in a pattern: ``top*_accuracy`` covers ``top3_accuracy``
and ``top5_accuracy``, and a label may show the part the star matched (``"Top-{} accuracy"``).

Each Task declares ``metrics`` (a subclass extends its parent's; ``loss`` comes from the base
Task); metrics computed by shared code are declared beside it (``CLASSIFICATION_METRICS`` in
:mod:`deepworks.evaluate.metrics`, the loop's ``epoch``/``lr``/``time`` in the Trainer).
Early stopping, checkpoints, ``reduce_on_plateau``, the CLI tables and the report read the
declaration through :func:`resolve` / :func:`find`; a monitor with no spec is a config error,
never a guess.

Example:
    >>> spec = resolve("val/accuracy", Classification.metrics, task="classification")
    >>> spec.direction, spec.format(0.9612)
    ('max', '96.12%')
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from deepworks.errors import ConfigError, close_match

#: Split prefixes a metric name may carry.
SPLITS = ("train", "val", "test")
#: Prefixes before a split: ``best/val/accuracy`` (the best epoch's value), ``best/epoch`` and
#: ``graded/step`` (the step of the checkpoint a run is graded on).
QUALIFIERS = ("best", "graded")
DIRECTIONS = ("max", "min", None)

_WORDS = {
    "r2": "R²",
    "mse": "MSE",
    "mae": "MAE",
    "rmse": "RMSE",
    "auc": "AUC",
    "roc": "ROC",
    "pr": "PR",
    "f1": "F1",
    "lr": "learning rate",
    "nll": "NLL",
    "ece": "ECE",
    "mce": "MCE",
    "iou": "IoU",
    "map50": "mAP@0.5",
    "map": "mAP",
    "ap50": "AP@0.5",
    "bleu": "BLEU",
    "mase": "MASE",
    "fid": "FID",
    "kl": "KL",
    "elbo": "ELBO",
    "h1": "(1 step)",
}


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name, which way is better, whether it is a headline, how to show it.

    Args:
        name: The name after the split prefix (``accuracy``); may hold ``*`` (``top*_accuracy``).
        direction: ``"max"`` (higher is better), ``"min"`` (lower is better) or None (not a
            score: a threshold, a count, a reference figure; it cannot be monitored).
        headline: Shown in the CLI's metrics table and the report's headline cards.
        label: For people (``"F1 macro"``); ``{}`` is replaced by what the ``*`` matched.
            Default: made from the name.
        fmt: Python format spec of a value (``".4f"``; ``".2%"`` for fractions).
    """

    name: str
    direction: str | None
    headline: bool = False
    label: str = ""
    fmt: str = ".4f"

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction must be 'max', 'min' or None")
        format(0.5, self.fmt)  # a bad format fails at declaration, not in a report

    @property
    def is_pattern(self) -> bool:
        return "*" in self.name

    def matches(self, leaf: str) -> bool:
        """Whether this spec declares ``leaf`` (a name without its split prefix)."""
        return leaf == self.name or (self.is_pattern and fnmatch.fnmatchcase(leaf, self.name))

    def label_for(self, leaf: str | None = None) -> str:
        """The label of ``leaf`` (default: the spec's own name), the star's part filled in."""
        leaf = self.name if leaf is None else leaf
        if not self.label:
            return default_label(leaf)
        if "{}" in self.label and self.is_pattern:
            head, _, tail = self.name.partition("*")
            middle = leaf[len(head) : len(leaf) - len(tail) if tail else None]
            return self.label.replace("{}", middle)
        return self.label

    def format(self, value: float) -> str:
        """``value`` for people, e.g. ``96.12%``; non-numbers as they are."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        if self.fmt.endswith("%") and not 0.0 <= value <= 1.0:  # not a fraction after all
            return f"{value:.4g}"
        return format(value, self.fmt)

    def better(self, value: float, best: float | None, min_delta: float = 0.0) -> bool:
        """Whether ``value`` improves on ``best`` by more than ``min_delta`` (None: any value)."""
        if self.direction is None:
            raise ValueError(f"metric {self.name!r} has no direction")
        if best is None:
            return True
        return value < best - min_delta if self.direction == "min" else value > best + min_delta


def default_label(leaf: str) -> str:
    """A name for people made from a metric name: ``f1_macro`` -> ``F1 macro``."""
    words = leaf.rsplit("/", 1)[-1].split("_")
    label = " ".join(_WORDS.get(w.lower(), w) for w in words)
    return label[:1].upper() + label[1:]


def split_name(key: str) -> tuple[str, str]:
    """(prefix, name) of a logged key: ``val/f1_macro`` -> ("val", "f1_macro"),
    ``best/val/accuracy`` -> ("best/val", "accuracy"), ``best/epoch`` -> ("best", "epoch"),
    ``graded/step`` -> ("graded", "step"), ``lr`` -> ("", "lr"). Only split prefixes and
    qualifiers count, so ``lr/group0`` keeps its slash."""
    parts = key.split("/")
    prefix = []
    if parts[0] in QUALIFIERS and len(parts) > 1:
        prefix.append(parts.pop(0))
    if parts[0] in SPLITS and len(parts) > 1:
        prefix.append(parts.pop(0))
    return "/".join(prefix), "/".join(parts)


def merge(*groups: Iterable[MetricSpec]) -> tuple[MetricSpec, ...]:
    """Specs of several groups, in order; a later spec of the same name replaces an earlier one
    in its place."""
    out: dict[str, MetricSpec] = {}
    for group in groups:
        for spec in group:
            out[spec.name] = spec
    return tuple(out.values())


def find(key: str, specs: Iterable[MetricSpec]) -> MetricSpec | None:
    """The spec of ``key`` (split prefixes understood), or None: exact names before patterns."""
    _, leaf = split_name(key)
    specs = tuple(specs)
    exact = next((s for s in specs if s.name == leaf), None)
    return exact or next((s for s in specs if s.is_pattern and s.matches(leaf)), None)


def resolve(
    monitor: str, specs: Iterable[MetricSpec], task: str = "", where: str = ""
) -> MetricSpec:
    """The spec of a monitored value such as ``val/accuracy``; a one-line ConfigError when it has
    none (with a close match and the declared choices), or when it is not a score.

    Args:
        monitor: A logged key: ``val/…``, ``train/…``, ``test/…`` or ``best/…`` + a metric name.
        specs: The declared metrics (e.g. ``Task.metrics``).
        task: The task's name, for the message.
        where: The config key being checked (``train.early_stopping.monitor``).
    """
    specs = tuple(specs)
    spec = find(monitor, specs)
    prefix, _ = split_name(monitor)
    pre = f"{where}: " if where else ""
    of = f"a metric of the {task} task" if task else "a declared metric"
    if spec is None:
        choices = [
            f"{prefix}/{s.name}" if prefix else s.name for s in specs if s.direction is not None
        ]
        hint = close_match(monitor, choices)
        did_you_mean = f"; did you mean '{hint}'?" if hint else ""
        raise ConfigError(
            f"{pre}{monitor!r} is not {of}{did_you_mean} (choices: {', '.join(choices)})"
        )
    if spec.direction is None:
        scores = [f"{prefix}/{s.name}" if prefix else s.name for s in specs if s.direction]
        raise ConfigError(
            f"{pre}{monitor!r} is not a score that gets better or worse; monitor one of "
            f"{', '.join(scores)}"
        )
    return spec


def headline(specs: Iterable[MetricSpec]) -> tuple[MetricSpec, ...]:
    """The headline specs, in declaration order."""
    return tuple(s for s in specs if s.headline)


def check_specs(specs: Iterable[MetricSpec], owner: str) -> None:
    """Raise ValueError for a name declared twice (a programming error of ``owner``)."""
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"{owner}: metric {spec.name!r} is declared twice")
        seen.add(spec.name)
