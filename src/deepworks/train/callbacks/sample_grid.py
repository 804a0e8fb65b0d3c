"""Sample grid: what a generative model makes of the same fixed noise, after every epoch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepworks.registry import register_callback
from deepworks.rundir import SAMPLES
from deepworks.train.callbacks.base import Callback


@register_callback("sample_grid")
class SampleGrid(Callback):
    """Save ``n`` samples of the same fixed noise after every epoch to
    ``samples/epoch-XXX.npy`` (float16), so the report shows how a generator's output sharpens
    over training (the ``gan`` task adds it). Models without ``sample(n, y, generator=)`` and
    runs without a directory are left alone.

    Args:
        n: Samples per epoch; a conditional model cycles through the classes.
        seed: Seed of the fixed noise.
    """

    def __init__(self, n: int = 20, seed: int = 1234):
        self.n = n
        self.seed = seed

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        model = trainer.model
        if trainer.run_dir is None or not callable(getattr(model, "sample", None)):
            return
        g = torch.Generator().manual_seed(self.seed)  # the same z every epoch
        k = (trainer.task.data_info or {}).get("num_classes") or 1
        y = torch.arange(self.n) % k if getattr(model, "conditional", False) else None
        was_training = model.training
        model.eval()
        samples = model.sample(self.n, y, generator=g)
        model.train(was_training)
        out = trainer.run_dir / SAMPLES
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / f"epoch-{trainer.epoch:03d}.npy", samples.cpu().numpy().astype(np.float16))
