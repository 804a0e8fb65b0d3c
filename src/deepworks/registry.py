"""One generic registry for everything a config can name.

Models, datasets, tasks, losses, optimizers, schedulers and callbacks all register under a name::

    @register_model("mlp")
    class MLP(nn.Module): ...

Configs and the CLI refer to those names, ``deepworks list models`` prints them, and the tests are
parametrized over the registries so that a newly registered component is tested at once.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from deepworks.errors import ConfigError, close_match, unknown_choice


class Registry:
    """A named collection of factories (classes or functions) of one kind.

    Args:
        kind: What the entries are, singular with article ("a model"), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._descriptions: dict[str, str] = {}

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
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, str]]:
        """(name, one-line description) pairs, sorted by name."""
        for name in self.names():
            yield name, self._descriptions[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def accepted_kwargs(factory: Callable) -> tuple[list[str], bool]:
    """Names of the keyword arguments ``factory`` takes, and whether it takes ``**kwargs``."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = list(inspect.signature(target).parameters.values())
    if inspect.isclass(factory):
        params = params[1:]  # self
    varkw = any(p.kind is p.VAR_KEYWORD for p in params)
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, varkw


def check_kwargs(
    factory: Callable,
    kwargs: dict,
    where: str,
    fixed: dict | None = None,
    also: tuple[str, ...] = (),
) -> None:
    """Raise a :class:`ConfigError` for a keyword ``factory`` does not accept.

    ``also`` names keys of the surrounding config section (``name``, ``split``, ...), offered as
    choices and close matches but never passed to the factory.
    """
    names, varkw = accepted_kwargs(factory)
    if varkw:
        return
    allowed = [n for n in also if n not in names] + [n for n in names if n not in (fixed or {})]
    hints = _type_hints(factory)
    for key, value in kwargs.items():
        if key in hints and key not in also:
            _check_type(hints[key], value, f"{where}.{key}" if where else key)
        if key not in allowed:
            hint = close_match(key, allowed)
            did_you_mean = f"; did you mean '{hint}'?" if hint else ""
            raise ConfigError(
                f"{where}: unknown key {key!r}{did_you_mean} (choices: {', '.join(allowed)})"
            )


def _type_hints(factory: Callable) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: skip the type check, the call still checks
        return {}


def _check_type(hint: Any, value: Any, where: str) -> None:
    """Check a config value against a factory argument's annotation (``gamma: float``)."""
    try:
        adapter = TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # e.g. a torch type pydantic cannot describe
        return
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        plain = typing.get_origin(hint) is None and hasattr(hint, "__name__")
        expected = hint.__name__ if plain else str(hint).replace("typing.", "")
        raise ConfigError(
            f"{where}: {value!r} is not a valid {expected} ({msg[0].lower() + msg[1:]})"
        ) from exc


MODELS = Registry("a model")
DATASETS = Registry("a dataset")
TASKS = Registry("a task")
LOSSES = Registry("a loss")
OPTIMIZERS = Registry("an optimizer")
SCHEDULERS = Registry("a scheduler")
CALLBACKS = Registry("a callback")
AUGMENTATIONS = Registry("an augmentation")
ATTACKS = Registry("an attack")
EXPLAINERS = Registry("an attribution method")

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
}
