"""Deep belief network: a sigmoid MLP whose hidden layers start as a stack of RBMs.

Hinton, Osindero & Teh (2006) trained deep networks by *greedy layer-wise pretraining*:

1. Train RBM 1 on the inputs v (``deepworks.models.rbm``, contrastive divergence).
2. Train RBM 2 on RBM 1's hidden probabilities ``p(h¹ | v) = σ(W¹ v + c¹)``, RBM 3 on RBM 2's,
   and so on: each layer learns to model the features of the one below.
3. Copy each RBM's weights and hidden biases into the matching layer of the network,
   ``h^l = σ(W^l h^{l-1} + c^l)``, add a linear head, and fine-tune everything with labels
   (backpropagation, the ordinary classification task).

The supervised recipe runs steps 1-3 on a fresh run before fine-tuning
(``deepworks.recipes.pretrain``: each RBM is trained by the ordinary Trainer with the ``rbm`` task,
in its own run directory ``<run>/pretrain/layer-<i>``); this model declares the layers to
pretrain (:meth:`DBN.pretraining_layers`), the stages' options (``pretrain``) and how an RBM is
copied in (:meth:`DBN.load_rbm`).

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

from collections.abc import Sequence

import torch
from torch import nn

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

    # --- greedy layer-wise pretraining (run by ``deepworks.recipes.pretrain``) ---------------
    def pretraining_layers(self) -> list[nn.Linear]:
        """The layers that start as RBMs, bottom up (none with ``pretrain_epochs: 0``)."""
        return list(self.layers) if self.pretrain["epochs"] > 0 else []

    @torch.no_grad()
    def load_rbm(self, index: int, rbm: RBM, lo: torch.Tensor, scale: torch.Tensor) -> None:
        """Layer ``index`` := the RBM's p(h | v); the first layer folds in the input rescaling."""
        layer = self.layers[index]
        weight, bias = rbm.weight.detach(), rbm.hidden_bias.detach()
        if index == 0:  # σ(W (x - lo)/s + c) = σ((W/s) x + c - W (lo/s))
            bias = bias - weight @ (lo / scale)
            weight = weight / scale
        layer.weight.copy_(weight.to(layer.weight))
        layer.bias.copy_(bias.to(layer.bias))


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
