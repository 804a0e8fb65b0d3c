"""Masked language modelling (BERT's pretraining objective): fill in hidden tokens.

Each training batch hides a random 15% of the real tokens (never padding or special tokens
such as ``[CLS]`` / ``[SEP]``) and asks the model to predict the original token at each hidden
position from both sides of its context. Of the chosen positions (Devlin et al., 2019):

- 80% are replaced by the mask token (``[MASK]``),
- 10% by a random token of the vocabulary,
- 10% are left unchanged,

so the model cannot learn that only ``[MASK]`` positions matter: it has to keep a good
representation of every token. The loss is the cross-entropy over the chosen positions only::

    loss = -(1 / |M|) Σ_{(b,t) ∈ M} log softmax(z_{b,t})[x_{b,t}]        (nats per masked token)

and the metrics are ``masked_accuracy`` (the argmax is the original token) and
``perplexity = exp(loss)``. The labels of the data are not used: any token-id dataset
(``docstrings``, ``text_csv``, ...) is a corpus. The model gives one output per position and
vocabulary entry (``output: sequence``; ``num_classes`` is the vocabulary size).

Training masks are drawn fresh every step (from torch's seeded generator). Evaluation masks are
drawn from a generator seeded by the batch's own content, so every evaluation of a split hides
the same tokens and the metrics of two epochs or two runs compare like for like.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle
from deepworks.data.text.vocab import UNK_ID
from deepworks.errors import ConfigError
from deepworks.evaluate.specs import MetricSpec
from deepworks.registry import register_task
from deepworks.tasks.base import Task

IGNORE_INDEX = -100


def mask_tokens(
    x: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: list[int] | tuple[int, ...],
    rate: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of token ids x (B, L) -> (inputs (B, L), targets (B, L), -100 where not
    chosen). Each maskable token is chosen with probability ``rate``; chosen tokens become
    ``mask_id`` (80%), a random non-special token (10%) or stay (10%)."""

    def uniform() -> torch.Tensor:
        return torch.rand(x.shape, generator=generator, device=generator_device).to(x.device)

    generator_device = generator.device if generator is not None else x.device
    special = torch.tensor(list(special_ids), device=x.device)
    maskable = ~torch.isin(x, special)  # (B, L)
    chosen = (uniform() < rate) & maskable
    targets = torch.where(chosen, x, torch.full_like(x, IGNORE_INDEX))
    r = uniform()
    to_mask = chosen & (r < 0.8)
    to_random = chosen & (r >= 0.8) & (r < 0.9)
    # random replacements avoid special tokens: redraw those (rare) from the maskable range
    random_ids = (uniform() * vocab_size).long().clamp_max(vocab_size - 1)
    bad = torch.isin(random_ids, special)
    random_ids = torch.where(bad, x, random_ids)  # a special draw leaves the token unchanged
    inputs = torch.where(to_mask, torch.full_like(x, mask_id), x)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, targets


