"""The launcher behind ``deepworks train`` and ``dw.train``, the same for every recipe.

It reads the config, lets the recipe named by its ``recipe:`` key (``supervised`` by default)
validate it against its own schema, makes the run directory (or reopens it for ``--resume``),
records the run in ``run.json`` (recipe, task, versions, command line, times, status: running /
finished / failed / interrupted), runs the recipe's outer loop and writes the report.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from deepworks.config import dump_config, read_config
from deepworks.errors import ConfigError
from deepworks.recipes.base import Recipe, RunContext, RunResult
from deepworks.registry import RECIPES
from deepworks.rundir import CONFIG, RunDir


def train(
    config: str | Path | dict[str, Any] | Any | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool | None = None,
    resume: str | Path | None = None,
    warn: Any = None,
    callbacks: list[Any] | None = None,
    info: Any = None,
) -> RunResult:
    """Run a config through its recipe: a run directory with metrics, ``run.json`` and a report.

    Args:
        config: A YAML path, a dict or a config object (not needed with ``resume``).
        overrides: ``["train.epochs=5"]`` or ``{"train.epochs": 5}``.
        out: Parent folder of the run directory (default: the config's ``out``).
        progress: Show progress bars (default: the config's own setting).
        resume: A run directory to continue from its saved state (its config, with
            ``overrides`` applied, e.g. ``train.epochs=80`` to train longer).
        warn: Called with one line per warning (e.g. a checkpoint skipped on resume).
        callbacks: Callback objects added to the configured ones (e.g. a ``Profiler``).
        info: Called with one line per expected step worth telling (e.g. a pretraining stage).

    Example:
        >>> run = train("examples/digits_mlp.yaml", overrides={"train.epochs": 5})
        >>> run.metrics["test/accuracy"], run.dir
    """
    if resume is not None and config is not None:
        raise ConfigError("give a config or --resume RUN, not both (a run keeps its config)")
    if resume is None and config is None:
        raise ConfigError("no config given: pass a YAML run config, or --resume RUN")
    rundir = RunDir.open(resume) if resume is not None else None
    source = rundir.config_path if rundir is not None else config
    recipe, cfg = load_config(source, overrides)
    context = RunContext(
        resume=rundir is not None,
        progress=progress,
        warn=warn,
        info=info,
        callbacks=list(callbacks or []),
    )
    if rundir is not None:
        recipe.check_resume(cfg, rundir.path, context)  # before anything is written
    else:
        if out is not None:
            cfg.out = str(out)
        made_out = not Path(cfg.out).exists()
        rundir = RunDir.create(cfg.out, cfg.name)
    rundir.write_text(CONFIG, dump_config(cfg))
    rundir.write_manifest(recipe=cfg.recipe, task=_task_name(cfg), resumed=context.resume)
    try:
        result = recipe.run(cfg, rundir.path, context)
    except BaseException as exc:
        if rundir.path.is_dir():
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            rundir.update_manifest(status=_status(exc), error=error, files=_written(rundir))
        elif not context.resume and made_out:  # the recipe removed a run that never started
            with contextlib.suppress(OSError):
                rundir.path.parent.rmdir()  # and the output folder made for it, if still empty
        raise
    _write_report(rundir.path, recipe)
    rundir.update_manifest(
        status="finished", stop_reason=result.stop_reason, error=None, files=_written(rundir)
    )
    return result


def load_config(
    source: str | Path | dict[str, Any] | Any,
    overrides: list[str] | dict[str, Any] | None = None,
) -> tuple[Recipe, Any]:
    """(the recipe the config names, the config validated against that recipe's schema)."""
    raw, where, sources = read_config(source, overrides)
    recipe = RECIPES.build(raw.get("recipe", "supervised"), where=f"{where}: recipe")
    return recipe, recipe.load_config(raw, where, sources)


def _written(rundir: RunDir) -> dict[str, str]:
    """The run's own files not yet recorded in run.json: written by this command."""
    recorded = (rundir.manifest() or {}).get("files") or {}
    return {name: "train" for name in rundir.modified() if name not in recorded}


def _task_name(cfg: Any) -> str | None:
    task = getattr(cfg, "task", None)
    return getattr(task, "name", None) or cfg.recipe


def _status(exc: BaseException) -> str:
    """run.json's status for a run that raised ``exc``."""
    if isinstance(exc, KeyboardInterrupt) or getattr(exc, "exit_code", None) == 3:
        return "interrupted"
    return "failed"


def _write_report(run_dir: Path, recipe: Recipe) -> None:
    from deepworks.report import write_report

    write_report(run_dir, extra=recipe.report_sections(run_dir), specs=recipe.metrics)
