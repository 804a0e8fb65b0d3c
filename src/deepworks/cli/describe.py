"""``deepworks describe NAME [--kind KIND]``: what a registered component is and its options."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from deepworks.cli import app, out

# Where a component of each registry is named, shown under its description.
USE = {
    "models": "model: {{name: {name}, ...}}",
    "datasets": "data: {{name: {name}, ...}}",
    "tasks": "task: {{name: {name}, ...}}",
    "losses": "train.loss: {{name: {name}, ...}}",
    "optimizers": "train.optimizer: {{name: {name}, lr: ..., ...}}",
    "schedulers": "train.scheduler: {{name: {name}, ...}}",
    "callbacks": "train.callbacks: [{{name: {name}, ...}}]",
    "augmentations": "train.augment: [{{name: {name}, ...}}]",
    "attacks": "deepworks attack RUN --method {name}",
    "explainers": "deepworks explain RUN --method {name}",
}
NOTES = {
    "models": "Sizes the data gives (in_features, in_channels, image_size, num_classes, a text "
    "dataset's vocab_size and pad_id, ...) are filled in when the config leaves them out.",
    "datasets": "The data section's own keys (split, scale, imbalance, classes, ...) are in the "
    "config reference.",
}


def sections() -> dict:
    """The config section that names a component of each registry (for its defaults)."""
    from deepworks.config import DataConfig, LossConfig, OptimizerConfig

    return {"datasets": DataConfig, "optimizers": OptimizerConfig, "losses": LossConfig}


def options_table(options, title: str | None = "options") -> Table:
    """Options (:class:`deepworks.options.Option`) as a rich table: name, type, default, meaning."""
    table = Table(title=title, title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("type")
    table.add_column("default")
    table.add_column("meaning", ratio=1)
    for option in options:
        cells = (option.name, option.type, option.default, option.meaning)
        table.add_row(*(Text(cell) for cell in cells))
    return table


def print_component(doc) -> None:
    """A :class:`deepworks.options.Component`: name, kind, description, text, options."""
    kind = doc.kind.removesuffix("s")
    out.print(f"[bold]{doc.name}[/bold] ({kind})")
    if doc.summary:
        out.print(doc.summary, markup=False)
    if doc.text:
        out.print()
        out.print(doc.text.replace("``", "`"), markup=False)
    if doc.kind in USE:
        out.print()
        out.print(f"use: {USE[doc.kind].format(name=doc.name)}", markup=False)
    out.print()
    if doc.options:
        out.print(options_table(doc.options))
    else:
        out.print("options: none")
    if doc.kind in NOTES and doc.options:
        out.print(NOTES[doc.kind], markup=False)


def registry_kind(kind: str) -> str:
    """``--kind`` as a registry name: ``models`` (``model`` works too)."""
    from deepworks.errors import ConfigError, unknown_choice
    from deepworks.registry import REGISTRIES

    if kind not in REGISTRIES and f"{kind}s" in REGISTRIES:
        kind = f"{kind}s"
    if kind not in REGISTRIES:
        raise ConfigError(unknown_choice("a registry", kind, REGISTRIES, "--kind"))
    return kind


@app.command()
def describe(
    name: str = typer.Argument(..., help="A registered name: a model, dataset, task, loss, ..."),
    kind: str = typer.Option(
        None,
        "--kind",
        "-k",
        help="The registry to look in when a name is in two (models, datasets, tasks, ...)",
    ),
) -> None:
    """Describe a registered component: what it is, and its options with types and defaults."""
    from deepworks.errors import ConfigError, unknown_choice
    from deepworks.options import component, kinds_of
    from deepworks.registry import REGISTRIES

    if kind is not None:
        kind = registry_kind(kind)
        REGISTRIES[kind].get(name, where="deepworks describe")  # one line if it is not there
        kinds = [kind]
    else:
        kinds = kinds_of(name)
        if not kinds:
            every = {n for registry in REGISTRIES.values() for n in registry.names()}
            message = unknown_choice("a registered name", name, every, "deepworks describe")
            raise ConfigError(message.split(" (choices:")[0] + " (see: deepworks list KIND)")
    for i, found in enumerate(kinds):
        if i:
            out.print()
        print_component(component(found, name, sections().get(found)))


def print_entries(kind: str) -> None:
    """Every entry of the registry ``kind`` with its description and options."""
    from deepworks.options import component
    from deepworks.registry import REGISTRIES

    section = sections().get(kind)
    for i, name in enumerate(REGISTRIES[kind].names()):
        doc = component(kind, name, section)
        if i:
            out.print()
        out.print(Text.assemble((name, "bold"), f": {doc.summary}"))
        if doc.options:
            out.print(options_table(doc.options, title=None))
