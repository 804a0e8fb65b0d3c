"""Greedy layer-wise pretraining (Hinton, Osindero & Teh, 2006): one Trainer run per layer.

The supervised recipe runs it before fine-tuning a model that declares pretraining stages (a deep
belief network, ``deepworks.models.dbn``):

1. Train RBM 1 on the inputs v (``deepworks.models.rbm``, contrastive divergence, the ``rbm``
   task), in its own run directory ``<run>/pretrain/layer-1`` (history, checkpoints; a stage found
   there with a checkpoint continues from it).
2. Train RBM 2 on RBM 1's hidden probabilities ``p(h¹ | v)``, RBM 3 on RBM 2's, and so on.
3. Copy each RBM into the matching layer of the model (``model.load_rbm``), write the stages'
   final validation metrics to ``<run>/pretrain/summary.json``.

The model says how: ``pretraining_layers()`` (the layers to initialize, empty for none),
``pretrain`` (the stages' options: epochs, lr, momentum, k, persistent, batch size, weight decay)
and ``load_rbm(index, rbm, lo, scale)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from deepworks.config import TrainConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import CheckpointError, ConfigError
from deepworks.models.dbn import to_visible, visible_range
from deepworks.models.rbm import RBM
from deepworks.rundir import CHECKPOINTS
from deepworks.tasks.rbm import RBMTask
from deepworks.train.checkpoint import CheckpointDir
from deepworks.train.trainer import Trainer


def layerwise_pretrain(
    model: torch.nn.Module,
    data: DataBundle,
    run_dir: str | Path | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
) -> list[dict[str, Any]]:
    """Train one RBM per layer of ``model.pretraining_layers()``, bottom up, and copy them in.

    Args:
        model: A model with ``pretraining_layers()``, ``pretrain`` and ``load_rbm``.
        data: The run's data; only the inputs of its training (and validation) split.
        run_dir: The run directory; stage ``i`` writes to ``run_dir/pretrain/layer-i``.
        seed: Seed of stage i is ``seed + i``.
        config: The run's training config: device, precision and progress are kept, the
            rest (epochs, optimizer, ...) comes from ``model.pretrain``.

    Returns:
        Per layer, the RBM's last validation (else training) metrics.
    """
    layers = model.pretraining_layers()
    if not layers:
        return []
    if not isinstance(data.train, Split):
        raise ConfigError("model.pretrain_epochs: layer-wise pretraining needs in-memory data")
    p = model.pretrain
    x = data.train.x.flatten(1).float()
    lo, scale = visible_range(x)
    train_v = to_visible(x, lo, scale)
    val = data.val if isinstance(data.val, Split) and len(data.val) else None
    val_v = to_visible(val.x.flatten(1).float(), lo, scale) if val is not None else None
    stage_config = _stage_config(p, config, has_val=val is not None)
    summary = []
    for i, layer in enumerate(layers, start=1):
        torch.manual_seed(seed + i)
        rbm = RBM(in_features=layer.in_features, hidden=layer.out_features)
        stage = DataBundle(
            name=f"{data.name}: layer {i} input",
            train=Split(train_v, data.train.y),
            val=Split(val_v, val.y) if val is not None else None,
            test=None,
            task_type=data.task_type,
            input_shape=(layer.in_features,),
            num_classes=data.num_classes,
        )
        stage_dir = Path(run_dir) / "pretrain" / f"layer-{i}" if run_dir else None
        trainer = Trainer(stage_config, run_dir=stage_dir, seed=seed + i)
        task = RBMTask(k=p["k"], persistent=p["persistent"])
        result = trainer.fit(rbm, stage, task, resume=_stage_checkpoint(stage_dir))
        last = trainer.validate(rbm, stage) if val is not None else None
        rbm = rbm.cpu().eval()
        model.load_rbm(i - 1, rbm, lo, scale)
        metrics = last.metrics if last is not None else dict(result.metrics)
        summary.append({"layer": i, "visible": rbm.in_features, "hidden": rbm.hidden})
        summary[-1] |= {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        with torch.no_grad():  # the next RBM models this layer's features
            train_v = rbm.p_h(train_v)
            val_v = rbm.p_h(val_v) if val_v is not None else None
    if run_dir is not None:
        path = Path(run_dir) / "pretrain" / "summary.json"
        path.write_text(json.dumps(summary, indent=1))
    return summary


def _stage_config(p: dict[str, Any], config: TrainConfig | None, has_val: bool) -> TrainConfig:
    keep = {}
    if config is not None:
        fields = ("device", "precision", "progress", "log_every_n_steps", "deterministic")
        keep = {k: getattr(config, k) for k in fields}
    optimizer = {"name": "sgd", "lr": p["lr"], "momentum": p["momentum"]}
    optimizer["weight_decay"] = p["weight_decay"]
    monitor = "val/recon_error" if has_val else "train/recon_error"
    return TrainConfig(
        epochs=p["epochs"],
        batch_size=p["batch_size"],
        optimizer=optimizer,
        checkpoint={"monitor": monitor, "save_best": False, "keep_last": 1},
        **keep,
    )


def _stage_checkpoint(stage_dir: Path | None) -> Path | None:
    """The newest valid checkpoint of an interrupted (or finished) stage, if any."""
    if stage_dir is None or not (stage_dir / CHECKPOINTS).is_dir():
        return None
    try:
        return CheckpointDir(stage_dir / CHECKPOINTS).newest_valid()
    except CheckpointError:
        return None
