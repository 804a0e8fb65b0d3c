"""What is registered, read from the source without importing it (``deepworks list KIND``).

The registries fill up as the modules that hold the components are imported, and those import
torch. Listing names must not cost that, so :func:`entries` reads the same facts from the source
with ``ast``: every ``@register_model("mlp")`` (or ``@MODELS.register("mlp")``) decorator under
``src/deepworks``, and the first line of the decorated object's docstring (or the decorator's
``description``), which is what :meth:`Registry.register <deepworks.registry.Registry.register>`
records. A test holds this listing against the real registries, so the two cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from deepworks import registry

PACKAGE = Path(__file__).resolve().parent
# a file registers something only if it has such a decorator: the others are not parsed
DECORATOR = re.compile(r"@\s*(register_\w+|[A-Z_]+\.register)\s*\(")


def entries(kind: str) -> list[tuple[str, str]]:
    """(name, one-line description) of every component of ``kind`` (a key of
    ``REGISTRIES``), sorted by name, as ``REGISTRIES[kind].items()`` gives them."""
    return sorted(_catalog().get(kind, {}).items())


@cache
def _catalog() -> dict[str, dict[str, str]]:
    kinds = {id(reg): kind for kind, reg in registry.REGISTRIES.items()}
    found: dict[str, dict[str, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if not DECORATOR.search(source):
            continue
        for node in ast.walk(ast.parse(source, str(path))):
            if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                reg = _registry_of(decorator)
                kind = kinds.get(id(reg))
                if kind is None or not decorator.args:
                    continue
                name = _literal(decorator.args[0])
                if not isinstance(name, str):
                    continue
                description = _description(decorator)
                if description is None:
                    doc = ast.get_docstring(node) or ""
                    description = doc.splitlines()[0] if doc else ""
                found.setdefault(kind, {})[name] = description
    return found


def _registry_of(decorator: ast.expr) -> registry.Registry | None:
    """The registry a decorator call registers into: ``register_model(...)`` or
    ``MODELS.register(...)``, as the names are bound in :mod:`deepworks.registry`."""
    if not isinstance(decorator, ast.Call):
        return None
    func = decorator.func
    if isinstance(func, ast.Name) and func.id.startswith("register_"):
        bound = getattr(registry, func.id, None)
        return getattr(bound, "__self__", None)
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "register"
        and isinstance(func.value, ast.Name)
    ):
        return getattr(registry, func.value.id, None)
    return None


def _description(decorator: ast.Call) -> str | None:
    """The ``description`` given to the decorator, if it is a literal."""
    given = decorator.args[1] if len(decorator.args) > 1 else None
    for keyword in decorator.keywords:
        if keyword.arg == "description":
            given = keyword.value
    value = _literal(given) if given is not None else None
    return value or None


def _literal(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None
