"""Deep belief network: a sigmoid MLP whose hidden layers start as a stack of RBMs.

Hinton, Osindero & Teh (2006) trained deep networks by *greedy layer-wise pretraining*:

1. Train RBM 1 on the inputs v (``deepworks.models.rbm``, contrastive divergence).
2. Train RBM 2 on RBM 1's hidden probabilities ``p(h¹ | v) = σ(W¹ v + c¹)``, RBM 3 on RBM 2's,
   and so on: each layer learns to model the features of the one below.
3. Copy each RBM's weights and hidden biases into the matching layer of the network,
   ``h^l = σ(W^l h^{l-1} + c^l)``, add a linear head, and fine-tune everything with labels
   (backpropagation, the ordinary classification task).

:meth:`DBN.unsupervised_pretrain` does steps 1-3; ``deepworks train`` calls it on a fresh run
before fine-tuning. Each RBM is trained by the ordinary :class:`~deepworks.train.trainer.Trainer`
with the ``rbm`` task, in its own run directory ``<run>/pretrain/layer-<i>`` (history, checkpoints;
a stage found there with a checkpoint continues from it), and the stages' final validation
metrics go to ``<run>/pretrain/summary.json``.

RBMs read their visible units as probabilities in [0, 1]. Inputs already in [0, 1] (e.g.
``data.scale: none`` or ``minmax`` digits) are used as they are. Other inputs (standardized
features) are rescaled for pretraining with the training split's per-feature min-max,
``v = (x - lo) / (hi - lo)`` clipped to [0, 1], and the rescaling is folded into the first
layer afterwards (``W' = W / s``, ``c' = c - W (lo / s)``), so the network still takes the
raw inputs and its first layer computes exactly RBM 1's ``p(h | v)``.

With ``pretrain_epochs: 0`` there is no pretraining: a plain sigmoid MLP, the from-scratch
baseline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepworks.config import TrainConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import CheckpointError, ConfigError
from deepworks.models.base import Model
from deepworks.models.rbm import RBM
from deepworks.registry import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    register_model,
)


@register_model("dbn")
class DBN(Model):
    """Stacked sigmoid layers initialised from RBMs, plus a linear head.

    Args:
        in_features: Input values per sample (inputs are flattened).
        num_classes: Outputs of the head.
        hidden: Width of each hidden layer (= hidden units of each RBM), e.g. ``[256, 128]``.
        dropout: Dropout after each hidden layer during fine-tuning.
        pretrain_epochs: Epochs of CD training per RBM; 0 turns pretraining off.
        pretrain_lr: SGD learning rate of the RBMs.
        pretrain_momentum: SGD momentum of the RBMs.
        pretrain_k: Gibbs steps of contrastive divergence (CD-k).
        pretrain_persistent: Persistent CD (chains carried between updates).
        pretrain_batch_size: Batch size of RBM training (small batches: many updates).
        pretrain_weight_decay: L2 weight decay of the RBM weights (Hinton's guide: 1e-4).
    """

    def __init__(
        self,
        in_features: PositiveInt,
        num_classes: PositiveInt,
        hidden: Sequence[PositiveInt] = (256, 128),
        dropout: Probability = 0.0,
        pretrain_epochs: NonNegativeInt = 10,
        pretrain_lr: PositiveFloat = 0.05,
        pretrain_momentum: Probability = 0.9,
        pretrain_k: PositiveInt = 1,
        pretrain_persistent: bool = False,
        pretrain_batch_size: PositiveInt = 32,
        pretrain_weight_decay: NonNegativeFloat = 1e-4,
    ):
        super().__init__()
        if not hidden:
            raise ValueError("hidden must list at least one layer width, e.g. [256, 128]")
        if pretrain_epochs < 0 or pretrain_k < 1 or pretrain_batch_size < 1:
            raise ValueError("pretrain_epochs must be >= 0, pretrain_k and _batch_size >= 1")
        widths = [in_features, *hidden]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(widths[-1], num_classes)
        for layer in [*self.layers, self.head]:  # Glorot: the init made for sigmoid layers
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.pretrain = {
            "epochs": pretrain_epochs,
            "lr": pretrain_lr,
            "momentum": pretrain_momentum,
            "k": pretrain_k,
            "persistent": pretrain_persistent,
            "batch_size": pretrain_batch_size,
            "weight_decay": pretrain_weight_decay,
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (B, in_features)
        for layer in self.layers:
            h = self.dropout(torch.sigmoid(layer(h)))  # (B, hidden[l])
        return h

    # --- greedy layer-wise pretraining ------------------------------------------------------
    def unsupervised_pretrain(
        self,
        data: DataBundle,
        run_dir: str | Path | None = None,
        seed: int = 0,
        config: TrainConfig | None = None,
    ) -> list[dict[str, Any]]:
        """Train one RBM per hidden layer, bottom up, and copy them into the layers.

        Args:
            data: The run's data; only the inputs of its training (and validation) split.
            run_dir: The run directory; stage ``i`` writes to ``run_dir/pretrain/layer-i``.
            seed: Seed of stage i is ``seed + i``.
            config: The run's training config: device, precision and progress are kept, the
                rest (epochs, optimizer, ...) comes from the ``pretrain_*`` arguments.

        Returns:
            Per layer, the RBM's last validation (else training) metrics.
        """
        p = self.pretrain
        if p["epochs"] == 0:
            return []
        if not isinstance(data.train, Split):
            raise ConfigError("model.pretrain_epochs: DBN pretraining needs in-memory data")
        from deepworks.tasks.rbm import RBMTask  # tasks import models
        from deepworks.train.trainer import Trainer

        x = data.train.x.flatten(1).float()
        lo, scale = visible_range(x)
        train_v = to_visible(x, lo, scale)
        val = data.val if isinstance(data.val, Split) and len(data.val) else None
        val_v = to_visible(val.x.flatten(1).float(), lo, scale) if val is not None else None
        stage_config = self._stage_config(config, has_val=val is not None)
        summary = []
        for i, layer in enumerate(self.layers, start=1):
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
            self._copy_rbm(i - 1, rbm, lo, scale)
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

    @torch.no_grad()
    def _copy_rbm(self, index: int, rbm: RBM, lo: torch.Tensor, scale: torch.Tensor) -> None:
        """Layer ``index`` := the RBM's p(h | v); the first layer folds in the input rescaling."""
        layer = self.layers[index]
        weight, bias = rbm.weight.detach(), rbm.hidden_bias.detach()
        if index == 0:  # σ(W (x - lo)/s + c) = σ((W/s) x + c - W (lo/s))
            bias = bias - weight @ (lo / scale)
            weight = weight / scale
        layer.weight.copy_(weight.to(layer.weight))
        layer.bias.copy_(bias.to(layer.bias))

    def _stage_config(self, config: TrainConfig | None, has_val: bool) -> TrainConfig:
        p = self.pretrain
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


def visible_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, scale) per feature mapping ``x`` into [0, 1]: identity when it already lies there,
    else the per-feature min-max (constant features get scale 1)."""
    width = x.shape[1]
    if float(x.min()) >= 0 and float(x.max()) <= 1:
        return torch.zeros(width), torch.ones(width)
    lo, hi = x.min(0).values, x.max(0).values
    return lo, torch.where(hi > lo, hi - lo, torch.ones_like(hi))


def to_visible(x: torch.Tensor, lo: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return ((x - lo) / scale).clamp(0, 1)


def _stage_checkpoint(stage_dir: Path | None) -> Path | None:
    """The newest valid checkpoint of an interrupted (or finished) stage, if any."""
    if stage_dir is None or not (stage_dir / "checkpoints").is_dir():
        return None
    from deepworks.train.checkpoint import CheckpointDir

    try:
        return CheckpointDir(stage_dir / "checkpoints").newest_valid()
    except CheckpointError:
        return None
