"""The in-memory form every dataset takes once loaded: a :class:`DataBundle` of splits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: The kind of targets a dataset has: the name of the registered task (``deepworks list tasks``)
#: that trains on them as they are, e.g. "classification", "regression", "segmentation",
#: "detection", "language_model", "forecasting" or "seq2seq". The task registry is the list of
#: names (tests/test_registry.py checks every built-in dataset against it).
TaskType = str

#: Task types whose targets are integer class indices (per sample, or per pixel).
INTEGER_TARGETS = ("classification", "segmentation", "language_model", "seq2seq")


def target_dtype(task_type: str) -> torch.dtype:
    return torch.int64 if task_type in INTEGER_TARGETS else torch.float32


@dataclass
class RawData:
    """A dataset as loaded from its source, before validation, splitting and scaling.

    Attributes:
        x: Inputs, shape (N, *input_shape), any float/int dtype.
        y: Targets: (N,) class indices (classification) or floats (regression); (N, H, W) class
            index per pixel (segmentation); (N, M, 5) boxes ``[class, x1, y1, x2, y2]`` in pixels,
            padded with rows of -1 (detection).
        task_type: "classification", "regression", "segmentation" or "detection".
        class_names: Names of the classes, index-aligned with the labels (classification only).
        feature_names: Names of the input columns (tabular data only).
        is_image: Whether x holds images of shape (N, C, H, W).
        source: What the data came from (a file path or a built-in name), used in error messages.
        impute: A ``SimpleImputer`` strategy for missing (NaN) inputs, fitted on the training split
            by the pipeline ("mean", "median", "most_frequent"); None: NaN is an error.
        extras: What the loader reports about the data (rows dropped, files skipped), copied
            into :attr:`DataBundle.extras` and so into the run's ``data.json``.
    """

    x: np.ndarray
    y: np.ndarray
    task_type: TaskType
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    is_image: bool = False
    source: str = ""
    dataset: Any = None  # a torch Dataset yielding (x, y) when inputs are read lazily
    sample_shape: tuple[int, ...] | None = None  # input shape of one sample when lazy
    impute: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.sample_shape) if self.dataset is not None else tuple(self.x.shape[1:])


@dataclass
class Split:
    """One split held as tensors: x (N, *input_shape) float32, y (N,) int64 or float32."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class LazySplit:
    """A split whose inputs are read on demand by a DataLoader (data that does not fit in memory).

    Attributes:
        dataset: A map-style torch Dataset yielding ``(x, y)`` tensor pairs.
        y: All targets of the split, known up front (for stratification, weights and metrics).
    """

    dataset: torch.utils.data.Dataset
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def subset(cls, raw: RawData, indices: np.ndarray) -> LazySplit:
        dtype = target_dtype(raw.task_type)
        subset = torch.utils.data.Subset(raw.dataset, indices.tolist())
        return cls(subset, torch.as_tensor(raw.y[indices], dtype=dtype))


@dataclass
class DataBundle:
    """Train / val / test splits plus what a model and a report need to know about them.

    Attributes:
        scaler: The scaling fitted on the training split ({"kind", "shift", "scale"}), kept so that
            ``predict`` applies the same transform to new inputs.
        model_sizes: Sizes a model takes from its data besides the input shape and classes, e.g.
            ``{"vocab_size": 98, "pad_id": 0}`` for token ids (see ``run.data_kwargs``).
        extras: What a task, ``predict`` or the report needs to know about the data; the
            JSON-serializable entries (a tokenizer's ``to_dict()``, a series' dates) are saved in
            the run's ``data.json``.
    """

    name: str
    train: Split | LazySplit
    val: Split | LazySplit | None
    test: Split | LazySplit | None
    task_type: TaskType
    input_shape: tuple[int, ...]
    num_classes: int | None = None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    is_image: bool = False
    scaler: dict[str, Any] | None = None
    model_sizes: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        """Number of input values per sample (the flattened input shape)."""
        return math.prod(self.input_shape)

    @property
    def num_outputs(self) -> int:
        """Width of a model's output layer: number of classes, or 1 for regression."""
        if self.task_type in ("regression", "forecasting"):
            return 1
        return self.num_classes

    def class_counts(self) -> np.ndarray:
        """Count of each class in the training split (of pixels, for segmentation)."""
        return np.bincount(self.train.y.numpy().reshape(-1), minlength=self.num_classes or 0)

    def class_weights(self) -> torch.Tensor:
        """Balanced class weights ``N / (K * count_k)`` from the training split (sklearn's rule)."""
        counts = self.class_counts().astype(np.float64)
        weights = counts.sum() / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(weights, dtype=torch.float32)

    def describe(self) -> dict[str, Any]:
        """Summary for logs and reports."""
        sizes = {k: len(s) for k in ("train", "val", "test") if (s := getattr(self, k)) is not None}
        return {
            "name": self.name,
            "task_type": self.task_type,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "sizes": sizes,
        }


def apply_scaler(x: torch.Tensor | np.ndarray, scaler: dict[str, Any] | None) -> torch.Tensor:
    """Apply a fitted scaler (as stored in :attr:`DataBundle.scaler`) to new inputs."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if not scaler or scaler.get("kind", "none") == "none":
        return x
    shift = torch.tensor(scaler["shift"], dtype=torch.float32)
    scale = torch.tensor(scaler["scale"], dtype=torch.float32)
    return (x - shift) / scale


def invert_scaler(x: torch.Tensor, scaler: dict[str, Any] | None) -> torch.Tensor:
    """Scaled model inputs back to the data's own units: the inverse of :func:`apply_scaler`
    (on ``x``'s device and dtype)."""
    if not scaler or scaler.get("kind", "none") == "none":
        return x
    shift = torch.tensor(scaler["shift"], dtype=x.dtype, device=x.device)
    scale = torch.tensor(scaler["scale"], dtype=x.dtype, device=x.device)
    return x * scale + shift
