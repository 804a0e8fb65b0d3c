"""The documentation site's sources: generated reference pages cover the code, guides name real
examples. (``make test`` also builds the site with ``mkdocs build --strict``.)"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import deepworks  # noqa: F401  (registers every component)
from deepworks.registry import REGISTRIES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("reference_hook", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_component_reference_lists_every_component(hook):
    page = hook.components_page()
    for kind, registry in REGISTRIES.items():
        assert f"## {kind} {{#{kind}}}" in page, kind
        for name in registry.names():
            assert f"### `{name}` {{#{kind}-{name}}}" in page, (kind, name)
    assert "| `test_steps` | int" in page


def test_config_reference_lists_every_key(hook):
    from deepworks.options import schema_options

    page = hook.config_page()
    for key, model in hook.config_sections():
        for option in schema_options(model):
            assert f"| `{option.name}` |" in page, (key, option.name)
    assert "## `train.optimizer`" in page


def test_cli_reference_has_every_command(hook):
    page = hook.cli_page()
    for command in ("train", "predict", "describe", "list", "checkpoint verify"):
        assert f"`deepworks {command}`" in page, command
    assert "--verbose" in page and "--kind" in page


def test_results_come_from_the_readme(hook):
    header, rows = hook.readme_results()
    assert header[0].startswith("| config |") and "examples/digits_mlp.yaml" in rows
    for page in DOCS.rglob("*.md"):
        for marker in re.findall(r"<!--\s*results:\s*(.*?)\s*-->", page.read_text()):
            for name in marker.split():
                assert name in rows, f"{page}: the README has no results row for {name}"


def test_guides_name_real_examples():
    for page in DOCS.rglob("*.md"):
        for name in set(re.findall(r"examples/([\w.-]+\.yaml)", page.read_text())):
            assert (ROOT / "examples" / name).is_file(), f"{page}: no examples/{name}"
