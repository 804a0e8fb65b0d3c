"""A fast start: ``deepworks --help``, ``--version`` and ``list`` import no torch, scikit-learn or
statsmodels; the commands and the registries load what they need when they run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import deepworks
from deepworks import catalog
from deepworks.registry import REGISTRIES

HEAVY = ("torch", "sklearn", "statsmodels", "matplotlib")


def heavy_after(*commands: list[str], code: str = "") -> dict:
    """Which heavy packages a fresh interpreter holds after running ``commands`` through the
    real entry point (and ``code``), with what they printed."""
    script = f"""
import contextlib, io, json, sys
from deepworks.cli import main
printed = []
for argv in {[list(c) for c in commands]!r}:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main(argv)
        except SystemExit as exc:
            assert not exc.code, (argv, exc.code)
    printed.append(buf.getvalue())
{code}
print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules], "printed": printed}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_help_version_and_list_import_nothing_heavy():
    got = heavy_after(["--help"], ["--version"], ["list", "models"], ["list", "attacks"])
    assert got["heavy"] == []
    help_text, version, models, attacks = got["printed"]
    assert "train" in help_text and "checkpoint" in help_text
    assert version.strip() == f"deepworks {deepworks.__version__}"
    assert "transformer_encoder" in models and "pgd" in attacks


def test_command_modules_import_torch_only_when_their_command_runs():
    code = "from deepworks import cli\nfor m, _ in cli.commands().values():\n"
    code += "    __import__('deepworks.cli.' + m)"
    assert heavy_after(code=code)["heavy"] == []


def test_a_command_that_needs_torch_imports_it():
    got = heavy_after(["list", "models", "--verbose"])
    assert "torch" in got["heavy"]


def test_import_deepworks_is_lazy_and_keeps_its_api():
    got = heavy_after(code="import deepworks")
    assert got["heavy"] == []
    import deepworks as dw
    from deepworks.evaluate.metrics import regression_metrics  # noqa: F401  (so are these two)
    from deepworks.train.trainer import Trainer  # binds the subpackage on the package

    for name in dw.__all__:
        assert getattr(dw, name) is not None, name
    assert callable(dw.train) and dw.train.__module__ == "deepworks.recipes.launch"  # still
    assert callable(dw.evaluate) and dw.evaluate.__module__ == "deepworks.run"
    assert dw.Trainer is Trainer
    assert dw.models.__name__ == "deepworks.models"
    with pytest.raises(AttributeError):
        dw.no_such_thing  # noqa: B018


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_the_listing_read_from_the_source_is_the_registry(kind):
    """``deepworks list`` reads names and descriptions with ast; after importing everything,
    the registries must hold exactly those."""
    registry = REGISTRIES[kind]
    ours = [  # not what a test registers (a toy recipe)
        (name, text)
        for name, text in registry.items()
        if registry.get(name).__module__.startswith("deepworks.")
    ]
    assert catalog.entries(kind) == ours


def test_help_lists_every_command_as_typer_registers_it():
    from typer.main import get_command

    from deepworks import cli

    for module, _ in cli.commands().values():
        __import__(f"deepworks.cli.{module}")
    real = get_command(cli.app).commands
    assert sorted(real) == sorted(cli.commands())
    for name, (_, text) in cli.commands().items():
        assert real[name].get_short_help_str(80) == cli.click.Command(
            name, help=text
        ).get_short_help_str(80)
