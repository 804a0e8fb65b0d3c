"""Language modelling: predict every next token; report bits per character and samples.

The loss is the cross-entropy of the next token, averaged over all positions of a batch::

    loss = -1/(B·L) Σ_b Σ_t log p(y[b, t] | x[b, :t+1])          (nats per token)

and the held-out metrics follow from the summed negative log-likelihood:

    perplexity     = exp(loss)
    bits_per_char  = Σ nll / (number of characters) / ln 2

For character tokens ``bits_per_char = loss / ln 2``; other tokenizers divide by the average
characters per token (``DataBundle.extras["chars_per_token"]``). A model that always guessed
uniformly over ``V`` characters would score ``log2(V)`` bits per character.

**Truncated BPTT with a carried state** (``stateful``): consecutive training batches continue
each other row for row (see :mod:`deepworks.data.text.corpus`); the task keeps them in order
(``shuffle_train = False``) and feeds each batch the model's final state of the previous one,
detached so that gradients stop at the batch boundary::

    logits, state = model.forward_with_state(x, state.detach())

The state is reset at the start of each epoch and saved in checkpoints, so a resumed run
continues exactly.

Evaluation keeps per-position NLL and correctness ((B, L, 3) with the predicted id) instead of
(B, L, V) logits, so a large held-out split fits in memory. After evaluating on a full split the
task samples a few continuations of prompts such as ``"def "`` from the model for the report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.config import LossConfig, TrainConfig
from deepworks.data.bundle import DataBundle
from deepworks.errors import ConfigError
from deepworks.evaluate.specs import MetricSpec
from deepworks.registry import register_task
from deepworks.tasks.base import Task

State = torch.Tensor | tuple[torch.Tensor, ...] | None


def detach_state(state: State) -> State:
    """Cut the graph at the batch boundary (truncated BPTT): values kept, gradients stop."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)


