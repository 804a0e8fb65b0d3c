"""What a recipe is: one kind of run, with its config schema, its outer loop and its metrics.

A recipe declares:

- ``config_class``: its pydantic schema, a :class:`~deepworks.config.RecipeConfig` (``name``,
  ``seed``, ``recipe``, ``out``) plus its own sections;
- ``run(config, run_dir, context) -> RunResult``: its outer loop (the Trainer over a task for
  ``supervised``; stepping environments, trials or federated rounds for others);
- ``metrics``: the specs of the metrics it emits besides its tasks' (direction, headline, label);
- ``report_sections(run_dir)``: HTML sections it adds to ``report.html``.

The launcher (:func:`deepworks.recipes.train`) does the rest once for every recipe: it reads the
config, picks the recipe by the config's ``recipe:`` key, makes (or reopens) the run directory,
keeps ``run.json`` (status, versions, command line, times), and writes the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deepworks.config import RecipeConfig, Sources, validate


@dataclass
class RunContext:
    """How the launcher was called: what a recipe's outer loop needs besides its config."""

    resume: bool = False  # the run directory exists: continue it from its own state
    progress: bool | None = None  # None: the config's own setting
    warn: Any = None  # called with one line per warning (default: ignore)
    info: Any = None  # called with one line per expected step worth telling
    callbacks: list[Any] = field(default_factory=list)  # extra Trainer callbacks

    def tell(self, line: str, warning: bool = False) -> None:
        target = self.warn if warning else self.info
        if target is not None:
            target(line)


@dataclass
class RunResult:
    """A finished run: its directory, config and flat metrics (plus what the recipe returns)."""

    dir: Path
    config: Any
    metrics: dict[str, float]
    model: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    fit: Any = None  # the supervised recipe's FitResult
    stop_reason: str = ""  # why the run ended early ("" when it ran its budget)


class Recipe:
    """Base recipe; subclasses set ``config_class`` and implement :meth:`run`."""

    config_class: ClassVar[type[RecipeConfig]] = RecipeConfig
    metrics: ClassVar[tuple] = ()

    def load_config(self, raw: dict[str, Any], where: str, sources: Sources) -> RecipeConfig:
        """Validate ``raw`` against the recipe's schema and check the components it names."""
        config = validate(self.config_class, raw, where, sources)
        self.check(config, raw, where, sources)
        return config

    def check(self, config: Any, raw: dict[str, Any], where: str, sources: Sources) -> None:
        """Check what the schema cannot (registered names, their arguments). Default: nothing."""

    def check_resume(self, config: Any, run_dir: Path, context: RunContext) -> None:
        """Refuse, before anything is written, a resume the saved state cannot continue."""

    def run(self, config: Any, run_dir: Path, context: RunContext) -> RunResult:
        """The outer loop: write the run's files into ``run_dir`` and return its metrics."""
        raise NotImplementedError

    def report_sections(self, run_dir: Path) -> list[str]:
        """HTML sections for the run's report, after the common ones. Default: none."""
        return []
