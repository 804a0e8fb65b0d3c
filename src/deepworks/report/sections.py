"""Report sections by registration: each report module says what it draws, and for which runs.

A module registers a function ``(run, split) -> [(anchor, title, html), ...]`` for the tasks
whose runs it draws (``tasks=("segmentation",)``), or for every run (no ``tasks``: it looks at
the run's files itself, e.g. the feature maps of any conv net)::

    @register_sections("segmentation", tasks=("segmentation",))
    def sections(run, split): ...

Adding a task's report is one registration. A run gets the sections of the most specific task
that has any: its own task, then the registered tasks its task class derives from (``trades`` is
a classification task), then the kind of evaluation its files hold (``evaluation.json``'s
``task_type``). Sections for every run follow, in ``order``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from deepworks.registry import TASKS, Registry
from deepworks.report.run_files import RunFiles

Sections = list[tuple[str, str, str]]
SectionsFn = Callable[[RunFiles, str], Sections]


@dataclass(frozen=True)
class ReportSections:
    """A registered section function and the runs it is for."""

    name: str
    draw: SectionsFn
    tasks: tuple[str, ...]  # () = every run
    order: int


SECTIONS = Registry("a report section")


def register_sections(
    name: str, tasks: tuple[str, ...] = (), order: int = 0
) -> Callable[[SectionsFn], SectionsFn]:
    """Register ``draw(run, split)`` under ``name``, for runs of ``tasks`` (() = every run);
    ``order`` sorts the sections of every run."""

    def decorator(draw: SectionsFn) -> SectionsFn:
        doc = inspect.getdoc(draw) or ""
        entry = ReportSections(name, draw, tuple(tasks), order)
        SECTIONS.register(name, doc.splitlines()[0] if doc else "")(entry)
        return draw

    return decorator


def entries() -> list[ReportSections]:
    """Every registered entry, once every module of the report package has been imported (a
    module registers itself when imported: nothing lists them)."""
    import importlib
    import pkgutil
    from pathlib import Path

    # this module's own folder: importing the package back would close an import circle
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{module.name}")
    return [SECTIONS.get(name) for name in SECTIONS.names()]


def task_kinds(run: RunFiles) -> Iterator[str]:
    """The names a run's sections are looked up by, most specific first."""
    if run.task in TASKS:
        yield run.task
        for cls in inspect.getmro(TASKS.get(run.task))[1:]:
            name = getattr(cls, "name", None)
            if isinstance(name, str) and name in TASKS and TASKS.get(name) is cls:
                yield name
    if run.task_type is not None:
        yield run.task_type


def sections_for(run: RunFiles, split: str) -> Sections:
    """The task's sections, then those of every run, each (anchor, title, html)."""
    registered = entries()
    own: list[ReportSections] = []
    for kind in task_kinds(run):
        own = sorted((e for e in registered if kind in e.tasks), key=lambda e: (e.order, e.name))
        if own:
            break
    common = sorted((e for e in registered if not e.tasks), key=lambda e: (e.order, e.name))
    return [section for entry in (*own, *common) for section in entry.draw(run, split)]
