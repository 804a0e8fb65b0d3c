"""Imports point down only, and no modules import each other in a circle.

Every module under ``src/deepworks`` is parsed with ``ast`` (nothing is imported), and every
import statement counts: at module level, inside functions, and under ``TYPE_CHECKING``. The
layers are DESIGN.md's (README "Layout"); a module may import its own layer or a lower one, and
the packages of one layer may import each other as long as that makes no circle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Top-level module or package under ``deepworks`` -> its layer, lowest first ("" is the
#: package itself, ``deepworks/__init__.py``: the Python API, beside the command line).
LAYERS: dict[str, int] = {
    # 1: what everything may use
    "errors": 1,
    "utils": 1,
    # 2: the config schema, the registries, the run directory's file names
    "config": 2,
    "registry": 2,
    "catalog": 2,
    "options": 2,
    "rundir": 2,
    # 3: building blocks
    "layers": 3,
    "data": 3,
    "pretrained": 3,
    "optim": 3,
    "transfer": 3,
    # 4: models, what a training step means, and what is measured or done on a model
    "models": 4,
    "evaluate": 4,
    "attacks": 4,
    "generate": 4,
    "tasks": 4,
    # 5: the training loop
    "train": 5,
    # 6: what reads a trained run
    "run": 6,
    "report": 6,
    "explain": 6,
    "robust": 6,
    "audit": 6,
    "rl": 6,
    # 7: kinds of runs
    "recipes": 7,
    # 8: the faces
    "cli": 8,
    "": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "deepworks").rglob("*.py"))}


def imported(module: str, path: Path) -> list[tuple[str, int]]:
    """(deepworks module, line) for every import statement of ``path``, wherever it stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            # ``from pkg import mod`` imports the module; ``from pkg import name``, the package
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != module:
                found.append((target, node.lineno))
    return found


EDGES = {m: imported(m, p) for m, p in MODULES.items()}


def top(module: str) -> str:
    """``deepworks.train.trainer`` -> ``train``; ``deepworks`` -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(SRC.parent)}:{line}"


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    missing = sorted({top(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"add to LAYERS (and README's Layout): {missing}"


def test_no_import_runs_up_a_layer():
    up = [
        f"{where(m, line)}: {m} (layer {LAYERS[top(m)]}) imports {t} (layer {LAYERS[top(t)]})"
        for m, targets in EDGES.items()
        for t, line in targets
        if LAYERS.get(top(m), 0) < LAYERS.get(top(t), 0)
    ]
    assert not up, "imports against the layers:\n" + "\n".join(up)


def test_no_modules_import_each_other_in_a_circle():
    graph = {m: {t for t, _ in targets} for m, targets in EDGES.items()}
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_packages_of_one_layer_import_each_other_in_a_circle():
    graph: dict[str, set[str]] = defaultdict(set)
    lines: dict[tuple[str, str], str] = {}
    for m, targets in EDGES.items():
        for t, line in targets:
            if top(m) != top(t):
                graph[top(m)].add(top(t))
                lines.setdefault((top(m), top(t)), where(m, line))
    found = circles(graph)
    detail = [
        " -> ".join(c) + ": " + ", ".join(lines[a, b] for a in c for b in c if (a, b) in lines)
        for c in found
    ]
    assert not found, "packages in a circle:\n" + "\n".join(detail)


@pytest.mark.parametrize(
    ("source", "target", "line"),
    [
        ("import deepworks.train.trainer", "deepworks.train.trainer", 1),
        ("def f():\n    from deepworks.train import trainer", "deepworks.train.trainer", 2),
        ("if TYPE_CHECKING:\n    from deepworks.train import Trainer", "deepworks.train", 2),
        ("from deepworks.run import load_run", "deepworks.run", 1),
    ],
)
def test_the_parser_sees_every_kind_of_import(tmp_path, source, target, line):
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert (target, line) in imported("deepworks.probe", path)


def test_an_upward_import_and_a_circle_are_caught():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
