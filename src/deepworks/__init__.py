"""deepworks: the catalogue of deep learning techniques behind one CLI and one Python API.

Example:
    >>> import deepworks as dw
    >>> run = dw.train("examples/digits_mlp.yaml", overrides={"train.epochs": 5})
    >>> data = dw.load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0)
    >>> model = dw.create_model("mlp", in_features=64, num_classes=10, hidden=[128, 64])
    >>> result = dw.Trainer(epochs=20, optimizer={"name": "adam", "lr": 1e-3}).fit(
    ...     model, data, task="classification")
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are, for readers and type checkers
    from deepworks.config import RunConfig, TrainConfig, load_config
    from deepworks.data import DataBundle, load_dataset
    from deepworks.errors import ConfigError, DataError, DeepworksError
    from deepworks.models import Model, create_model, list_models
    from deepworks.recipes import RunResult as Run
    from deepworks.recipes.crossval import crossval
    from deepworks.registry import REGISTRIES
    from deepworks.run import evaluate, load_run, predict
    from deepworks.tasks import Task
    from deepworks.train import Trainer

#: The public API: name -> (module, attribute). Each is imported on first use, so that
#: ``import deepworks`` (and ``deepworks --help``) costs no torch; the registries fill themselves
#: (``deepworks.registry``), so nothing needs importing up front.
API: dict[str, tuple[str, str]] = {
    "REGISTRIES": ("deepworks.registry", "REGISTRIES"),
    "ConfigError": ("deepworks.errors", "ConfigError"),
    "DataBundle": ("deepworks.data", "DataBundle"),
    "DataError": ("deepworks.errors", "DataError"),
    "DeepworksError": ("deepworks.errors", "DeepworksError"),
    "Model": ("deepworks.models", "Model"),
    "Run": ("deepworks.recipes", "RunResult"),
    "RunConfig": ("deepworks.config", "RunConfig"),
    "Task": ("deepworks.tasks", "Task"),
    "TrainConfig": ("deepworks.config", "TrainConfig"),
    "Trainer": ("deepworks.train", "Trainer"),
    "create_model": ("deepworks.models", "create_model"),
    "crossval": ("deepworks.recipes.crossval", "crossval"),
    "evaluate": ("deepworks.run", "evaluate"),
    "list_models": ("deepworks.models", "list_models"),
    "load_config": ("deepworks.config", "load_config"),
    "load_dataset": ("deepworks.data", "load_dataset"),
    "load_run": ("deepworks.run", "load_run"),
    "predict": ("deepworks.run", "predict"),
    "train": ("deepworks.recipes", "train"),
}


def __getattr__(name: str) -> Any:
    """A name of the API, or a subpackage (``deepworks.models``), imported when first used."""
    if name in API:
        module, attribute = API[name]
        return getattr(importlib.import_module(module), attribute)
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))


class _Package(types.ModuleType):
    """``deepworks.train`` and ``deepworks.evaluate`` are the API's functions, as they always
    were, though subpackages of those names exist: importing such a subpackage binds it on this
    module, which is ignored here (the subpackages stay importable as ``deepworks.train.*``)."""


def _api_name(name: str) -> property:
    def get(module: types.ModuleType) -> Any:
        return __getattr__(name)

    def bind(module: types.ModuleType, subpackage: types.ModuleType) -> None:
        pass

    return property(get, bind)


for _name in API:  # the API names that are also subpackages
    if (Path(__file__).parent / _name / "__init__.py").is_file():
        setattr(_Package, _name, _api_name(_name))

sys.modules[__name__].__class__ = _Package

__version__ = "0.1.0"

__all__ = [
    "REGISTRIES",
    "ConfigError",
    "DataBundle",
    "DataError",
    "DeepworksError",
    "Model",
    "Run",
    "RunConfig",
    "Task",
    "TrainConfig",
    "Trainer",
    "create_model",
    "crossval",
    "evaluate",
    "list_models",
    "load_config",
    "load_dataset",
    "load_run",
    "predict",
    "train",
]
