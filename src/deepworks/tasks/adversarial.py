"""Adversarial training: fit the model on the worst inputs of the threat model, not the given ones.

**PGD-AT** (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR
2018) trains on a saddle-point problem,

    min_theta  E_(x,y) [ max_{||delta||_inf <= eps}  CE(f_theta(x + delta), y) ],

solving the inner maximization approximately with PGD against the current weights at every step
(see :mod:`deepworks.attacks.pgd`) and taking the gradient step on those adversarial examples.
``mix`` > 0 adds the clean loss, ``(1 - mix) * CE(f(x_adv), y) + mix * CE(f(x), y)`` (Goodfellow
et al. 2015's mixed objective), which trades robustness for clean accuracy.

**TRADES** (Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy",
ICML 2019) splits the robust error into the natural error and a boundary term, and minimizes

    CE(f(x), y) + beta * max_{||x' - x||_inf <= eps} KL(f(x) || f(x')),

with f(.) the softmax output. The inner maximization is PGD on the KL itself (starting at
x + 0.001 * N(0, I)), not on the cross-entropy, and the KL is averaged over the batch. As in the
authors' code, the KL is ``KLDivLoss(log_softmax(f(x')), softmax(f(x)))``: the clean
distribution is the reference, and gradients flow through both terms. beta = 1 favours clean
accuracy, beta = 6 robustness.

Both tasks generate their adversarial examples with the model in **eval mode** (batch norm uses
its running statistics and is not updated by the attack's forward passes; no dropout), as in
the TRADES reference code, then take the training step in train mode. Random starts draw from
the global RNG, which checkpoints save and restore, so a resumed run continues exactly.

Everything else is the classification task's: metrics, predictions and the report. The test
metrics add the PGD robust accuracy at each ``eval_eps`` (``test/robust_accuracy@0.1``), and
:meth:`save_pictures` writes the robust-accuracy-vs-eps curve of the test split to
``robustness.json`` for the report.
Attacks act in the raw input space (see :mod:`deepworks.attacks.common`): with ``data.scale:
none`` the digits' pixels are in [0, 1] and eps = 0.1 is a tenth of the full intensity range.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.attacks.common import (
    InputSpaceModel,
    check_eps,
    clean_accuracy,
    eval_mode,
    run_attack,
)
from deepworks.attacks.pgd import PGD
from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle, Split, invert_scaler
from deepworks.errors import ConfigError
from deepworks.evaluate.specs import MetricSpec
from deepworks.registry import register_task
from deepworks.rundir import ROBUSTNESS
from deepworks.tasks.classification import Classification
from deepworks.utils import atomic_write_text


class AdversarialClassification(Classification):
    """Classification trained on adversarial examples; shared by PGD-AT and TRADES.

    Args:
        eps: L-inf budget of the training attack, in raw input units.
        alpha: PGD step size (default 2.5 * eps / steps).
        steps: PGD steps per training batch.
        clip_min: Smallest valid raw input (default: the training inputs' minimum).
        clip_max: Largest valid raw input (default: the training inputs' maximum).
        eval_eps: Budgets of the robust accuracy reported for the test split (default: [eps]).
        eval_steps: PGD steps of that evaluation (and of the robustness curve).
        curve_eps: Budgets of the robustness curve written for the report (0 = clean).
        curve_samples: Test samples the curve is measured on (the first ones).
        top_k: Report top-k accuracy for these k (when k < number of classes).
    """

    #: The cross-entropy only: the loss PGD maximizes.
    losses = ("cross_entropy",)
    metrics = (
        MetricSpec(
            "robust_accuracy@*", "max", headline=True, label="Robust accuracy (eps {})", fmt=".2%"
        ),
    )

    def __init__(
        self,
        eps: float = 0.1,
        alpha: float | None = None,
        steps: int = 10,
        clip_min: float | None = None,
        clip_max: float | None = None,
        eval_eps: list[float] | None = None,
        eval_steps: int = 20,
        curve_eps: list[float] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3),
        curve_samples: int = 1000,
        top_k: list[int] | tuple[int, ...] = (3, 5),
    ):
        super().__init__(top_k)
        if steps < 1 or eval_steps < 1:
            raise ConfigError("task: steps and eval_steps must be at least 1")
        self.eps, self.steps = float(eps), int(steps)
        self.alpha = float(alpha) if alpha is not None else 2.5 * self.eps / self.steps
        self.clip_min, self.clip_max = clip_min, clip_max
        self.eval_eps = [float(e) for e in (eval_eps if eval_eps is not None else [eps])]
        self.eval_steps = int(eval_steps)
        self.curve_eps, self.curve_samples = [float(e) for e in curve_eps], int(curve_samples)
        self.scaler: dict[str, Any] | None = None
        self._model: nn.Module | None = None
        self._wrapped: InputSpaceModel | None = None
        self._splits: dict[str, Split] = {}
        self._robust: dict[tuple, float] = {}

    # --- set-up -----------------------------------------------------------------------------
    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        super().setup(data, loss, device, model)
        if self.outputs_probs:
            raise ConfigError(
                f"task.name: {self.name} needs a model that returns logits (no softmax layer)"
            )
        if not isinstance(data.train, Split):
            raise ConfigError(f"task.name: {self.name} needs in-memory data (not a lazy dataset)")
        self.scaler = data.scaler
        raw = self.to_raw(data.train.x)
        if self.clip_min is None:
            self.clip_min = float(raw.min())
        if self.clip_max is None:
            self.clip_max = float(raw.max())
        if not self.clip_max > self.clip_min:
            raise ConfigError(
                f"task: the input range [{self.clip_min:g}, {self.clip_max:g}] is empty; "
                "set task.clip_min and task.clip_max"
            )
        for name, eps in [("eps", self.eps)] + [("eval_eps", e) for e in self.eval_eps]:
            try:
                check_eps(eps, "linf", self.clip_min, self.clip_max, data.num_features)
            except ConfigError as exc:
                raise ConfigError(f"task.{name}: {exc}") from exc
        self._model = model
        self._splits = {"test": data.test} if isinstance(data.test, Split) else {}
        self._robust: dict[tuple, float] = {}
        self.attack = PGD(self.eps, self.clip_min, self.clip_max, self.steps, self.alpha)

    def state(self) -> dict:
        return super().state() | {"clip_min": self.clip_min, "clip_max": self.clip_max}

    def to_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs (scaled like the training data) -> raw inputs."""
        return invert_scaler(x, self.scaler)

    def input_space(self, model: nn.Module) -> InputSpaceModel:
        """``model`` seen from the raw input space (cached while the model stays the same)."""
        if self._wrapped is None or self._wrapped.model is not model:
            device = next(model.parameters()).device
            self._wrapped = InputSpaceModel(model, self.scaler).to(device)
        return self._wrapped

    # --- the step -----------------------------------------------------------------------------
    def adversarial_raw(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """PGD examples (raw input space) against the current weights, made in eval mode."""
        wrapped = self.input_space(model)
        with eval_mode(model):
            return self.attack(wrapped, self.to_raw(x), y)  # global RNG: restored on resume

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(self, outputs, y, full=True):
        metrics, details, preds = super().evaluate(outputs, y, full)
        test = self._splits.get("test")
        if full and test is not None and self._model is not None and self._is(test, y):
            for eps in self.eval_eps:
                metrics[f"robust_accuracy@{eps:g}"] = self.robust_accuracy(self._model, test, eps)
        return metrics, details, preds

    @staticmethod
    def _is(split: Split, y: torch.Tensor) -> bool:
        """Whether ``y`` are the targets of ``split`` (evaluate sees outputs and targets only)."""
        return len(split.y) == len(y) and torch.equal(split.y.cpu(), y.cpu())

    def robust_accuracy(self, model: nn.Module, split: Split, eps: float, n: int | None = None):
        """PGD-``eval_steps`` robust accuracy of the first n samples of ``split`` at ``eps``.

        Remembered for the current weights, so the robustness curve reuses the test metrics."""
        n = len(split) if n is None else min(n, len(split))
        weights = float(sum(p.detach().double().sum() for p in model.parameters()))
        key = (id(split), n, float(eps), weights)
        if key not in self._robust:
            x, y = self.to_raw(split.x[:n]), split.y[:n]
            if eps == 0:
                acc = clean_accuracy(self.input_space(model), x, y)
            else:
                attack = PGD(eps, self.clip_min, self.clip_max, self.eval_steps)
                out = run_attack(self.input_space(model), x, y, attack, batch_size=256, seed=0)
                acc = float(((out["clean_pred"] == y) & (out["adv_pred"] == y)).float().mean())
            self._robust[key] = acc
        return self._robust[key]

    def save_pictures(self, model: nn.Module, data: DataBundle, run_dir) -> None:
        """``robustness.json``: PGD robust accuracy vs eps on the test split, for the report."""
        split = data.test if isinstance(data.test, Split) else None
        if split is None or run_dir is None:
            return
        split = self._splits.get("test", split)  # the same object as in evaluate: reuse
        largest = self.clip_max - self.clip_min
        n = min(len(split), self.curve_samples)
        curve = [
            {"eps": e, "accuracy": self.robust_accuracy(model, split, e, n)}
            for e in self.curve_eps
            if 0 <= e <= largest
        ]
        info = {
            "task": self.name,
            "attack": "pgd",
            "norm": "linf",
            "steps": self.eval_steps,
            "split": "test",
            "samples": n,
            "train_eps": self.eps,
            "clip": [self.clip_min, self.clip_max],
            "curve": curve,
        }
        atomic_write_text(Path(run_dir) / ROBUSTNESS, json.dumps(info, indent=1))


@register_task("adversarial_training")
class AdversarialTraining(AdversarialClassification):
    """PGD adversarial training (Madry et al. 2018): train on PGD examples of the current model.

    Args:
        mix: Weight of the clean loss: (1 - mix) * CE(adversarial) + mix * CE(clean).
        **kwargs: The attack and evaluation options of :class:`AdversarialClassification`
            (eps, alpha, steps, clip_min, clip_max, eval_eps, eval_steps, curve_eps,
            curve_samples, top_k).
    """

    name = "adversarial_training"

    def __init__(self, mix: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        if not 0 <= mix <= 1:
            raise ConfigError(f"task.mix: {mix} must be in [0, 1]")
        self.mix = float(mix)

    def training_step(self, model, x, y):
        x_adv = self.input_space(model).scale_in(self.adversarial_raw(model, x, y))
        outputs = model(x_adv)  # (B, K): train/accuracy is the accuracy under attack
        loss = self.loss_fn(outputs, y)
        if self.mix > 0:
            loss = (1 - self.mix) * loss + self.mix * self.loss_fn(model(x), y)
        return loss, outputs


def trades_loss(
    clean_logits: torch.Tensor,
    adv_logits: torch.Tensor,
    y: torch.Tensor,
    beta: float,
    ce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> torch.Tensor:
    """CE(f(x), y) + beta * KL(softmax(f(x)) || softmax(f(x'))), the KL averaged over the batch.

    ``ce`` is the natural loss (the run's cross-entropy, e.g. with label smoothing)."""
    kl = F.kl_div(
        F.log_softmax(adv_logits, dim=1), F.softmax(clean_logits, dim=1), reduction="batchmean"
    )
    return ce(clean_logits, y) + beta * kl


@register_task("trades")
class TRADES(AdversarialClassification):
    """TRADES (Zhang et al. 2019): clean cross-entropy + beta * KL to the worst nearby input.

    Args:
        beta: Weight of the robustness (KL) term: 1 favours clean accuracy, 6 robustness.
        **kwargs: The attack and evaluation options of :class:`AdversarialClassification`
            (eps, alpha and steps of the KL maximization, clip_min, clip_max, eval_eps,
            eval_steps, curve_eps, curve_samples, top_k).
    """

    name = "trades"

    def __init__(self, beta: float = 6.0, **kwargs: Any):
        super().__init__(**kwargs)
        if beta < 0 or not math.isfinite(beta):
            raise ConfigError(f"task.beta: {beta} must be a finite number >= 0")
        self.beta = float(beta)

    def kl_adversarial_raw(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """x' maximizing KL(f(x) || f(x')) in the eps-ball by signed-gradient ascent (raw space)."""
        wrapped = self.input_space(model)
        raw = self.to_raw(x).detach()
        with eval_mode(model), torch.enable_grad():
            with torch.no_grad():
                p_clean = F.softmax(wrapped(raw), dim=1)  # (B, K), fixed during the attack
            x_adv = raw + 0.001 * torch.randn_like(raw)  # global RNG: restored on resume
            for _ in range(self.steps):
                x_adv.requires_grad_(True)
                kl = F.kl_div(F.log_softmax(wrapped(x_adv), dim=1), p_clean, reduction="sum")
                (grad,) = torch.autograd.grad(kl, x_adv)
                x_adv = x_adv.detach() + self.alpha * grad.sign()
                x_adv = torch.min(torch.max(x_adv, raw - self.eps), raw + self.eps)
                x_adv = x_adv.clamp(self.clip_min, self.clip_max)
        return x_adv.detach()

    def training_step(self, model, x, y):
        x_adv = self.input_space(model).scale_in(self.kl_adversarial_raw(model, x))
        clean = model(x)  # (B, K): train/accuracy is the clean accuracy
        loss = trades_loss(clean, model(x_adv), y, self.beta, self.loss_fn)
        return loss, clean
