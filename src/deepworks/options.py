"""The options of a component or a config section, read from its signature and docstring.

A registered factory (a class or a function) documents itself: its signature gives each option's
name, type annotation and default, and the ``Args:`` section of its Google-style docstring gives
what the option means. :func:`factory_options` turns both into rows for ``deepworks describe``,
``deepworks list --verbose`` and the documentation site; :func:`schema_options` does the same for
the fields of a pydantic model (the run config's sections).

A class whose ``__init__`` takes ``**kwargs`` and hands them to its parent also accepts the
parent's options, so those are listed too, with the parent's documentation.
"""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import io
import json
import re
import tokenize
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from deepworks.registry import REGISTRIES

# Arguments the framework passes itself (the parameters to optimize, the model to explain):
# never written in a config, so never listed as options.
PASSED_IN: dict[str, tuple[str, ...]] = {
    "optimizers": ("params",),
    "schedulers": ("optimizer", "steps_per_epoch", "epochs"),
    "losses": ("weight",),
    "explainers": ("model", "x", "target", "context"),
}

ARG_SECTIONS = {
    "args",
    "arguments",
    "parameters",
    "params",
    "keyword args",
    "keyword arguments",
    "other parameters",
    "attributes",
}
SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")  # "Args:", "Example:", "Returns:" ...
ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:(?:\s+(.*))?$")  # "name (type): text"

REQUIRED = "required"
SECTION_DEFAULT = "(section)"  # a nested section: its own fields give the defaults


@dataclass(frozen=True)
class Option:
    """One option: its name, readable type, default (``required`` if none) and meaning."""

    name: str
    type: str
    default: str
    meaning: str

    @property
    def required(self) -> bool:
        return self.default == REQUIRED


# --- types and defaults --------------------------------------------------------------------

_CONTAINERS = {
    list: "list",
    tuple: "tuple",
    dict: "dict",
    set: "set",
    frozenset: "set",
    collections.abc.Sequence: "list",
    collections.abc.MutableSequence: "list",
    collections.abc.Iterable: "list",
    collections.abc.Mapping: "dict",
    collections.abc.MutableMapping: "dict",
}


def describe_type(annotation: Any) -> str:
    """An annotation as short readable text: ``int | None``, ``list[int]``, ``a|b`` (a Literal)."""
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, str):
        return annotation.replace("typing.", "")
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "any"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(describe_type(a) for a in args)
    if origin is typing.Annotated:
        return describe_type(args[0]) + _bounds(args[1:])
    if origin is collections.abc.Callable:
        return "callable"
    if origin is not None:
        name = _CONTAINERS.get(origin, getattr(origin, "__name__", str(origin)))
        if not args:
            return name
        inner = ", ".join("..." if a is Ellipsis else describe_type(a) for a in args)
        return f"{name}[{inner}]"
    if annotation in _CONTAINERS:
        return _CONTAINERS[annotation]
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _bounds(metadata: tuple) -> str:
    """The range an ``Annotated[float, Field(ge=0, lt=1)]`` allows: `` in [0, 1)``, `` >= 1``."""
    found: dict[str, Any] = {}
    for item in metadata:
        for meta in [item, *getattr(item, "metadata", ())]:
            for op in ("ge", "gt", "le", "lt"):
                if getattr(meta, op, None) is not None:
                    found[op] = getattr(meta, op)
    low = ("[", found["ge"]) if "ge" in found else ("(", found["gt"]) if "gt" in found else None
    high = ("]", found["le"]) if "le" in found else (")", found["lt"]) if "lt" in found else None
    if low and high:
        return f" in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {_number(low[1])}"
    if high:
        return f" {'<=' if high[0] == ']' else '<'} {_number(high[1])}"
    return ""


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


_PLAIN = re.compile(r"^[A-Za-z_][\w.\-/]*$")


def format_default(value: Any) -> str:
    """A default as it would be written in a YAML config: ``null``, ``true``, ``[128, 64]``."""
    if value is inspect.Parameter.empty or value is PydanticUndefined:
        return REQUIRED
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, str) and _PLAIN.match(value) and value not in ("null", "true", "false"):
        return value
    try:
        return json.dumps(value, default=_not_json)
    except (TypeError, ValueError):
        return repr(value)


