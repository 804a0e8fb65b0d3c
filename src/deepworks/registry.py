"""One generic registry for everything a config can name.

Models, datasets, tasks, losses, optimizers, schedulers and callbacks all register under a name::

    @register_model("mlp")
    class MLP(nn.Module): ...

Configs and the CLI refer to those names, ``deepworks list models`` prints them, and the tests are
parametrized over the registries so that a newly registered component is tested at once.

A registry fills itself: each names the package whose modules register into it (its ``home``,
e.g. ``deepworks.models``) and imports that package on its first look-up, so a name can be
looked up whatever was imported before, and ``import deepworks`` needs to import nothing heavy.
``deepworks list`` reads the names from the source instead (:mod:`deepworks.catalog`).
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from deepworks.errors import ConfigError, close_match, unknown_choice

# Ranges of factory arguments, checked with the config before anything is built
# (``dropout: Probability = 0.1``): a value outside says which key, which value and which range.
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]  # dropout and the like: [0, 1)
PositiveInt = Annotated[int, Field(ge=1)]  # sizes, channels, layers, heads, kernel sizes
NonNegativeInt = Annotated[int, Field(ge=0)]  # padding, ids, counts that may be zero
PositiveFloat = Annotated[float, Field(gt=0.0)]  # rates, ratios, epsilons
NonNegativeFloat = Annotated[float, Field(ge=0.0)]  # weight decay, noise levels


class Registry:
    """A named collection of factories (classes or functions) of one kind.

    Args:
        kind: What the entries are, singular with article ("a model"), used in error messages.
        home: The package whose modules register the entries, imported on the first look-up
            (None: whoever registers has been imported by then).
    """

    def __init__(self, kind: str, home: str | None = None):
        self.kind = kind
        self.home = home
        self._loaded = home is None
        self._entries: dict[str, Callable[..., Any]] = {}
        self._descriptions: dict[str, str] = {}

    def load(self) -> Registry:
        """Import the home package once, so that every entry has registered."""
        if not self._loaded:
            self._loaded = True  # first: the home's own modules may look names up as they load
            importlib.import_module(self.home)
        return self

    def register(self, name: str, description: str | None = None) -> Callable:
        """Decorator that registers a factory under ``name``."""

        def decorator(obj: Callable) -> Callable:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            doc = inspect.getdoc(obj) or ""
            self._descriptions[name] = description or (doc.splitlines()[0] if doc else "")
            return obj

        return decorator

    def get(self, name: str, where: str = "") -> Callable[..., Any]:
        """The factory registered under ``name``; a one-line error with a close match if none."""
        self.load()
        if name not in self._entries:
            raise ConfigError(unknown_choice(self.kind, name, self._entries, where))
        return self._entries[name]

    def build(self, name: str, kwargs: dict[str, Any] | None = None, where: str = "", **fixed):
        """Call the factory with ``kwargs`` checked against its signature, plus ``fixed`` args.

        Unknown keyword arguments are a :class:`ConfigError` that names the key and the accepted
        keys, so a typo in a config (``hiden: [64]``) is caught before anything runs.
        """
        factory = self.get(name, where)
        kwargs = dict(kwargs or {})
        check_kwargs(factory, kwargs, where or f"{self.kind} {name!r}", fixed)
        try:
            return factory(**fixed, **kwargs)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise ConfigError(f"{where or name}: {exc}") from exc

    def names(self) -> list[str]:
        return sorted(self.load()._entries)

    def items(self) -> Iterator[tuple[str, str]]:
        """(name, one-line description) pairs, sorted by name."""
        for name in self.names():
            yield name, self._descriptions[name]

    def __contains__(self, name: object) -> bool:
        return name in self.load()._entries

    def __len__(self) -> int:
        return len(self.load()._entries)


def init_chain(factory: Callable) -> list[Callable]:
    """The functions whose keyword arguments ``factory`` accepts: a function itself; for a class,
    its ``__init__``, then, while an ``__init__`` takes ``**kwargs`` (and hands them to
    ``super().__init__``), the ``__init__`` of each parent class up the MRO. So a subclass lists
    only its own arguments and still accepts its parent's."""
    if not inspect.isclass(factory):
        return [factory]
    chain = []
    for cls in factory.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls is object:
            continue
        chain.append(init)
        params = inspect.signature(init).parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return chain or [factory.__init__]


def accepted_kwargs(factory: Callable) -> tuple[list[str], bool]:
    """Names of the keyword arguments ``factory`` takes (following ``**kwargs`` up a class's
    parents, see :func:`init_chain`), and whether it takes any ``**kwargs`` in the end."""
    names: list[str] = []
    varkw = False
    is_class = inspect.isclass(factory)
    for target in init_chain(factory):
        params = list(inspect.signature(target).parameters.values())
        if is_class:
            params = params[1:]  # self
        varkw = any(p.kind is p.VAR_KEYWORD for p in params)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names += [p.name for p in params if p.kind in kinds and p.name not in names]
    return names, varkw