@register_task("masked_lm")
class MaskedLM(Task):
    """BERT-style masked language modelling (15% of tokens; 80/10/10 mask/random/keep).

    Args:
        mask_rate: Share of real tokens chosen per sequence.
        mask_id: The id that hides a token (default: the data's ``[MASK]``, else ``<unk>``).
        eval_seed: Seed of the evaluation masks.
    """

    name = "masked_lm"
    losses = ("cross_entropy",)
    metrics = (
        MetricSpec("masked_accuracy", "max", headline=True, fmt=".2%"),
        MetricSpec("perplexity", "min", headline=True, fmt=".3f"),
    )

    def __init__(self, mask_rate: float = 0.15, mask_id: int | None = None, eval_seed: int = 0):
        super().__init__()
        if not 0.0 < mask_rate < 1.0:
            raise ConfigError(f"task.mask_rate: {mask_rate} must be between 0 and 1")
        self.mask_rate, self.mask_id, self.eval_seed = mask_rate, mask_id, eval_seed
        self.vocab_size = 0
        self.special_ids: list[int] = []
        self._targets: torch.Tensor | None = None

    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        x = getattr(data.train, "x", None)
        if x is None or x.ndim != 2 or x.is_floating_point():
            raise ConfigError(
                f"task.name: 'masked_lm' needs token-id sequences (N, L) int64 from a text "
                f"dataset (docstrings, text_csv, ...), but {data.name} has other inputs"
            )
        if "vocab_size" not in data.model_sizes:
            raise ConfigError(f"task.name: 'masked_lm': {data.name} names no vocabulary size")
        self.loss_name(loss)
        return int(data.model_sizes["vocab_size"])

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        self.vocab_size = self.num_outputs(data, loss)
        super().setup(data, loss, device, model)
        self.loss_fn.ignore_index = IGNORE_INDEX
        if self.mask_id is None:
            self.mask_id = data.extras.get("mask_id") or UNK_ID
        pad = int(data.model_sizes.get("pad_id", 0))
        self.special_ids = sorted({pad, *data.extras.get("special_ids", [pad])})
        if self.mask_id not in self.special_ids:
            self.special_ids.append(self.mask_id)  # a stand-in mask token is never a target

    def state(self) -> dict[str, Any]:
        return {"mask_id": self.mask_id, "special_ids": self.special_ids}

    def _mask(self, x: torch.Tensor, generator: torch.Generator | None = None):
        return mask_tokens(
            x, self.mask_id, self.vocab_size, self.special_ids, self.mask_rate, generator
        )

    @staticmethod
    def _check(logits: torch.Tensor, x: torch.Tensor) -> None:
        if logits.ndim != 3 or logits.shape[:2] != x.shape:
            raise ConfigError(
                f"model: outputs of shape {tuple(logits.shape)} are not one row per token of "
                f"inputs {tuple(x.shape)}; masked_lm needs output: sequence"
            )

    # --- training ---------------------------------------------------------------------------
    def training_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        inputs, targets = self._mask(x)  # the labels y are not used
        logits = model(inputs)  # (B, L, V)
        self._check(logits, x)
        self._targets = targets
        loss = self.loss_fn(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        return loss, logits

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        targets = self._targets  # of the step that produced ``outputs``
        chosen = targets != IGNORE_INDEX
        nll = F.cross_entropy(
            outputs.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
        correct = ((outputs.argmax(-1) == targets) & chosen).sum()
        return torch.stack([nll, correct.float(), chosen.sum().float()])

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        nll, correct, count = stats.tolist()
        return {"masked_accuracy": correct / max(1.0, count)}

    # --- evaluation -------------------------------------------------------------------------
    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, L, 4) per position: NLL (0 where not chosen), whether the token was chosen, the
        predicted id and the original id (ids are exact in float32 below 2**24)."""
        # the batch's content seeds its masks: the same split is masked the same way each time
        seed = (self.eval_seed * 1_000_003 + int(x.sum()) * 31 + x.numel()) % (2**63 - 1)
        g = torch.Generator().manual_seed(seed)
        inputs, targets = self._mask(x, g)
        logits = model(inputs).float()  # (B, L, V)
        self._check(logits, x)
        chosen = targets != IGNORE_INDEX
        nll = F.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )  # (B, L), 0 where not chosen
        pred = logits.argmax(-1)
        return torch.stack([nll, chosen.float(), pred.float(), x.float()], dim=-1)

    def evaluate(self, outputs, y, full=True):
        nll, chosen, pred, original = outputs.double().unbind(-1)  # (N, L) each
        chosen = chosen.bool()
        count = float(chosen.sum())
        loss = float(nll.sum()) / max(1.0, count)
        metrics = {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "masked_accuracy": float(((pred == original) & chosen).sum()) / max(1.0, count),
        }
        if not full:
            return metrics, None, {}
        details = {
            "masked_tokens": int(count),
            "mask_rate": self.mask_rate,
            "perplexity": metrics["perplexity"],
            "counted": "masked tokens only",
        }
        ignore = torch.full_like(pred, IGNORE_INDEX)
        preds = {  # (N, L) token ids at the masked positions, -100 elsewhere
            "y_true": torch.where(chosen, original, ignore).long().cpu().numpy(),
            "y_pred": torch.where(chosen, pred, ignore).long().cpu().numpy(),
        }
        return metrics, details, preds

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        """The predicted token at every masked position (-100 elsewhere)."""
        _, chosen, pred, _ = outputs.unbind(-1)
        return {"y_pred": torch.where(chosen.bool(), pred, IGNORE_INDEX).long().cpu().numpy()}