def _not_json(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(type(value).__name__)


# --- docstrings ----------------------------------------------------------------------------


def parse_args(doc: str | None) -> dict[str, str]:
    """``{name: meaning}`` from the ``Args:`` (or ``Attributes:``) sections of a docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    found: dict[str, str] = {}
    i = 0
    while i < len(lines):
        header = SECTION.match(lines[i].strip())
        if not header or header.group(1).lower() not in ARG_SECTIONS:
            i += 1
            continue
        base = _indent(lines[i])
        i += 1
        entry_indent, name = None, None
        while i < len(lines):
            line = lines[i]
            if line.strip() and _indent(line) <= base:
                break
            if line.strip():
                indent = _indent(line)
                match = ENTRY.match(line.strip()) if entry_indent in (None, indent) else None
                if match:
                    entry_indent, name = indent, match.group(1)
                    found[name] = (match.group(2) or "").strip()
                elif name is not None:
                    found[name] = f"{found[name]} {line.strip()}".strip()
            i += 1
    return {k: _plain_text(v) for k, v in found.items()}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _plain_text(text: str) -> str:
    return " ".join(text.replace("``", "`").split())


def doc_parts(obj: Any) -> tuple[str, str]:
    """(one-line summary, the paragraphs after it up to the first section) of a docstring."""
    doc = inspect.getdoc(obj) or ""
    lines = doc.splitlines()
    if not lines:
        return "", ""
    summary_end = next((k for k, line in enumerate(lines) if not line.strip()), len(lines))
    summary = " ".join(line.strip() for line in lines[:summary_end])
    body: list[str] = []
    for line in lines[summary_end:]:
        if SECTION.match(line) and _indent(line) == 0:
            break
        body.append(line)
    return summary, "\n".join(body).strip()


# --- factories -----------------------------------------------------------------------------


def _params(func: Callable, bound: bool) -> list[inspect.Parameter]:
    params = list(inspect.signature(func).parameters.values())
    return params[1:] if bound else params


def _hints(func: Callable, params: list[inspect.Parameter]) -> dict[str, Any]:
    """Resolved annotations; each one that cannot be resolved stays as its source text."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:
        pass
    namespace = getattr(func, "__globals__", {})
    hints: dict[str, Any] = {}
    for p in params:
        ann = p.annotation
        if isinstance(ann, str):
            with contextlib.suppress(Exception):  # the module's own annotation text
                ann = eval(ann, dict(namespace))
        hints[p.name] = ann
    return hints


def _chain(factory: Callable) -> list[tuple[Any, Callable, bool]]:
    """(documented object, callable, is-a-method) for the factory and, while a class's
    ``__init__`` passes ``**kwargs`` on, for each parent class of the same package."""
    if not inspect.isclass(factory):
        return [(factory, factory, False)]
    package = factory.__module__.split(".")[0]
    chain = []
    for cls in factory.__mro__:
        if "__init__" not in cls.__dict__:
            continue
        if cls.__module__.split(".")[0] != package:
            break
        init = cls.__dict__["__init__"]
        chain.append((cls, init, True))
        if not any(p.kind is p.VAR_KEYWORD for p in _params(init, True)):
            break
    return chain


def factory_options(factory: Callable, skip: tuple[str, ...] = ()) -> list[Option]:
    """The options of a registered factory, in signature order (a parent's after its child's).

    Args:
        factory: A class (its ``__init__``) or a function, as returned by ``Registry.get``.
        skip: Argument names the framework passes itself, left out.
    """
    options: dict[str, Option] = {}
    docs: dict[str, str] = {}
    for obj, func, bound in _chain(factory):
        meanings = parse_args(inspect.getdoc(obj))
        if bound and func.__doc__:
            meanings = parse_args(func.__doc__) | meanings
        for name, text in meanings.items():
            docs.setdefault(name, text)
        params = _params(func, bound)
        hints = _hints(func, params)
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                continue
            if p.name in options or p.name in skip:
                continue
            ann = hints.get(p.name, p.annotation)
            if ann is inspect.Parameter.empty and p.default not in (inspect.Parameter.empty, None):
                ann = type(p.default)
            options[p.name] = Option(p.name, describe_type(ann), format_default(p.default), "")
    return [Option(o.name, o.type, o.default, docs.get(o.name, "")) for o in options.values()]


@dataclass(frozen=True)
class Component:
    """A registered component: registry kind, name, summary, docstring paragraph, options."""

    kind: str
    name: str
    summary: str
    text: str
    options: list[Option]
    factory: Callable


def component(kind: str, name: str, section: type[BaseModel] | None = None) -> Component:
    """The documentation of ``name`` in the registry ``kind`` (``"models"``, ``"datasets"``...).

    Args:
        kind: A key of :data:`deepworks.registry.REGISTRIES`.
        name: The registered name.
        section: The config section that names the component (``OptimizerConfig``): an option
            the factory requires but the section fills in (``lr``) shows the section's default.
    """
    registry = REGISTRIES[kind]
    factory = registry.get(name)
    summary, text = doc_parts(factory)
    if inspect.isclass(factory) and "__init__" in factory.__dict__ and not text:
        text = doc_parts(factory.__init__)[1]
    described = _plain_text(dict(registry.items()).get(name) or summary)
    options = factory_options(factory, PASSED_IN.get(kind, ()))
    if section is not None:
        options = [_from_section(o, section) for o in options]
    return Component(kind, name, described, text, options, factory)


def _from_section(option: Option, section: type[BaseModel]) -> Option:
    field = section.model_fields.get(option.name)
    if field is None or field.is_required():
        return option
    default = option.default
    if option.required:
        value = field.default_factory() if field.default_factory is not None else field.default
        default = format_default(value)
    meaning = option.meaning or _plain_text(field.description or "")
    return Option(option.name, option.type, default, meaning)


def kinds_of(name: str) -> list[str]:
    """The registries that hold ``name``, in the order of :data:`deepworks.registry.REGISTRIES`."""
    return [kind for kind, registry in REGISTRIES.items() if name in registry]


# --- pydantic schemas ----------------------------------------------------------------------


def schema_options(model: type[BaseModel]) -> list[Option]:
    """The fields of a pydantic model as options.

    The meaning is the field's ``description`` where it has one, else the ``# comment`` on the
    field's line or on the comment lines right above it in the source, else the class
    docstring's ``Attributes:`` entry.
    """
    comments = _field_comments(model)
    attributes = parse_args(model.__doc__)
    rows = []
    for name, field in model.model_fields.items():
        value = field.default_factory() if field.default_factory is not None else field.default
        default = SECTION_DEFAULT if isinstance(value, BaseModel) else format_default(value)
        meaning = _plain_text(field.description or comments.get(name) or attributes.get(name, ""))
        meaning = meaning[:1].upper() + meaning[1:]  # a comment may start in lower case
        rows.append(Option(name, describe_type(field.annotation), default, meaning))
    return rows


def nested_models(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """``{field name: pydantic model}`` for the fields that are sections of their own."""
    found = {}
    for name, field in model.model_fields.items():
        for candidate in _flatten(field.annotation):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found[name] = candidate
                break
    return found


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [annotation] + [x for a in args for x in _flatten(a)]


def _field_comments(model: type[BaseModel]) -> dict[str, str]:
    """``{field: comment}`` from the class source: a trailing comment, or the lines above."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        found |= _comments_in(source)
    return found


_FIELD = re.compile(r"^(\s+)(\w+)\s*:")


def _comments_in(source: str) -> dict[str, str]:
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        return {}
    lines = source.splitlines()
    body_indent = None
    found: dict[str, str] = {}
    above: list[str] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(comments.get(number, ""))
            continue
        match = _FIELD.match(line)
        if match and number > 1:
            indent = len(match.group(1))
            body_indent = indent if body_indent is None else body_indent
            if indent == body_indent:
                trailing = comments.get(number)
                text = trailing if trailing else " ".join(above)
                if text and not text.startswith(("noqa", "type:", "fmt:")):
                    found[match.group(2)] = text
        above = []
    return found
