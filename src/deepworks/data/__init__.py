"""Datasets: built-in, from files, split, scaled and batched."""

from deepworks.data import (  # noqa: F401  (registers datasets)
    builtin,
    files,
    shapes,
    text,
    timeseries,
)
from deepworks.data.batching import EpochSampler, TensorBatcher, make_loader
from deepworks.data.bundle import DataBundle, LazySplit, RawData, Split, apply_scaler
from deepworks.data.pipeline import load_dataset, load_raw

__all__ = [
    "DataBundle",
    "EpochSampler",
    "LazySplit",
    "RawData",
    "Split",
    "TensorBatcher",
    "apply_scaler",
    "load_dataset",
    "load_raw",
    "make_loader",
]
