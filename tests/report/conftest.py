"""Fixtures: fake run directories of each kind the report has to handle, and their reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deepworks.report import write_report

from .fake_runs import make_classification_run, make_minimal_run, make_regression_run

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "images": lambda path: make_classification_run(path, images=True),
    "tabular": lambda path: make_classification_run(path, images=False),
    "regression": make_regression_run,
    "minimal": make_minimal_run,
}


@pytest.fixture(scope="session")
def report_of(tmp_path_factory) -> Callable[[str], tuple[Path, str]]:
    """``report_of(kind)`` -> (report path, html), built once per session for read-only tests."""
    cache: dict[str, tuple[Path, str]] = {}

    def build(kind: str) -> tuple[Path, str]:
        if kind not in cache:
            run = BUILDERS[kind](tmp_path_factory.mktemp(kind) / f"{kind}_run")
            path = write_report(run)
            assert path == run / "report.html"
            cache[kind] = (path, path.read_text(encoding="utf-8"))
        return cache[kind]

    return build


@pytest.fixture
def tabular_classification_run(tmp_path: Path) -> Path:
    """A fresh classification run without images, for tests that change its files."""
    return BUILDERS["tabular"](tmp_path / "digits_mlp")


@pytest.fixture
def minimal_run(tmp_path: Path) -> Path:
    """A fresh run with only config.yaml and metrics.json."""
    return BUILDERS["minimal"](tmp_path / "tiny")
