"""Every example config trains through the real CLI with a tiny budget.

The examples are globbed, so a new ``examples/*.yaml`` is smoke-tested as soon as it is added.
They all start at once, two at a time (the CI machine has two cores and a run spends much of its
time drawing its single-threaded report); each test then checks one of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

import deepworks.recipes  # noqa: F401  (registers the recipes)
from deepworks.evaluate.specs import find, merge
from deepworks.registry import RECIPES, TASKS
from deepworks.rundir import RunDir
from deepworks.train.specs import run_metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
TINY = ["--set", "train.epochs=1", "--set", "train.batch_size=256", "-q"]
TINY_RL = ["--set", "train.steps=30", "--set", "train.log_every=10"]
TINY_RL += ["--set", "train.eval_episodes=3", "-q"]
PARALLEL = max(1, min(2, os.cpu_count() or 1))
KNOWN_BUGS: dict[str, str] = {}  # example stem -> "file:line bug; fix", marked xfail


def config_of(example: Path) -> dict:
    return yaml.safe_load(example.read_text()) or {}


def tiny_extra(example: Path) -> list[str]:
    """More overrides that keep an example tiny: fewer samples for generated datasets."""
    data = config_of(example).get("data") or {}
    extra = []
    if isinstance(data.get("n"), int) and data["n"] > 300:
        extra += ["--set", "data.n=300"]
    if isinstance(data.get("max_chars"), int) and data["max_chars"] > 100_000:
        extra += ["--set", "data.max_chars=100000"]
    if isinstance(data.get("n_per_class"), int) and data["n_per_class"] > 20:
        extra += ["--set", "data.n_per_class=20"]
    if data.get("stateful"):  # the stateful layout's streams follow the batch size
        extra += ["--set", "data.batch_size=256"]
    model = config_of(example).get("model") or {}
    if isinstance(model.get("pretrain_epochs"), int) and model["pretrain_epochs"] > 1:
        extra += ["--set", "model.pretrain_epochs=1"]  # a DBN's RBM stages
    return extra


def pretrained_example(example: Path) -> str | None:
    """The stem of the example that ``model.pretrained`` names, if it is one."""
    source = (config_of(example).get("model") or {}).get("pretrained")
    if isinstance(source, str) and source.endswith((".yaml", ".yml")):
        for path in ((ROOT / source).resolve(), (example.parent / source).resolve()):
            if path in EXAMPLES:
                return path.stem
    return None


@pytest.fixture(scope="module")
def example_runs(cli, tmp_path_factory) -> dict[str, tuple[object, Path]]:
    """{example stem: (CLI result, its --out folder)} for every example, trained tiny.

    Run from the repository root, as the examples say. An example fine-tuning another example
    (``model.pretrained: examples/x.yaml``) gets the tiny run of x instead, so that its
    pretraining stage is tiny too.
    """
    root = tmp_path_factory.mktemp("examples")
    # examples others start from go first
    queue = sorted(EXAMPLES, key=lambda e: pretrained_example(e) is not None)
    running: list[tuple[str, Path, object]] = []
    done: dict[str, tuple[object, Path]] = {}

    def finish(index: int = 0) -> None:
        stem, out, ticket = running.pop(index)
        done[stem] = (cli.wait(ticket), out)

    while queue or running:
        while queue and len(running) < PARALLEL:
            example = queue[0]
            extra = tiny_extra(example)
            base = pretrained_example(example)
            if base is not None:
                while base not in done and any(stem == base for stem, _, _ in running):
                    finish([stem for stem, _, _ in running].index(base))
                if base in done:
                    runs = sorted(p for p in done[base][1].glob("*") if p.is_dir())
                    if runs:
                        extra += ["--set", f"model.pretrained={runs[0]}"]
            queue.pop(0)
            out = root / example.stem
            tiny = TINY_RL if config_of(example).get("recipe") == "rl" else TINY
            args = ("train", example, "--out", out, *tiny, *extra)
            running.append((example.stem, out, cli.submit(*args, cwd=ROOT)))
        if running:
            finish()
    return done


def example_params():
    for path in EXAMPLES:
        marks = []
        if path.stem in KNOWN_BUGS:
            marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[path.stem])]
        yield pytest.param(path.stem, id=path.stem, marks=marks)


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("task", TASKS.names())
def test_every_task_is_trained_by_an_example(task):
    """So that every task's emitted metrics are checked against its specs below."""
    names = {(config_of(e).get("task") or {}).get("name", "classification") for e in EXAMPLES}
    assert task in names, f"no examples/*.yaml trains the {task} task"


def undeclared_metrics(run: Path) -> list[str]:
    """Keys of metrics.json and history.csv that no spec declares (the task's, the recipe's,
    the loop's and the callbacks')."""
    rd = RunDir(run)
    recipe = (rd.manifest() or {}).get("recipe") or "supervised"
    specs = merge(getattr(RECIPES.get(recipe), "metrics", ()), run_metrics(rd.task))
    keys = set(rd.metrics() or {}) | {k for row in rd.history() or [] for k in row}
    return sorted(k for k in keys if find(k, specs) is None)


@pytest.mark.parametrize("stem", example_params())
def test_example_trains(example_runs, stem):
    result, out = example_runs[stem]
    assert result.rc == 0, str(result)
    assert "Traceback" not in result.output
    assert "test metrics" in result.stdout
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    shown = [k for k in metrics if k.startswith("test/") and k in result.stdout]
    assert shown, result.stdout  # the test metrics are printed
    assert not undeclared_metrics(runs[0]), f"metrics without a spec (Task.metrics): {stem}"
    assert (runs[0] / "report.html").is_file()