def check_kwargs(
    factory: Callable,
    kwargs: dict,
    where: str,
    fixed: dict | None = None,
    also: tuple[str, ...] = (),
    blame: Callable[[str], str | None] | None = None,
) -> None:
    """Raise a :class:`ConfigError` for a keyword ``factory`` does not accept, or a value that
    does not fit its annotation (type, or range: ``dropout: Probability``).

    ``also`` names keys of the surrounding config section (``name``, ``split``, ...), offered as
    choices and close matches but never passed to the factory. ``blame(key)`` may name where a
    key's value came from instead of ``where`` (a ``--set`` override).
    """
    names, varkw = accepted_kwargs(factory)
    if varkw:
        return
    allowed = [n for n in also if n not in names] + [n for n in names if n not in (fixed or {})]
    hints = _type_hints(factory)
    for key, value in kwargs.items():
        source = blame(key) if blame is not None else None
        if key in hints and key not in also:
            _check_type(hints[key], value, source or (f"{where}.{key}" if where else key))
        if key not in allowed:
            hint = close_match(key, allowed)
            did_you_mean = f"; did you mean '{hint}'?" if hint else ""
            choices = f"(choices: {', '.join(allowed)})"
            if source is not None and source.endswith(f".{key}"):  # "--set a=...: a.b.key"
                raise ConfigError(f"{source}: unknown key{did_you_mean} {choices}")
            raise ConfigError(f"{source or where}: unknown key {key!r}{did_you_mean} {choices}")


def _type_hints(factory: Callable) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for target in reversed(init_chain(factory)):  # a subclass's own annotation wins
        try:
            hints |= typing.get_type_hints(target, include_extras=True)  # keep Annotated ranges
        except Exception:  # unresolvable annotations: skip the type check, the call checks
            continue
    return hints


BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _check_type(hint: Any, value: Any, where: str) -> None:
    """Check a config value against a factory argument's annotation (``gamma: float``)."""
    try:
        adapter = TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # e.g. a torch type pydantic cannot describe
        return
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        errors = exc.errors()
        bound = next((e for e in errors if e["type"] in BOUND_ERRORS), None)
        if bound is not None:  # the type fits, the value is outside its range
            items = [str(p) for p in bound["loc"] if isinstance(p, int)]  # in a list: its index
            at = f" (item {', '.join(items)})" if items else ""
            ranges = " and ".join(_bounds(hint, bound.get("ctx", {})))
            raise ConfigError(
                f"{where}: {bound['input']!r}{at} is out of range (must be {ranges})"
            ) from exc
        msg = errors[0]["msg"]
        raise ConfigError(
            f"{where}: {value!r} is not a valid {_hint_text(hint)} ({msg[0].lower() + msg[1:]})"
        ) from exc


def _hint_text(hint: Any) -> str:
    """An annotation as a reader writes it: ``int | None``, ``list[int]`` (ranges said apart)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _hint_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_hint_text(a) for a in args)
    if origin is typing.Literal or (origin is not None and not args):
        return str(hint).replace("typing.", "")
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_hint_text(a) for a in args)}]"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def _bounds(hint: Any, failed: dict[str, Any]) -> list[str]:
    """The range the failed bound belongs to, as ``[">= 0", "< 1"]``."""
    for group in _annotated_bounds(hint):
        if any(group.get(k) == v for k, v in failed.items()):
            return [f"{BOUNDS[k]} {_number(v)}" for k, v in group.items()]
    return [f"{BOUNDS[k]} {_number(v)}" for k, v in failed.items() if k in BOUNDS]


def _annotated_bounds(hint: Any) -> Iterator[dict[str, Any]]:
    """Each ``Annotated`` range inside ``hint`` (also inside ``list[...]`` and unions)."""
    if typing.get_origin(hint) is Annotated:
        base, *metadata = typing.get_args(hint)
        group = {}
        for item in metadata:
            for constraint in [item, *getattr(item, "metadata", [])]:
                for key in BOUNDS:
                    if getattr(constraint, key, None) is not None:
                        group[key] = getattr(constraint, key)
        if group:
            yield group
        yield from _annotated_bounds(base)
        return
    for arg in typing.get_args(hint):
        yield from _annotated_bounds(arg)


def _number(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


MODELS = Registry("a model", "deepworks.models")
DATASETS = Registry("a dataset", "deepworks.data")
TASKS = Registry("a task", "deepworks.tasks")
LOSSES = Registry("a loss", "deepworks.train.losses")
OPTIMIZERS = Registry("an optimizer", "deepworks.train.optimizers")
SCHEDULERS = Registry("a scheduler", "deepworks.train.schedulers")
CALLBACKS = Registry("a callback", "deepworks.train.callbacks")
AUGMENTATIONS = Registry("an augmentation", "deepworks.data.augment")
ATTACKS = Registry("an attack", "deepworks.attacks")
EXPLAINERS = Registry("an attribution method", "deepworks.explain")
RECIPES = Registry("a recipe", "deepworks.recipes")
ALGORITHMS = Registry("an RL algorithm", "deepworks.rl")

register_model = MODELS.register
register_dataset = DATASETS.register
register_task = TASKS.register
register_loss = LOSSES.register
register_optimizer = OPTIMIZERS.register
register_scheduler = SCHEDULERS.register
register_callback = CALLBACKS.register
register_augmentation = AUGMENTATIONS.register
register_attack = ATTACKS.register
register_explainer = EXPLAINERS.register
register_recipe = RECIPES.register
register_algorithm = ALGORITHMS.register

REGISTRIES: dict[str, Registry] = {
    "models": MODELS,
    "datasets": DATASETS,
    "tasks": TASKS,
    "losses": LOSSES,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
    "callbacks": CALLBACKS,
    "augmentations": AUGMENTATIONS,
    "attacks": ATTACKS,
    "explainers": EXPLAINERS,
    "recipes": RECIPES,
    "algorithms": ALGORITHMS,
}
