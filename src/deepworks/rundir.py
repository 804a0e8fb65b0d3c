"""A run is a directory, with a written contract: this module owns its file names and reads it.

``deepworks train`` makes a run directory; every later command (``evaluate``, ``predict``,
``explain``, ``attack``, ``audit``, ``embed``, ``sample``, the report, ``train --resume``) takes
it through :meth:`RunDir.open`, which checks the folder is a run and gives one-line errors, and
reads its files through the ``RunDir`` methods. No other module spells these file names.

========================  ================  ==================================================
file                      written by        what it holds
========================  ================  ==================================================
``run.json``              every command     the manifest: recipe, task, deepworks / torch /
                          that writes       Python versions, command line, start and end
                                            times, status, which command wrote which file
``config.yaml``           train             the resolved config (sizes inferred from the data)
``data.json``             train             the data: shapes, classes, scaler, feature names
``model.txt``             train             the model as printed, with its parameter count
``history.csv`` / .json   train             one row per epoch (``epoch``, ``train/loss``, ...)
``metrics.json``          train             flat final metrics (``test/accuracy``, ...)
``evaluation.json``       train             details of the test split (confusion matrix, ...)
``predictions.npz``       train             test predictions (``y_true``, ``y_pred``, ...)
``task.json``             train             what ``predict`` needs of the task (scaling, ...)
``checkpoints/``          train             ``step-*/`` checkpoints, ``best`` and ``last``
``report.html``           train, attack     the report (:mod:`deepworks.report`)
pictures                  train             ``feature_maps.npz``, ``attention.npz``,
                                            ``reconstructions.npz``, ``vae_pictures.npz``,
                                            ``rbm.npz``, ``robustness.json``, ``samples/``
``explain/<name>/``       explain           attributions, sanity checks, visualizations
``attacks/<method>/``     attack            ``results.json``, ``results.csv``, examples
``audit/``                audit             ``audit.html``, ``audit.json``
``profile/``              train --profile   the profiler's trace
``pretrain/``             train             layer-wise pretraining stages (DBN)
``pretrained/``           train             the run ``model.pretrained: x.yaml`` trained first
========================  ================  ==================================================

The manifest API: the command that makes a run calls :meth:`RunDir.write_manifest` (status
``running``), and :meth:`RunDir.update_manifest` when it ends (``finished``, ``failed``,
``interrupted``) or writes files; a later command that writes into the run calls
:meth:`RunDir.record`. Every write of ``run.json`` is atomic (a reader sees the old manifest or
the new one) and holds a lock on the directory while it reads, changes and replaces it::

    {"format": 1, "recipe": "supervised", "task": "classification",
     "versions": {"deepworks": "0.1.0", "torch": "2.13.0", "python": "3.12.3"},
     "argv": ["deepworks", "train", "examples/digits_mlp.yaml"], "command": "train",
     "started": "2025-01-01T12:00:00+00:00", "ended": "2025-01-01T12:01:00+00:00",
     "status": "finished",
     "files": {"config.yaml": "train", "metrics.json": "train",
               "explain/ig/overlay.png": "explain"},
     "commands": [{"command": "explain", "argv": [...], "at": "...",
                   "files": ["explain/ig/overlay.png", ...]}]}

The task of a run comes from the manifest; runs older than ``run.json`` fall back to
``config.yaml``'s ``task.name``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import sys
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from deepworks.errors import CheckpointError

if TYPE_CHECKING:
    import numpy as np

    from deepworks.config import RunConfig

# --- the file names of a run directory ------------------------------------------------------
MANIFEST = "run.json"
CONFIG = "config.yaml"
DATA = "data.json"
MODEL_TEXT = "model.txt"
HISTORY = "history"  # the stem of history.csv and history.json
HISTORY_CSV = f"{HISTORY}.csv"
HISTORY_JSON = f"{HISTORY}.json"
METRICS = "metrics.json"
EVALUATION = "evaluation.json"
PREDICTIONS = "predictions.npz"
TASK_STATE = "task.json"
CHECKPOINTS = "checkpoints"
REPORT = "report.html"
# pictures the report draws, written once training is done
FEATURE_MAPS = "feature_maps.npz"
ATTENTION = "attention.npz"
RECONSTRUCTIONS = "reconstructions.npz"
VAE_PICTURES = "vae_pictures.npz"
RBM_PICTURES = "rbm.npz"
ROBUSTNESS = "robustness.json"
RL_VALUES = "rl_values.npz"  # a tabular agent's values and greedy policy
SAMPLES = "samples"
# folders of later commands
EXPLAIN = "explain"
ATTACKS = "attacks"
AUDIT = "audit"
PROFILE = "profile"
PRETRAIN = "pretrain"
PRETRAINED = "pretrained"

#: Every file and folder name above, for ``RunDir.modified`` and the tests.
FILES = (
    MANIFEST, CONFIG, DATA, MODEL_TEXT, HISTORY_CSV, HISTORY_JSON, METRICS, EVALUATION,
    PREDICTIONS, TASK_STATE, CHECKPOINTS, REPORT, FEATURE_MAPS, ATTENTION, RECONSTRUCTIONS,
    VAE_PICTURES, RBM_PICTURES, ROBUSTNESS, RL_VALUES, SAMPLES, EXPLAIN, ATTACKS, AUDIT, PROFILE,
    PRETRAIN, PRETRAINED,
)  # fmt: skip

FORMAT = 1
STATUSES = ("running", "finished", "failed", "interrupted")


def versions() -> dict[str, str | None]:
    """Versions of deepworks, torch and Python, read without importing torch."""
    out: dict[str, str | None] = {}
    for package in ("deepworks", "torch"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    out["python"] = platform.python_version()
    return out


def now() -> str:
    """The current time, ISO 8601 in UTC to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """A run directory: the paths of its files, their readers, and the ``run.json`` manifest.

    ``RunDir(path)`` only names the folder; :meth:`open` also checks that it is a run.

    Example:
        >>> run = RunDir.open("runs/digits_mlp")
        >>> run.task, run.config().model.name, run.checkpoint("best")
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | os.PathLike | RunDir) -> RunDir:
        """The run directory at ``path``; a one-line CheckpointError when there is no such
        folder or it is not a run (no ``config.yaml``)."""
        run = path if isinstance(path, RunDir) else cls(path)
        if not run.path.is_dir():
            raise CheckpointError(
                f"{run.path}: no such run directory; pass a folder made by deepworks train"
            )
        if not run.config_path.is_file():
            raise CheckpointError(f"{run.path}: not a run directory (no {CONFIG})")
        return run

    @classmethod
    def create(cls, out: str | os.PathLike, name: str) -> RunDir:
        """A new, empty run directory ``out/name`` (``name-2``, ... when taken)."""
        from deepworks.utils import new_run_dir

        return cls(new_run_dir(out, name))

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    # --- paths ------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def data_path(self) -> Path:
        return self.path / DATA

    @property
    def model_text_path(self) -> Path:
        return self.path / MODEL_TEXT

    @property
    def history_csv_path(self) -> Path:
        return self.path / HISTORY_CSV

    @property
    def history_json_path(self) -> Path:
        return self.path / HISTORY_JSON

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def evaluation_path(self) -> Path:
        return self.path / EVALUATION

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def task_state_path(self) -> Path:
        return self.path / TASK_STATE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    @property
    def samples_dir(self) -> Path:
        return self.path / SAMPLES

    @property
    def audit_dir(self) -> Path:
        return self.path / AUDIT

    @property
    def profile_dir(self) -> Path:
        return self.path / PROFILE

    @property
    def pretrain_dir(self) -> Path:
        return self.path / PRETRAIN

    @property
    def pretrained_dir(self) -> Path:
        return self.path / PRETRAINED

    def explain_dir(self, name: str) -> Path:
        return self.path / EXPLAIN / name

    def attacks_dir(self, method: str | None = None) -> Path:
        return self.path / ATTACKS if method is None else self.path / ATTACKS / method

    def checkpoint(self, which: str = "best") -> Path:
        """``checkpoints/<which>`` (``best`` falls back to ``last``), or a one-line error."""
        for name in dict.fromkeys((which, "last")):
            path = self.checkpoints / name
            if path.is_dir():
                return path
        raise CheckpointError(
            f"{self.path}: the run has no checkpoints; it did not finish an epoch"
        )

    def modified(self) -> dict[str, float]:
        """{file name: modification time} of the run's own files that exist."""
        out = {}
        for name in FILES:
            path = self.path / name
            if path.is_file():
                out[name] = path.stat().st_mtime
        return out

    # --- reading ----------------------------------------------------------------------------
    def config(self) -> RunConfig:
        """``config.yaml`` of a supervised run, validated: one-line errors for a missing,
        malformed or invalid file, or a run of another recipe (which this schema cannot read)."""
        from deepworks.config import RunConfig, read_yaml, validate

        run = RunDir.open(self)
        raw = read_yaml(run.config_path)
        recipe = raw.get("recipe", "supervised")
        if recipe != "supervised":
            raise CheckpointError(
                f"{run.path}: a run of the {recipe!r} recipe; this command reads supervised runs "
                "(data, model, task), so it does not apply here"
            )
        return validate(RunConfig, raw, str(run.config_path))

    def config_dict(self) -> dict[str, Any] | None:
        """``config.yaml`` as a plain mapping, unvalidated (None when missing)."""
        return self.read_yaml(CONFIG)

    def manifest(self) -> dict[str, Any] | None:
        """``run.json`` (None for runs made before it existed)."""
        return self.read_json(MANIFEST)

    @property
    def task(self) -> str | None:
        """The run's task: the manifest's, else ``config.yaml``'s ``task.name``."""
        manifest = self.read_json(MANIFEST)
        if manifest and isinstance(manifest.get("task"), str):
            return manifest["task"]
        config = self.read_yaml(CONFIG) or {}
        task = config.get("task")
        name = task.get("name") if isinstance(task, dict) else task
        if name is None and config:
            return "classification"  # the config schema's default task
        return str(name) if name is not None else None

    def data_info(self) -> dict[str, Any]:
        """``data.json`` (shapes, classes, scaler, ...) or {} when the run has none."""
        return self.read_json(DATA) or {}

    def metrics(self) -> dict[str, Any] | None:
        return self.read_json(METRICS)

    def evaluation(self) -> dict[str, Any] | None:
        return self.read_json(EVALUATION)

    def task_state(self) -> dict[str, Any]:
        """``task.json`` (what ``predict`` needs of the task) or {}."""
        return self.read_json(TASK_STATE) or {}

    def model_text(self) -> str | None:
        path = self.model_text_path
        return self.read_text(MODEL_TEXT) if path.is_file() else None

    def history(self) -> list[dict[str, float | None]] | None:
        """Rows of ``history.csv`` as floats (empty cells: None), or None when missing."""
        path = self.history_csv_path
        if not path.is_file():
            return None
        try:
            raw = list(csv.DictReader(self.read_text(HISTORY_CSV).splitlines()))
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

    def predictions(self) -> dict[str, np.ndarray] | None:
        """The arrays of ``predictions.npz`` (each with one row per sample), or None."""
        import numpy as np

        path = self.predictions_path
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

    def read_text(self, name: str) -> str:
        """The UTF-8 text of the run's file ``name``; one-line errors."""
        path = self.path / name
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            reason = f"{exc.reason} at byte {exc.start}"
            raise CheckpointError(f"{path}: not UTF-8 text ({reason})") from exc
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot be read ({exc.strerror})") from exc

    def read_json(self, name: str) -> dict[str, Any] | None:
        """The JSON object in the run's file ``name`` (None when missing); one-line errors."""
        path = self.path / name
        if not path.is_file():
            return None
        try:
            value = json.loads(self.read_text(name))
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            raise CheckpointError(f"{path}: not valid JSON: {exc.msg} ({where})") from exc
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: expected a JSON object, got {type(value).__name__}")
        return value

    def read_yaml(self, name: str) -> dict[str, Any] | None:
        """The YAML mapping in the run's file ``name`` (None when missing); one-line errors."""
        path = self.path / name
        if not path.is_file():
            return None
        try:
            value = yaml.safe_load(self.read_text(name))
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

    # --- writing ----------------------------------------------------------------------------
    def write_text(self, name: str, text: str, command: str | None = None) -> Path:
        """Write the run's file ``name`` atomically; ``command`` records it in the manifest."""
        return self.write_bytes(name, text.encode(), command)

    def write_json(self, name: str, obj: Any, command: str | None = None) -> Path:
        """Write ``obj`` as indented JSON (numpy scalars as floats) atomically."""
        return self.write_text(name, json.dumps(obj, indent=1, default=float), command)

    def write_history(
        self, rows: list[dict[str, Any]], command: str | None = None, stem: str = HISTORY
    ) -> None:
        """Write one row per epoch (or round) to ``history.csv`` and ``history.json`` (another
        ``stem``: ``<stem>.csv`` / ``.json``)."""
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self.write_text(f"{stem}.csv", buf.getvalue(), command)
        self.write_text(f"{stem}.json", json.dumps(rows, indent=1), command)

    def write_npz(self, name: str, arrays: dict[str, Any], command: str | None = None) -> Path:
        """Write numpy arrays as a compressed ``.npz`` archive, atomically."""
        import numpy as np

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return self.write_bytes(name, buf.getvalue(), command)

    def read_npz(self, name: str) -> dict[str, Any]:
        """The arrays of the run's ``.npz`` file ``name``, or {} when missing or damaged (such
        files feed pictures: a bad one costs its section, not the report)."""
        import numpy as np

        path = self.path / name
        if not path.is_file():
            return {}
        try:
            loaded = np.load(path, allow_pickle=False)
            if not hasattr(loaded, "files"):  # a bare .npy array, not an archive
                return {}
            with loaded as npz:
                return {key: npz[key] for key in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return {}

    def write_bytes(self, name: str, data: bytes, command: str | None = None) -> Path:
        from deepworks.utils import atomic_write_bytes  # utils imports torch; reading needs none

        path = self.path / name
        atomic_write_bytes(path, data)
        if command is not None:
            self.update_manifest(files={name: command})
        return path

    # --- the manifest -----------------------------------------------------------------------
    def write_manifest(
        self,
        *,
        task: str,
        recipe: str = "supervised",
        command: str = "train",
        status: str = "running",
        argv: list[str] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Start the manifest of a new run (or of a resumed one: its files and history are
        kept), recording versions, the command line and the start time. Returns it."""
        _check_status(status)
        with self._locked():
            old = self._read_manifest() or {}
            manifest = {
                "format": FORMAT,
                "recipe": recipe,
                "task": task,
                "versions": versions(),
                "argv": list(sys.argv if argv is None else argv),
                "command": command,
                "started": now(),
                "ended": None,
                "status": status,
                "files": dict(old.get("files") or {}),
                "commands": list(old.get("commands") or []),
            }
            if old:  # a resumed run: the first start is kept
                manifest["first_started"] = old.get("first_started") or old.get("started")
            manifest |= fields
            self._write_manifest(manifest)
        return manifest

    def update_manifest(
        self,
        *,
        status: str | None = None,
        files: dict[str, str] | Iterable[tuple[str, str]] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Change the manifest: a new ``status`` (a final one also sets ``ended``), the files a
        command wrote (``{"metrics.json": "train"}``, paths relative to the run), or other fields.
        A run without a manifest (made before run.json) gets one. Returns it."""
        if status is not None:
            _check_status(status)
        with self._locked():
            manifest = self._read_manifest() or self._new_manifest()
            if status is not None:
                manifest["status"] = status
                if status != "running":
                    manifest["ended"] = now()
            manifest.setdefault("files", {}).update(dict(files or {}))
            manifest |= fields
            self._write_manifest(manifest)
        return manifest

    def record(
        self, command: str, paths: Iterable[str | os.PathLike], argv: list[str] | None = None
    ) -> dict[str, Any] | None:
        """Record that ``command`` (e.g. "explain") wrote ``paths`` into the run, with its command
        line and time. Paths outside the run directory are left out; nothing is written when
        none is inside. A damaged ``run.json`` is left as it is (with a warning)."""
        inside = {}
        root = self.path.resolve()
        for p in paths:
            path = Path(p) if Path(p).is_absolute() else Path.cwd() / p
            try:
                inside[path.resolve().relative_to(root).as_posix()] = command
            except ValueError:
                continue
        if not inside:
            return None
        try:
            with self._locked():
                manifest = self._read_manifest() or self._new_manifest()
                manifest.setdefault("files", {}).update(inside)
                entry = {"command": command, "argv": list(sys.argv if argv is None else argv)}
                entry |= {"at": now(), "files": sorted(inside)}
                manifest.setdefault("commands", []).append(entry)
                self._write_manifest(manifest)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; the files {command} wrote are not recorded", stacklevel=2)
            return None
        return manifest

    def _new_manifest(self) -> dict[str, Any]:
        """The manifest of a run made before run.json: what its other files tell."""
        return {
            "format": FORMAT,
            "recipe": "supervised",
            "task": self.task,
            "versions": None,  # unknown: the run is older than its manifest
            "argv": None,
            "command": None,
            "started": None,
            "ended": None,
            "status": "finished" if self.metrics_path.is_file() else None,
            "files": {},
            "commands": [],
        }

    def _read_manifest(self) -> dict[str, Any] | None:
        return self.read_json(MANIFEST)

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        from deepworks.utils import atomic_write_text

        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1, default=str) + "\n")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the run directory (POSIX), so that two commands updating
        the manifest at once do not lose each other's changes."""
        try:
            import fcntl
        except ImportError:  # not POSIX: atomic replacement only
            yield
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot be opened ({exc.strerror})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"run status {status!r}: choose {', '.join(STATUSES)}")