@register_task("language_model")
class LanguageModel(Task):
    """Next-token prediction over every position of token windows.

    Args:
        stateful: Carry the model's recurrent state across training batches (the data must be
            laid out for it: ``data.stateful: true``); None: follow the data's layout.
        samples: Number of prompts to sample a continuation of after a full evaluation.
        sample_length: New tokens per sample.
        temperature, top_k, top_p: Sampling settings (see :mod:`deepworks.generate`).
        prompts: Prompts of the samples (cycled when ``samples`` is larger).
        sample_seed: Seed of the samples, so they are the same for the same weights.
    """

    name = "language_model"
    losses = ("cross_entropy",)
    metrics = (
        MetricSpec("bits_per_char", "min", headline=True, label="Bits per character"),
        MetricSpec("perplexity", "min", headline=True, fmt=".3f"),
        MetricSpec("token_accuracy", "max", headline=True, fmt=".2%"),
    )

    def __init__(
        self,
        stateful: bool | None = None,
        samples: int = 3,
        sample_length: int = 300,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        prompts: list[str] | tuple[str, ...] = ("def ", "class ", "import "),
        sample_seed: int = 0,
    ):
        super().__init__()
        if samples < 0 or sample_length < 1 or temperature < 0:
            raise ConfigError("task: samples must be >= 0, sample_length >= 1 and temperature >= 0")
        if samples and not prompts:
            raise ConfigError("task.prompts: empty; give at least one prompt or samples: 0")
        self.stateful = stateful
        self.samples, self.sample_length = samples, sample_length
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.prompts, self.sample_seed = list(prompts), sample_seed
        self.tokenizer: dict[str, Any] | None = None
        self.chars_per_token = 1.0
        self.chars_per_token_by_targets: dict[str, float] = {}
        self.streams: int | None = None
        self.window = 1  # target positions per sample, for per-token training metrics
        self._state: State = None
        self._model: nn.Module | None = None  # the model of the last evaluation, for samples

    # --- set-up -----------------------------------------------------------------------------
    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        if data.task_type != "language_model":
            raise ConfigError(
                f"task.name: 'language_model' needs a token stream, but {data.name} is "
                f"{data.task_type} data; use task: {{name: {data.task_type}}}"
            )
        return data.num_classes

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        super().setup(data, loss, device, model)
        self.tokenizer = data.extras.get("tokenizer")
        self.chars_per_token = float(data.extras.get("chars_per_token", 1.0))
        self.chars_per_token_by_targets = dict(data.extras.get("chars_per_token_by_targets", {}))
        streams = data.extras.get("streams")
        if self.stateful is None:
            self.stateful = bool(data.extras.get("stateful", False))
        if self.stateful and not streams:
            raise ConfigError(
                "task.stateful: true needs the training text laid out in parallel streams; "
                "set data.stateful: true and data.batch_size (= train.batch_size)"
            )
        if self.stateful and model is not None and not hasattr(model, "forward_with_state"):
            raise ConfigError(
                f"task.stateful: {type(model).__name__} has no forward_with_state; use a "
                "recurrent model (rnn) or stateful: false"
            )
        self.streams = streams if self.stateful else None
        self.window = int(data.train.y.shape[1]) if data.train.y.ndim == 2 else 1
        self.shuffle_train = not self.stateful  # stateful batches must stay in order
        self._state = None
        # plain mean cross-entropy: the training loss is the NLL the metrics need, reused as is
        self._loss_is_nll = (
            self.loss_name(loss) == "cross_entropy"
            and not loss.kwargs.get("label_smoothing")
            and loss.class_weights is None
        )
        self._nll: torch.Tensor | None = None

    def configure_optimizers(self, model: nn.Module, train: TrainConfig, steps_per_epoch: int):
        # The only hook that sees the batch size: the stateful layout was cut for one.
        if self.stateful and train.batch_size != self.streams:
            raise ConfigError(
                f"train.batch_size: {train.batch_size} does not match the {self.streams} "
                "parallel streams of the stateful data layout; set data.batch_size and "
                "train.batch_size to the same value"
            )
        return super().configure_optimizers(model, train, steps_per_epoch)

    def state(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer,
            "chars_per_token": self.chars_per_token,
            "chars_per_token_by_targets": self.chars_per_token_by_targets,
            "stateful": self.stateful,
            "streams": self.streams,
        }

    # --- training ---------------------------------------------------------------------------
    def training_step(self, model, x, y):
        if self.stateful:
            logits, state = model.forward_with_state(x, self._state)  # (B, L, V)
            self._state = detach_state(state)
        else:
            logits = model(x)  # (B, L, V)
        loss = self.loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        self._nll = loss.detach().float() * y.numel() if self._loss_is_nll else None
        return loss, logits

    def start_epoch(self) -> None:
        self._state = None  # each epoch reads the streams from their start

    def carry_state(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            return {}
        state = (self._state,) if isinstance(self._state, torch.Tensor) else self._state
        return {f"state{i}": s for i, s in enumerate(state)}

    def load_carry_state(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            self._state = None
            return
        parts = tuple(state[f"state{i}"] for i in range(len(state)))
        self._state = parts[0] if len(parts) == 1 else parts

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = outputs.reshape(-1, outputs.shape[-1])
        nll, self._nll = self._nll, None
        if nll is None:  # the loss is not the plain NLL (smoothing, class weights): compute it
            nll = F.cross_entropy(logits.float(), y.reshape(-1), reduction="sum")
        correct = (logits.argmax(-1) == y.reshape(-1)).sum()
        return torch.stack([nll, correct.float()])

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        tokens = max(1, num_samples * self.window)
        nll, correct = stats.tolist()
        return {
            "bits_per_char": nll / tokens / self.chars_per_token / math.log(2),
            "token_accuracy": correct / tokens,
        }

    # --- evaluation -------------------------------------------------------------------------
    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, L, 3): NLL in nats, 1.0 where the argmax is right, and the argmax id, per target
        position. Inputs may hold extra context in front of the scored window (x longer than y)."""
        self._model = model
        if y.ndim != 2:  # predict(): no targets, keep the logits of the last position
            return model(x)[:, -1].float()  # (B, V)
        logits = model(x)[:, -y.shape[1] :].float()  # (B, L, V)
        nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, L)
        pred = logits.argmax(-1)  # (B, L)
        return torch.stack([nll, (pred == y).float(), pred.float()], dim=-1)

    def evaluate(self, outputs, y, full=True):
        nll, correct, pred = outputs.unbind(-1)  # (N, L) each
        tokens = nll.numel()
        total = float(nll.double().sum())
        loss = total / max(1, tokens)
        cpt = self.chars_per_token_by_targets.get(str(tokens), self.chars_per_token)
        metrics = {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "bits_per_char": total / max(1e-9, tokens * cpt) / math.log(2),
            "token_accuracy": float(correct.double().mean()) if tokens else 0.0,
        }
        if not full:
            return metrics, None, {}
        details: dict[str, Any] = {
            "task_type": "language_model",
            "tokens": tokens,
            "characters": round(tokens * cpt),
            "bits_per_char": metrics["bits_per_char"],
            "perplexity": metrics["perplexity"],
            "loss_by_position": nll.double().mean(0).tolist(),  # context helps later positions
            "samples": self.generate_samples(),
            "sampling": {
                "temperature": self.temperature,
                "top_k": self.top_k,
                "top_p": self.top_p,
                "seed": self.sample_seed,
            },
        }
        y_np = y.cpu().numpy().astype(np.int32)
        preds = {"y_true": y_np, "y_pred": pred.cpu().numpy().astype(np.int32)}
        return metrics, details, preds

    def generate_samples(self) -> list[dict[str, str]]:
        """Continuations of ``prompts`` by the last evaluated model (empty without one)."""
        if not self.samples or self._model is None or not self.tokenizer:
            return []
        from deepworks.data.text.tokenizers import tokenizer_from_dict
        from deepworks.generate import sample_text

        tok = tokenizer_from_dict(self.tokenizer)
        out = []
        for i in range(self.samples):
            prompt = self.prompts[i % len(self.prompts)]
            text = sample_text(
                self._model,
                tok,
                prompt,
                self.sample_length,
                self.temperature,
                self.top_k,
                self.top_p,
                seed=self.sample_seed + i,
            )
            out.append({"prompt": prompt, "text": text})
        return out

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        """Next-token distribution after each input window: (N, V) logits of the last position."""
        prob = outputs.float().softmax(-1).cpu().numpy()
        return {"y_pred": prob.argmax(-1), "y_prob": prob}
