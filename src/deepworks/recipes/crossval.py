"""k-fold cross-validation of a run config: mean ± std of every test metric over the folds.

Each fold (:func:`deepworks.evaluate.crossval.kfold_indices`) holds out 1/k of the data as its
test set; the rest is split again into train and validation by the config's ``data.split.val``.
Scaling and resampling are fitted inside each fold (on its training part only), so no fold sees
statistics of its own test samples. The folds are trained like the supervised recipe trains one
run, without writing run directories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepworks.config import RunConfig, load_config
from deepworks.errors import ConfigError
from deepworks.evaluate.crossval import kfold_indices
from deepworks.utils import seed_everything


def crossval(
    config: str | Path | dict[str, Any] | RunConfig,
    folds: int = 5,
    overrides: list[str] | dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``folds`` times and summarize: {"folds": [metrics...], "mean": {...}, "std": {...}}."""
    from deepworks.data.pipeline import bundle_from_indices, load_raw, select_classes
    from deepworks.run import build_model, build_task
    from deepworks.train.trainer import Trainer

    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds")
    cfg = load_config(config, overrides)
    cfg.train.progress = progress
    cfg.train.checkpoint = None
    raw = select_classes(load_raw(cfg.data.name, cfg.data.kwargs), cfg.data.classes)
    if folds > len(raw.y):
        raise ConfigError(f"--folds {folds}: more folds than the {len(raw.y)} samples")
    classes = raw.task_type == "classification"
    results = []
    for k, (train_idx, test_idx) in enumerate(kfold_indices(raw.y, folds, cfg.seed, classes)):
        seed_everything(cfg.seed + k)
        data = bundle_from_indices(
            raw,
            train_idx,
            test_idx,
            val=cfg.data.split.val,
            seed=cfg.seed + k,
            scale=cfg.data.scale,
            imbalance=cfg.data.imbalance,
            stratify=cfg.data.stratify,
        )
        task = build_task(cfg)
        model = build_model(cfg.model_copy(deep=True), data, task)
        trainer = Trainer(cfg.train, seed=cfg.seed + k)
        trainer.fit(model, data, task)
        results.append(trainer.test(model, data).metrics)
    keys = [key for key in results[0] if all(key in r for r in results)]
    return {
        "folds": results,
        "mean": {key: float(np.mean([r[key] for r in results])) for key in keys},
        "std": {key: float(np.std([r[key] for r in results])) for key in keys},
    }
