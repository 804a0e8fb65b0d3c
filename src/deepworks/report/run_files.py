"""Read the files a run directory holds, for the report.

Every file is optional: a missing one reads as None and its section is left out. A file that
exists but cannot be used (malformed JSON or YAML, a non-numeric history cell, a confusion
matrix that is not square) raises a one-line :class:`~deepworks.errors.CheckpointError` that
names the file and the problem.
"""

from __future__ import annotations

import csv
import json
import typing
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deepworks.data.bundle import TaskType
from deepworks.errors import CheckpointError

#: Data task types, plus the tasks that report pictures of their own (``report/<task>.py``).
TASK_TYPES = typing.get_args(TaskType) + ("autoencoder", "anomaly_detection", "vae", "gan", "rbm")


@dataclass
class RunFiles:
    """What a run directory holds; None for every file that is not there."""

    run_dir: Path
    config: dict[str, Any] | None = None
    history: list[dict[str, float | None]] | None = None
    metrics: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    predictions: dict[str, np.ndarray] | None = None
    data: dict[str, Any] | None = None
    model_text: str | None = None
    modified: dict[str, float] = field(default_factory=dict)  # file name -> mtime

    @property
    def name(self) -> str:
        """The run's name from its config, else the directory name."""
        name = (self.config or {}).get("name")
        return str(name) if name else self.run_dir.resolve().name

    @property
    def task_type(self) -> str | None:
        """The task type (see ``TASK_TYPES``) or None, from the first file that says."""
        for source in (self.evaluation, self.data):
            if source and source.get("task_type") in TASK_TYPES:
                return source["task_type"]
        task = (self.config or {}).get("task")
        name = task.get("name", task.get("type")) if isinstance(task, dict) else task
        if name in TASK_TYPES:
            return name
        if self.predictions is not None:
            return "classification" if "y_prob" in self.predictions else None
        return None


def load_run(run_dir: str | Path) -> RunFiles:
    """Read every known file of ``run_dir``.

    Raises:
        CheckpointError: ``run_dir`` is not a directory, or one of its files is corrupt.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: not a run directory (it does not exist)")
    run = RunFiles(run_dir=run_dir)
    for name in (
        "config.yaml",
        "history.csv",
        "metrics.json",
        "evaluation.json",
        "predictions.npz",
        "data.json",
        "model.txt",
    ):
        if (run_dir / name).is_file():
            run.modified[name] = (run_dir / name).stat().st_mtime
    run.config = _read_yaml(run_dir / "config.yaml")
    run.history = _read_history(run_dir / "history.csv")
    run.metrics = _read_json(run_dir / "metrics.json")
    run.evaluation = _read_json(run_dir / "evaluation.json")
    run.data = _read_json(run_dir / "data.json")
    run.predictions = _read_predictions(run_dir / "predictions.npz")
    if (run_dir / "model.txt").is_file():
        run.model_text = _read_text(run_dir / "model.txt")
    if run.evaluation is not None:
        _check_evaluation(run_dir / "evaluation.json", run.evaluation)
    return run


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror})") from exc


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise CheckpointError(f"{path}: not valid JSON: {exc.msg} ({where})") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _read_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise CheckpointError(f"{path}: not valid YAML: {problem}{where}") from exc
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a YAML mapping, got {type(value).__name__}")
    return value


def _read_history(path: Path) -> list[dict[str, float | None]] | None:
    """Rows of ``history.csv`` as floats; empty cells read as None."""
    if not path.is_file():
        return None
    try:
        reader = csv.DictReader(_read_text(path).splitlines())
        raw = list(reader)
    except csv.Error as exc:
        raise CheckpointError(f"{path}: not valid CSV: {exc}") from exc
    rows = []
    for line, row in enumerate(raw, start=2):
        parsed: dict[str, float | None] = {}
        for key, cell in row.items():
            if key is None:
                raise CheckpointError(f"{path}: line {line} has more cells than the header")
            cell = (cell or "").strip()
            try:
                parsed[key] = float(cell) if cell else None
            except ValueError as exc:
                msg = f"{path}: line {line}, column {key!r}: {cell!r} is not a number"
                raise CheckpointError(msg) from exc
        rows.append(parsed)
    return rows


def _read_predictions(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable .npz archive ({exc})") from exc
    for key in ("y_true", "y_pred"):
        if key not in arrays:
            raise CheckpointError(f"{path}: has no {key!r} array (found: {', '.join(arrays)})")
    n = len(arrays["y_true"])
    for key, array in arrays.items():
        if array.ndim == 0 or len(array) != n:
            shape = tuple(array.shape)
            raise CheckpointError(f"{path}: {key!r} has shape {shape}, expected {n} rows")
    return arrays


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` picture archive a task saved into the run directory (e.g.
    ``vae_pictures.npz``), or {} when it is missing or damaged: unlike the run's own files it
    only feeds pictures, so a bad one costs its sections, not the report."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, Mapping):  # a bare .npy array, not an archive
            return {}
        with loaded as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return {}


def _check_evaluation(path: Path, evaluation: dict[str, Any]) -> None:
    """Check the parts of evaluation.json the report draws, so a bad one fails with its name."""
    cm = evaluation.get("confusion_matrix")
    if cm is not None:
        try:
            array = np.asarray(cm, dtype=float)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: confusion_matrix is not a matrix of numbers") from exc
        if array.ndim != 2 or array.shape[0] != array.shape[1]:
            shape = tuple(array.shape)
            raise CheckpointError(f"{path}: confusion_matrix has shape {shape}, expected (K, K)")
        names = evaluation.get("class_names")
        if names is not None and len(names) != array.shape[0]:
            raise CheckpointError(
                f"{path}: {len(names)} class_names for a {array.shape[0]}x{array.shape[0]} "
                "confusion_matrix"
            )
    per_class = evaluation.get("per_class")
    if per_class is not None:
        if not isinstance(per_class, dict):
            raise CheckpointError(f"{path}: per_class must be an object of lists")
        lengths = {key: len(v) for key, v in per_class.items() if isinstance(v, list)}
        if len(set(lengths.values())) > 1:
            raise CheckpointError(f"{path}: per_class lists differ in length ({lengths})")
        for key, values in per_class.items():
            if not isinstance(values, list) or not all(_is_number(v) for v in values):
                raise CheckpointError(f"{path}: per_class.{key} must be a list of numbers")


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
