"""``deepworks describe NAME`` and ``deepworks list KIND --verbose``: options from the source.

The options of every component come from its signature (name, type, default) and its docstring's
``Args:`` section (meaning); these tests hold every registered model and dataset to documenting
each option, so a new one without docs fails here.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
from pydantic import Field

import deepworks  # noqa: F401  (registers every component)
from deepworks.config import RunConfig, TrainConfig
from deepworks.options import (
    component,
    describe_type,
    factory_options,
    format_default,
    parse_args,
    schema_options,
)
from deepworks.registry import REGISTRIES


def rows(stdout: str) -> dict[str, list[str]]:
    """{name: [type, default, meaning]} of the rows of a rich table printed by the CLI."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 6 and cells[1]:
            found[cells[1]] = cells[2:5]
    return found


# --- every model and dataset documents every option ----------------------------------------

DOCUMENTED = [
    (kind, name)
    for kind in ("models", "datasets", "optimizers", "schedulers")
    for name in REGISTRIES[kind].names()
]


@pytest.mark.parametrize(("kind", "name"), DOCUMENTED, ids=[f"{k}:{n}" for k, n in DOCUMENTED])
def test_every_option_has_a_meaning(kind, name):
    doc = component(kind, name)
    assert doc.summary, f"{kind} {name!r} has no one-line docstring"
    missing = [o.name for o in doc.options if not o.meaning]
    assert not missing, (
        f"{kind} {name!r} ({doc.factory.__module__}): add an Args: entry to its docstring for "
        f"{', '.join(missing)}"
    )
    assert all(o.type for o in doc.options), [o for o in doc.options if not o.type]


EVERY = [(kind, name) for kind, registry in REGISTRIES.items() for name in registry.names()]


@pytest.mark.parametrize(("kind", "name"), EVERY, ids=[f"{k}:{n}" for k, n in EVERY])
def test_every_component_can_be_described(kind, name):
    doc = component(kind, name)
    assert doc.summary, f"{kind} {name!r} has no one-line docstring"
    assert all(o.name and o.default for o in doc.options)


def test_every_config_field_has_a_meaning():
    from deepworks.options import nested_models

    todo, seen = [RunConfig], set()
    while todo:
        schema = todo.pop()
        if schema in seen:
            continue
        seen.add(schema)
        missing = [o.name for o in schema_options(schema) if not o.meaning]
        assert not missing, f"{schema.__name__}: describe {missing}"
        todo += nested_models(schema).values()
    assert TrainConfig in seen


# --- the options module --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "text"),
    [
        (int | None, "int | None"),
        (list[int], "list[int]"),
        (typing.Literal["a", "b"], "a|b"),
        (typing.Literal["a", "b"] | None, "a|b | None"),
        (typing.Sequence[int], "list[int]"),
        (tuple[float, float], "tuple[float, float]"),
        (dict[str, float], "dict[str, float]"),
        (typing.Optional[str], "str | None"),  # noqa: UP045  (the old spelling reads the same)
        (typing.Any, "any"),
        (Path, "Path"),
        (typing.Annotated[float, Field(ge=0.0, lt=1.0)], "float in [0, 1)"),
        (typing.Annotated[int, Field(ge=1)], "int >= 1"),
        (typing.Annotated[float, Field(gt=0.0)] | None, "float > 0 | None"),
    ],
)
def test_describe_type(annotation, text):
    assert describe_type(annotation) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "null"), (True, "true"), ((128, 64), "[128, 64]"), ("relu", "relu"), (",", '","')],
)
def test_format_default(value, text):
    assert format_default(value) == text


def test_parse_args_reads_google_style_sections():
    doc = """Summary line.

    Args:
        alpha: First line
            continued here.
        beta (int): Typed, with ``code``.
        **kwargs: Passed on.

    Returns:
        Nothing: not an argument.
    """
    assert parse_args(doc) == {
        "alpha": "First line continued here.",
        "beta": "Typed, with `code`.",
        "kwargs": "Passed on.",
    }


class Base:
    """A base.

    Args:
        width: How wide.
        depth: How deep.
    """

    def __init__(self, width: int = 4, depth: int = 2):
        self.width, self.depth = width, depth


