"""Loss functions by name. Each factory returns ``loss(outputs, targets) -> scalar``.

Classification losses take logits: cross-entropy applies log-softmax itself (numerically stable),
BCE applies the sigmoid itself. Regression losses take outputs of shape (B,) or (B, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.registry import register_loss


class _Regression(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.fn(outputs.reshape(targets.shape), targets)


@register_loss("mse")
def mse(weight: torch.Tensor | None = None) -> nn.Module:
    """Mean squared error (L2): mean((y_hat - y)^2)."""
    return _Regression(F.mse_loss)


@register_loss("mae")
def mae(weight: torch.Tensor | None = None) -> nn.Module:
    """Mean absolute error (L1): mean(|y_hat - y|), robust to outliers."""
    return _Regression(F.l1_loss)


@register_loss("huber")
def huber(delta: float = 1.0, weight: torch.Tensor | None = None) -> nn.Module:
    """Huber loss: quadratic within ``delta`` of the target, linear beyond it."""
    return _Regression(lambda out, y: F.huber_loss(out, y, delta=delta))


@register_loss("cross_entropy")
def cross_entropy(label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> nn.Module:
    """Softmax cross-entropy on logits, with optional label smoothing and class weights."""
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


class BCE(nn.Module):
    """Binary cross-entropy on one logit per sample; ``pos_weight`` up-weights positives."""

    def __init__(self, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.reshape(targets.shape)  # (B, 1) -> (B,)
        return F.binary_cross_entropy_with_logits(
            logits, targets.to(logits.dtype), pos_weight=self.pos_weight
        )


@register_loss("bce")
def bce(weight: torch.Tensor | None = None) -> nn.Module:
    """Binary cross-entropy with logits (one output unit); class weights become pos_weight."""
    pos_weight = None if weight is None else (weight[1] / weight[0]).reshape(1)
    return BCE(pos_weight)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): ``FL = -alpha_t (1 - p_t)^gamma log p_t``.

    The factor ``(1 - p_t)^gamma`` shrinks the loss of well-classified samples so training focuses
    on hard ones; gamma = 0 gives (weighted) cross-entropy back.
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)  # (B, K)
        log_pt = log_p.gather(1, targets[:, None]).squeeze(1)  # (B,)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is not None:
            w = self.weight[targets]
            return (w * loss).sum() / w.sum()
        return loss.mean()


@register_loss("focal")
def focal(gamma: float = 2.0, weight: torch.Tensor | None = None) -> nn.Module:
    """Focal loss for class imbalance: down-weights easy examples by (1 - p_t)^gamma."""
    return FocalLoss(gamma, weight)


@register_loss("hinge")
def hinge(margin: float = 1.0, weight: torch.Tensor | None = None) -> nn.Module:
    """Multi-class hinge loss (perceptron / linear SVM): max(0, margin - s_y + s_j)."""
    return nn.MultiMarginLoss(margin=margin, weight=weight)
