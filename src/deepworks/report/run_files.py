"""Read the files a run directory holds, for the report, through :class:`~deepworks.rundir.RunDir`.

Every file is optional: a missing one reads as None and its section is left out. A file that
exists but cannot be used (malformed JSON or YAML, a non-numeric history cell, a confusion
matrix that is not square) raises a one-line :class:`~deepworks.errors.CheckpointError` that
names the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepworks.errors import CheckpointError
from deepworks.evaluate.specs import MetricSpec, merge
from deepworks.registry import TASKS
from deepworks.rundir import DATA, RunDir
from deepworks.train.specs import run_metrics


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
    manifest: dict[str, Any] | None = None
    task: str | None = None  # the run's task (run.json, else config.yaml's task.name)
    modified: dict[str, float] = field(default_factory=dict)  # file name -> mtime
    recipe_specs: tuple[MetricSpec, ...] = ()  # the metrics a recipe declares besides its task's

    @property
    def dir(self) -> RunDir:
        return RunDir(self.run_dir)

    @property
    def name(self) -> str:
        """The run's name from its config, else the directory name."""
        name = (self.config or {}).get("name")
        return str(name) if name else self.run_dir.resolve().name

    @property
    def specs(self) -> tuple[MetricSpec, ...]:
        """The metric specs of the run's recipe, its task's, the loop's and the callbacks'."""
        task = run_metrics(self.task if self.task in TASKS else self.task_type)
        return merge(self.recipe_specs, task)

    @property
    def task_type(self) -> str | None:
        """The kind of evaluation the files hold (a registered task name) or None, from the
        first file that says: ``evaluation.json``, ``data.json``, then the run's task."""
        for source in (self.evaluation, self.data):
            if source and source.get("task_type") in TASKS:
                return source["task_type"]
        if self.task in TASKS:
            return self.task
        if self.predictions is not None:
            return "classification" if "y_prob" in self.predictions else None
        return None


def load_run(run_dir: str | Path | RunDir) -> RunFiles:
    """Read every known file of ``run_dir``.

    Raises:
        CheckpointError: ``run_dir`` is not a directory, or one of its files is corrupt.
    """
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not rd.path.is_dir():
        raise CheckpointError(f"{rd.path}: not a run directory (it does not exist)")
    run = RunFiles(run_dir=rd.path, modified=rd.modified())
    run.config = rd.config_dict()
    run.manifest = rd.manifest()
    run.task = rd.task
    run.history = rd.history()
    run.metrics = rd.metrics()
    run.evaluation = rd.evaluation()
    run.data = rd.read_json(DATA)
    run.predictions = rd.predictions()
    run.model_text = rd.model_text()
    if run.evaluation is not None:
        _check_evaluation(rd.evaluation_path, run.evaluation)
    return run


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` picture archive a task saved into the run directory (e.g.
    ``vae_pictures.npz``), or {} when it is missing or damaged: unlike the run's own files it
    only feeds pictures, so a bad one costs its sections, not the report."""
    path = Path(path)
    return RunDir(path.parent).read_npz(path.name)


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