class Child(Base):
    """A child that passes its other options on.

    Args:
        name: Its own option.
    """

    def __init__(self, name: str = "c", **kwargs):
        super().__init__(**kwargs)


def test_kwargs_are_followed_to_the_parent():
    options = {o.name: o for o in factory_options(Child)}
    assert list(options) == ["name", "width", "depth"]
    assert options["width"].meaning == "How wide."
    assert (options["depth"].type, options["depth"].default) == ("int", "2")
    assert options["name"].meaning == "Its own option."


def test_schema_options_use_descriptions_and_comments():
    options = {o.name: o for o in schema_options(TrainConfig)}
    assert options["epochs"].default == "20"
    assert options["epochs"].meaning
    assert options["precision"].type == "auto|fp32|bf16|fp16"
    assert "backbone" in options["backbone_lr"].meaning.lower()
    assert options["optimizer"].type == "OptimizerConfig"


def test_options_module_is_a_low_layer():
    """deepworks.options sits beside the registry: it imports errors and registry only."""
    import deepworks.options as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    ours = {m for m in imported if m.split(".")[0] == "deepworks"}
    assert ours <= {"deepworks.errors", "deepworks.registry"}, ours


# --- the CLI -------------------------------------------------------------------------------


def test_describe_series_csv(cli):
    result = cli("describe", "series_csv")
    assert result.rc == 0, str(result)
    assert "(dataset)" in result.stdout
    assert "time column" in result.stdout  # the one-line description
    table = rows(result.stdout)
    expected = {
        "time": ("str | None", "null"),
        "target": ("str", "required"),
        "columns": ("list[str] | None", "null"),
        "window": ("int | None", "null"),
        "horizon": ("int", "1"),
        "season": ("int", "1"),
        "test_steps": ("int | None", "null"),
        "val_steps": ("int | None", "null"),
    }
    for name, (type_, default) in expected.items():
        assert name in table, f"no row {name!r}\n{result}"
        shown, shown_default, meaning = table[name]
        # a range may follow the type (``int >= 1 | None``)
        base, optional = type_.removesuffix(" | None"), type_.endswith(" | None")
        assert shown.startswith(base) and shown.endswith(" | None") == optional, (name, shown)
        assert shown_default == default, (name, shown_default)
        assert meaning, f"{name} has no meaning"


def test_describe_npz_and_image_folder(cli):
    npz = rows(cli("describe", "npz").stdout)
    assert npz["y_key"][1] == "y" and npz["y_key"][2]
    folder = rows(cli("describe", "image_folder").stdout)
    assert {"path", "image_size", "grayscale", "lazy"} <= set(folder)


def test_describe_unknown_name_is_one_line(cli):
    result = cli("describe", "seris_csv")
    assert result.rc == 2, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("error: ")
    assert "did you mean 'series_csv'?" in lines[0]
    assert "Traceback" not in result.output


def test_describe_kind_picks_one_registry(cli):
    both = cli("describe", "vae")
    assert both.rc == 0, str(both)
    assert "vae (model)" in both.stdout and "vae (task)" in both.stdout
    task = cli("describe", "vae", "--kind", "tasks")
    assert "vae (task)" in task.stdout and "(model)" not in task.stdout
    assert "beta" in rows(task.stdout)
    bad = cli("describe", "vae", "--kind", "modles")
    assert bad.rc == 2 and "did you mean 'models'?" in bad.stderr, str(bad)
    missing = cli("describe", "adamm", "--kind", "optimizers")
    assert missing.rc == 2 and "did you mean 'adam'?" in missing.stderr, str(missing)


def test_describe_fills_section_defaults(cli):
    table = rows(cli("describe", "adam").stdout)
    assert table["lr"][1] == "0.001"  # train.optimizer.lr's default, not "required"
    assert "params" not in table  # passed in by the framework


def test_list_verbose_shows_options(cli):
    plain = cli("list", "datasets")
    verbose = cli("list", "datasets", "--verbose")
    assert verbose.rc == 0, str(verbose)
    assert "test_steps" not in plain.stdout
    for needle in ("series_csv", "test_steps", "y_key", "image_size", "as_image"):
        assert needle in verbose.stdout, needle
    assert cli("list", "models", "-v").stdout.count("in_features") > 5
