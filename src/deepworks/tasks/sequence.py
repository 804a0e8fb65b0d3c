"""Sequence tasks over token ids: one class per sequence, or one class per token.

- ``sequence_classification`` (many-to-one): a text → one class (sentiment, topic, spam). It is
  the classification task with its metrics, plus a check that the data holds token sequences
  (x (N, L) int64 ids, y (N,) classes) and that the model gives one output per sequence.
- ``token_classification`` (many-to-many, *tagging*): every token gets a class (part of speech,
  named entities, the role of a character in code). The model outputs logits (B, L, K) and the
  targets are (B, L), with :data:`IGNORE_INDEX` (-100) at padding. The loss is the mean
  cross-entropy over real positions only,

      loss = -(1 / |M|) Σ_{(b,t) ∈ M} log softmax(z_{b,t})[y_{b,t}],  M = {(b,t): y_{b,t} ≠ -100}

  and the metrics count real positions only: ``accuracy`` (token accuracy), ``f1_macro`` and the
  other classification metrics over all real tokens of the split, and ``sequence_accuracy`` (the
  share of sequences whose every token is right).

A tagging dataset keeps ``task_type: classification`` (the classes are ordinary classes) and marks
its targets ``extras["targets"] = "per_token"``; the task checks the target shape itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle
from deepworks.data.text.datasets import IGNORE_INDEX
from deepworks.errors import ConfigError
from deepworks.evaluate.metrics import (
    CLASSIFICATION_METRICS,
    classification_details,
    classification_metrics,
    headline_metrics,
)
from deepworks.evaluate.specs import MetricSpec
from deepworks.registry import register_task
from deepworks.tasks.base import Task
from deepworks.tasks.classification import Classification


def _check_tokens(data: DataBundle, task: str) -> None:
    """Token-id inputs (N, L) int64, or a one-line error that says what the data holds."""
    x = getattr(data.train, "x", None)
    if data.task_type != "classification":
        raise ConfigError(
            f"task.name: {task!r} needs class labels, but {data.name} is {data.task_type} data; "
            f"use task: {{name: {data.task_type}}}"
        )
    if x is None or x.ndim != 2 or x.is_floating_point():
        shape = "lazily read inputs" if x is None else f"{x.dtype} inputs of shape {tuple(x.shape)}"
        raise ConfigError(
            f"task.name: {task!r} needs token-id sequences (N, L) int64 from a text dataset "
            f"(text_csv, text_folder, stdlib_calls), but {data.name} has {shape}; "
            "use task: {name: classification}"
        )


@register_task("sequence_classification")
class SequenceClassification(Classification):
    """One class per token sequence (many-to-one), e.g. the topic of a text.

    Args:
        top_k: Report top-k accuracy for these k (when k < number of classes).
    """

    name = "sequence_classification"
    losses = ("cross_entropy", "focal")

    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        _check_tokens(data, self.name)
        if data.train.y.ndim != 1:
            raise ConfigError(
                f"task.name: 'sequence_classification' needs one label per sequence, but "
                f"{data.name} has a label per token; use task: {{name: token_classification}}"
            )
        return super().num_outputs(data, loss)

    def _check(self, outputs: torch.Tensor) -> None:
        if outputs.ndim != 2:
            raise ConfigError(
                f"model: outputs of shape {tuple(outputs.shape)} are not one row per sequence; "
                "sequence_classification needs (B, K), e.g. model: {name: rnn, output: last}"
            )

    def training_step(self, model, x, y):
        self.outputs_probs = getattr(model, "output_kind", "logits") == "probs"
        outputs = self.logits(model(x))  # (B, K); x: (B, L) token ids
        self._check(outputs)
        return self.loss_fn(outputs, y), outputs

    def evaluate(self, outputs, y, full=True):
        self._check(outputs)
        return super().evaluate(outputs, y, full)


@register_task("token_classification")
class TokenClassification(Task):
    """One class per token (many-to-many tagging); padding (-100 targets) is ignored."""

    name = "token_classification"
    losses = ("cross_entropy",)
    metrics = (*CLASSIFICATION_METRICS, MetricSpec("sequence_accuracy", "max", fmt=".2%"))

    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        _check_tokens(data, self.name)
        y = data.train.y
        if y.ndim != 2 or y.shape != data.train.x.shape:
            raise ConfigError(
                f"task.name: 'token_classification' needs a label per token (y of shape "
                f"(N, L) like x), but {data.name} has y of shape {tuple(y.shape)}; "
                "use task: {name: sequence_classification}"
            )
        self.loss_name(loss)
        return data.num_classes

    def class_weights(self, data: DataBundle, loss: LossConfig) -> torch.Tensor | None:
        """Balanced weights count real tokens only (the -100 of padding is no class)."""
        if loss.class_weights != "balanced":
            return super().class_weights(data, loss)
        y = data.train.y[data.train.y != IGNORE_INDEX]
        counts = torch.bincount(y, minlength=data.num_classes).double()
        return (counts.sum() / (len(counts) * counts.clamp_min(1))).float()

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        super().setup(data, loss, device, model)
        # mean over real positions: the registered loss ignores -100 targets like torch's default
        self.loss_fn.ignore_index = IGNORE_INDEX

    @staticmethod
    def _check(outputs: torch.Tensor, y: torch.Tensor) -> None:
        if outputs.ndim != 3 or outputs.shape[:2] != y.shape:
            raise ConfigError(
                f"model: outputs of shape {tuple(outputs.shape)} do not fit per-token labels of "
                f"shape {tuple(y.shape)}; token_classification needs (B, L, K), e.g. "
                "model: {name: rnn, output: sequence}"
            )

    def _loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = outputs.shape[-1]
        return self.loss_fn(outputs.reshape(-1, k).float(), y.reshape(-1))  # (B*L, K), (B*L,)

    def training_step(self, model, x, y):
        outputs = model(x)  # (B, L, K) logits; y: (B, L)
        self._check(outputs, y)
        return self._loss(outputs, y), outputs

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        real = y != IGNORE_INDEX  # (B, L)
        correct = (outputs.argmax(-1) == y) & real
        return torch.stack([correct.sum(), real.sum()])  # summed over batches on the device

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        correct, total = stats.tolist()
        return {"accuracy": correct / max(1, total)}

    def evaluate(self, outputs, y, full=True):
        self._check(outputs, y)
        outputs = outputs.float()  # (N, L, K)
        loss = float(self._loss(outputs, y))
        real = y != IGNORE_INDEX  # (N, L)
        pred = outputs.argmax(-1)  # (N, L)
        seq_ok = ((pred == y) | ~real).all(dim=1).float().mean()
        prob = outputs[real].softmax(-1).cpu().numpy()  # (M, K), real positions only
        y_real = y[real].cpu().numpy()  # (M,)
        metrics = {"loss": loss}
        if not full:
            metrics |= headline_metrics(y_real, prob)
            return metrics | {"sequence_accuracy": float(seq_ok)}, None, {}
        metrics |= classification_metrics(y_real, prob, top_k=())
        metrics["sequence_accuracy"] = float(seq_ok)
        names = self.data_info.get("class_names") or [str(i) for i in range(prob.shape[1])]
        details: dict[str, Any] = classification_details(y_real, prob, names)
        details["counted"] = "real tokens (padding excluded)"
        preds = {
            "y_true": y.cpu().numpy(),  # (N, L), -100 at padding
            "y_pred": torch.where(real, pred, IGNORE_INDEX).cpu().numpy(),  # (N, L)
        }
        return metrics, details, preds

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        prob = outputs.float().softmax(-1)  # (N, L, K)
        return {"y_pred": prob.argmax(-1).cpu().numpy(), "y_prob": prob.cpu().numpy()}
