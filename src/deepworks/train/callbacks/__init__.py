"""Callbacks (``deepworks list callbacks``): Lightning-style named hooks with state."""

from deepworks.train.callbacks.base import Callback
from deepworks.train.callbacks.early_stopping import EarlyStopping
from deepworks.train.callbacks.ema import EMA
from deepworks.train.callbacks.gradual_unfreeze import GradualUnfreeze
from deepworks.train.callbacks.history import HistoryLogger
from deepworks.train.callbacks.lr_monitor import LRMonitor
from deepworks.train.callbacks.model_checkpoint import ModelCheckpoint
from deepworks.train.callbacks.profiler import Profiler
from deepworks.train.callbacks.progress import ProgressBar
from deepworks.train.callbacks.sample_grid import SampleGrid

__all__ = [
    "Callback",
    "EMA",
    "EarlyStopping",
    "GradualUnfreeze",
    "HistoryLogger",
    "LRMonitor",
    "ModelCheckpoint",
    "ProgressBar",
    "Profiler",
    "SampleGrid",
]
