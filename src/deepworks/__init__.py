"""deepworks: the catalogue of deep learning techniques behind one CLI and one Python API.

Example:
    >>> import deepworks as dw
    >>> run = dw.train("examples/digits_mlp.yaml", overrides={"train.epochs": 5})
    >>> data = dw.load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0)
    >>> model = dw.create_model("mlp", in_features=64, num_classes=10, hidden=[128, 64])
    >>> result = dw.Trainer(epochs=20, optimizer={"name": "adam", "lr": 1e-3}).fit(
    ...     model, data, task="classification")
"""

from deepworks import data, explain, models, robust, tasks, train  # noqa: F401  (registries)
from deepworks.config import RunConfig, TrainConfig, load_config
from deepworks.data import DataBundle, load_dataset
from deepworks.errors import ConfigError, DataError, DeepworksError
from deepworks.models import Model, create_model, list_models
from deepworks.recipes import RunResult as Run
from deepworks.recipes import train as train  # noqa: F811  (the function shadows the subpackage)
from deepworks.recipes.crossval import crossval
from deepworks.registry import REGISTRIES
from deepworks.run import evaluate, load_run, predict
from deepworks.tasks import Task
from deepworks.train import Trainer

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
