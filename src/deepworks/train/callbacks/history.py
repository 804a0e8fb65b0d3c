"""History logger: one row per epoch in ``history.csv`` and ``history.json`` of the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepworks.registry import register_callback
from deepworks.rundir import HISTORY, RunDir
from deepworks.train.callbacks.base import Callback


@register_callback("history")
class HistoryLogger(Callback):
    """Write every epoch's logs to CSV and JSON files in the run directory (rewritten atomically,
    so a crash never leaves half a file).

    Args:
        filename: Base name of the files (``history`` → history.csv, history.json).
    """

    order = 40  # after callbacks that add to the logs, before checkpoints save its rows

    def __init__(self, filename: str = HISTORY):
        self.filename = filename
        self.rows: list[dict[str, Any]] = []

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        self.rows.append(dict(logs))
        if trainer.run_dir is not None:
            self.write(Path(trainer.run_dir))

    def write(self, run_dir: Path) -> None:
        RunDir(run_dir).write_history(self.rows, stem=self.filename)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])
