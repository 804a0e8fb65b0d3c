"""Sequence-to-sequence: map a source sequence to a target sequence (translation, transduction).

Targets are rows ``<bos> t_1 .. t_m <eos> <pad>..``. A training step feeds the decoder
``y[:, :-1]`` and scores its logits against ``y[:, 1:]`` with cross-entropy that ignores padding.
The share of true previous tokens fed to the decoder (teacher forcing) may fall linearly from
``teacher_forcing`` to ``teacher_forcing_end`` over the run's optimizer steps, so the model learns
to continue from its own mistakes (scheduled sampling); the step count is carried in checkpoints.

Evaluation decodes without the targets, greedily or by beam search (``beam_size > 1``), and
scores whole outputs: exact match, token accuracy and corpus BLEU-4
(:mod:`deepworks.evaluate.text`), plus the teacher-forced loss. ``evaluation.json`` keeps
decoded examples and the attention weights of a few of them for the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.config import LossConfig, TrainConfig
from deepworks.data.bundle import DataBundle
from deepworks.data.text.vocab import BOS_ID, EOS_ID, PAD_ID, CharTokenizer
from deepworks.errors import ConfigError
from deepworks.evaluate.text import SEQUENCE_METRICS, sequence_metrics, strip_ids
from deepworks.registry import register_task
from deepworks.tasks.base import Task


@register_task("seq2seq")
class Seq2SeqTask(Task):
    """Train an encoder-decoder with (scheduled) teacher forcing; evaluate decoded outputs.

    Args:
        teacher_forcing: Probability of feeding the true previous token at the start.
        teacher_forcing_end: The probability at the end of training, reached linearly
            (None: constant ``teacher_forcing``).
        beam_size: 1 decodes greedily; more uses beam search.
        length_penalty: GNMT length-penalty exponent of beam search (0: none).
        max_decode_len: Most tokens decoded per sample (None: the target length + 10).
        examples: Decoded samples kept in ``evaluation.json`` for the report.
        attention_examples: Samples whose attention weights are kept for the report.
    """

    name = "seq2seq"
    losses = ("cross_entropy",)
    metrics = SEQUENCE_METRICS

    def __init__(
        self,
        teacher_forcing: float = 1.0,
        teacher_forcing_end: float | None = None,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        max_decode_len: int | None = None,
        examples: int = 20,
        attention_examples: int = 4,
    ):
        super().__init__()
        for key, value in (("teacher_forcing", teacher_forcing), ("end", teacher_forcing_end)):
            if value is not None and not 0.0 <= value <= 1.0:
                name = "teacher_forcing_end" if key == "end" else key
                raise ConfigError(f"task.{name}: {value} must be a probability in [0, 1]")
        if beam_size < 1:
            raise ConfigError(f"task.beam_size: {beam_size} must be at least 1 (1 is greedy)")
        if max_decode_len is not None and max_decode_len < 1:
            raise ConfigError(f"task.max_decode_len: {max_decode_len} must be at least 1")
        self.teacher_forcing, self.teacher_forcing_end = teacher_forcing, teacher_forcing_end
        self.beam_size, self.length_penalty = beam_size, length_penalty
        self.max_decode_len = max_decode_len
        self.examples, self.attention_examples = examples, attention_examples
        self.source_tokenizer: dict[str, Any] | None = None
        self.target_tokenizer: dict[str, Any] | None = None
        self.total_steps = 0
        self.step = torch.zeros((), dtype=torch.long)  # optimizer steps taken (for the schedule)
        self._widths: tuple[int, int] = (0, 0)
        self._attention: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    # --- set-up -----------------------------------------------------------------------------
    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        if data.task_type != "seq2seq":
            raise ConfigError(
                f"task.name: 'seq2seq' needs source and target sequences, but {data.name} is "
                f"{data.task_type} data; use task: {{name: {data.task_type}}}"
            )
        return data.num_classes

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        super().setup(data, loss, device, model)
        self.loss_fn.ignore_index = PAD_ID  # padding after <eos> is not a prediction
        self.source_tokenizer = data.extras.get("tokenizer", self.source_tokenizer)
        self.target_tokenizer = data.extras.get("target_tokenizer", self.target_tokenizer)

    def configure_optimizers(self, model: nn.Module, train: TrainConfig, steps_per_epoch: int):
        self.total_steps = steps_per_epoch * train.epochs
        if train.max_steps:
            self.total_steps = min(self.total_steps, train.max_steps)
        return super().configure_optimizers(model, train, steps_per_epoch)

    def state(self) -> dict[str, Any]:
        return {
            "source_tokenizer": self.source_tokenizer,
            "target_tokenizer": self.target_tokenizer,
        }

    def carry_state(self) -> dict[str, torch.Tensor]:
        return {"step": self.step.clone()}

    def load_carry_state(self, state: dict[str, torch.Tensor]) -> None:
        if "step" in state:
            self.step = state["step"].detach().cpu().clone()

    # --- training ---------------------------------------------------------------------------
    def teacher_forcing_ratio(self) -> float:
        """The scheduled probability of feeding the true previous token at this step."""
        start, end = self.teacher_forcing, self.teacher_forcing_end
        if end is None or self.total_steps <= 1:
            return start
        progress = min(1.0, int(self.step) / (self.total_steps - 1))
        return start + (end - start) * progress

    def training_step(self, model, x, y):
        ratio = self.teacher_forcing_ratio()
        logits = model(x, y[:, :-1], teacher_forcing=ratio)  # (B, T, K)
        self.step += 1
        return self.loss_fn(logits.transpose(1, 2), y[:, 1:]), logits

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(correct, counted) teacher-forced next-token predictions on real target tokens."""
        target = y[:, 1:]
        real = target != PAD_ID
        correct = ((outputs.argmax(-1) == target) & real).sum()
        return torch.stack([correct, real.sum()])

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        return {"token_accuracy": float(stats[0]) / max(1, float(stats[1]))}

    # --- evaluation -------------------------------------------------------------------------
    def decode_len(self, y: torch.Tensor) -> int:
        """Decoded width: ``max_decode_len``, else 10 more than the targets (or sources)."""
        return self.max_decode_len or (y.shape[1] - 1) + 10

    def decode(self, model: nn.Module, x: torch.Tensor, max_len: int):
        """(ids (B, max_len), attention (B, max_len, S)) by greedy or beam search."""
        if self.beam_size > 1:
            return model.beam_search(x, self.beam_size, max_len, self.length_penalty)
        return model.greedy(x, max_len)

    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One row per sample: decoded ids (fixed width), the source ids, and the teacher-forced
        loss sum and token count, so that rows of all batches concatenate."""
        width = self.decode_len(x if y.ndim < 2 else y)
        ids, attn = self.decode(model, x, width)
        if y.ndim < 2:  # no targets (predict): no loss
            nll = counts = torch.zeros(len(x), 1, device=x.device)
        else:
            logits = model(x, y[:, :-1]).float()
            nll = F.cross_entropy(
                logits.transpose(1, 2), y[:, 1:], ignore_index=PAD_ID, reduction="none"
            ).sum(1, keepdim=True)
            counts = (y[:, 1:] != PAD_ID).sum(1, keepdim=True)
        self._widths = (width, x.shape[1])
        has_attention = getattr(model, "attention", "none") != "none"
        missing = self.attention_examples - len(self._attention) if has_attention else 0
        for i in range(min(max(missing, 0), len(x))):  # the first samples of the split
            self._attention.append(
                (x[i].cpu().numpy(), ids[i].cpu().numpy(), attn[i].float().cpu().numpy())
            )
        return torch.cat([ids, x, nll, counts], dim=1).float()

    def unpack(self, outputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
        """(decoded ids (N, W), source ids (N, S), teacher-forced loss) from gathered outputs."""
        width, src_len = self._widths
        ids = outputs[:, :width].long().cpu().numpy()
        src = outputs[:, width : width + src_len].long().cpu().numpy()
        nll, count = outputs[:, -2].sum(), outputs[:, -1].sum()
        return ids, src, float(nll / count.clamp_min(1))

    def text(self, ids: np.ndarray, which: str = "target") -> str:
        """Ids → text with the data's tokenizer (ids joined by spaces when there is none)."""
        tok = self.target_tokenizer if which == "target" else self.source_tokenizer
        if tok is not None and tok.get("kind") == "char":
            return CharTokenizer.from_dict(tok).decode(ids)
        return " ".join(str(i) for i in strip_ids(ids, EOS_ID, PAD_ID, BOS_ID))

    def tokens(self, ids: np.ndarray, which: str) -> list[str]:
        """Ids → one display string per position (for attention axes), up to ``<eos>``."""
        tok = self.target_tokenizer if which == "target" else self.source_tokenizer
        itos = CharTokenizer.from_dict(tok).vocab.itos if tok is not None else None
        out = []
        for i in ids:
            i = int(i)
            if i == PAD_ID:
                break
            out.append(itos[i] if itos is not None and i < len(itos) else str(i))
            if i == EOS_ID:
                break
        return out

    def evaluate(self, outputs, y, full=True):
        ids, src, loss = self.unpack(outputs)
        attention, self._attention = self._attention, []
        y_np = y.cpu().numpy()
        metrics = {"loss": loss} | sequence_metrics(ids, y_np, EOS_ID, PAD_ID, BOS_ID)
        if not full:
            return metrics, None, {}
        examples = []
        for i in range(min(self.examples, len(ids))):
            pred, target = self.text(ids[i]), self.text(y_np[i])
            examples.append(
                {
                    "source": self.text(src[i], "source"),
                    "prediction": pred,
                    "target": target,
                    "correct": pred == target,
                }
            )
        maps = []
        for x_row, out_row, weights in attention:
            source = self.tokens(x_row, "source")
            output = self.tokens(out_row, "target")
            maps.append(
                {
                    "source": source,
                    "output": output,
                    "weights": np.round(weights[: len(output), : len(source)], 4).tolist(),
                }
            )
        details: dict[str, Any] = {
            "task_type": "seq2seq",
            "decoding": "greedy" if self.beam_size == 1 else f"beam {self.beam_size}",
            "metrics": metrics,
            "examples": examples,
            "attention": maps,
        }
        preds = {"y_true": y_np, "y_pred": ids, "source": src}
        return metrics, details, preds

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        self._attention = []
        ids, _, _ = self.unpack(outputs)
        return {"y_pred": ids, "text": np.array([self.text(row) for row in ids])}
