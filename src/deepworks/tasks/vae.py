"""Training a variational autoencoder: maximize the ELBO (minimize its negative).

For one sample, with the encoder's ``q(z|x) = N(μ, diag σ²)`` and one reparameterized draw ``z``
(see ``deepworks.models.vae``), the loss is the negative evidence lower bound

    −ELBO = −log p(x|z) + β · KL(q(z|x) ‖ N(0, I)),

summed over the data's values and latent dimensions and averaged over the batch, so it reads in
nats per sample. The two terms:

- reconstruction NLL, Bernoulli: ``−Σ_i [x_i log p_i + (1 − x_i) log(1 − p_i)]`` with
  ``p = sigmoid(logits)`` (binary cross-entropy, also for grey values in [0, 1]); Gaussian:
  ``Σ_i [(x_i − m_i)² / 2σ² + log σ + ½ log 2π]``;
- KL of two Gaussians, in closed form: ``−½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)``.

``β = 1`` is the ELBO proper; ``β > 1`` (β-VAE, Higgins et al., 2017) trades reconstruction for a
more factorized code. *KL warm-up* (Bowman et al., 2016; Sønderby et al., 2016) ramps β linearly
from 0 over the first steps, so the decoder learns to use z before the KL term pulls q(z|x)
onto the prior (otherwise the KL term can win early and the code collapses). The ramp follows
the task's own step counter, saved in checkpoints, so a resumed run continues it exactly.

Metrics per split: ``elbo`` (nats per sample, higher is better; ``loss`` = −elbo, with β = 1),
``recon`` and ``kl``. On the test split, samples from the prior are scored against held-out
images with :mod:`deepworks.evaluate.generative` (digits-FID, the noise baseline, the real-data
floor and, for a conditional VAE, how often a sample is classified as the class it was drawn for).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepworks.config import LossConfig, TrainConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import ConfigError
from deepworks.evaluate.generative import SAMPLE_QUALITY_METRICS
from deepworks.evaluate.specs import MetricSpec
from deepworks.registry import register_task
from deepworks.rundir import VAE_PICTURES
from deepworks.tasks.base import Task
from deepworks.utils import atomic_write_bytes

#: File with the report's pictures (prior samples, interpolations, reconstructions).
PICTURES = VAE_PICTURES


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per sample: −½ Σ_j (1 + log σ² − μ² − σ²), shape (B,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def reconstruction_nll(
    decoded: torch.Tensor,
    x: torch.Tensor,
    likelihood: str = "bernoulli",
    log_sigma: torch.Tensor | None = None,
) -> torch.Tensor:
    """−log p(x|z) per sample (B,), summed over the data's values.

    Args:
        decoded: The decoder's output: Bernoulli logits or Gaussian means, shaped like ``x``.
        likelihood: "bernoulli" or "gaussian".
        log_sigma: log σ of the Gaussian likelihood (a scalar; 0 when None).
    """
    decoded, x = decoded.flatten(1), x.flatten(1)  # (B, D) each, whatever the data's shape
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(decoded, x, reduction="none")
    else:
        log_sigma = decoded.new_zeros(()) if log_sigma is None else log_sigma
        z = (x - decoded) * torch.exp(-log_sigma)
        nll = 0.5 * z.pow(2) + log_sigma + 0.5 * math.log(2 * math.pi)
    return nll.sum(dim=1)


@register_task("vae")
class VAETask(Task):
    """Train a VAE (``model: {name: vae}``) on the negative ELBO.

    Args:
        beta: Weight of the KL term once warmed up (1: the ELBO; > 1: a β-VAE).
        kl_warmup_epochs: Ramp the KL weight linearly from 0 to ``beta`` over this many epochs.
        kl_warmup_steps: The same in training steps (batches); give one of the two.
        seed: Seed of the noise used in evaluation (z draws and prior samples), so evaluating
            twice gives the same numbers and the run's random streams are left alone.
    """

    name = "vae"
    losses = ()  # the negative ELBO, built in (no registered loss to choose)
    metrics = (
        MetricSpec("elbo", "max", headline=True, label="ELBO"),
        MetricSpec("recon", "min", label="Reconstruction NLL"),
        MetricSpec("kl", None, label="KL(q(z|x) ‖ p(z))"),
        *SAMPLE_QUALITY_METRICS,
    )

    def __init__(
        self,
        beta: float = 1.0,
        kl_warmup_epochs: float = 0.0,
        kl_warmup_steps: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if beta < 0:
            raise ConfigError(f"task.beta: {beta} must be >= 0 (1 is the ELBO)")
        if kl_warmup_epochs < 0 or kl_warmup_steps < 0:
            raise ConfigError("task.kl_warmup_epochs / kl_warmup_steps must be >= 0")
        if kl_warmup_epochs and kl_warmup_steps:
            raise ConfigError(
                "task: give kl_warmup_epochs or kl_warmup_steps, not both (one ramp length)"
            )
        self.beta, self.seed = beta, seed
        self.kl_warmup_epochs, self.kl_warmup_steps = kl_warmup_epochs, kl_warmup_steps
        self.warmup_steps = kl_warmup_steps  # in training batches; set from epochs once known
        self.step = 0  # training batches done: the position on the KL ramp (checkpointed)
        self.data: DataBundle | None = None
        self.data_shape: tuple[int, ...] = ()
        self.conditional = False
        self._model: torch.nn.Module | None = None

    # --- set-up -----------------------------------------------------------------------------
    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int | None:
        """The model's ``num_classes``: the data's classes, None when it has none (a
        conditional VAE then refuses it)."""
        return data.num_classes if data.task_type == "classification" else None

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        if loss.name is not None or loss.class_weights is not None:
            raise ConfigError(
                "train.loss: the vae task trains on the negative ELBO; remove train.loss"
            )
        if model is not None and not hasattr(model, "encode"):
            raise ConfigError(
                f"task.name: 'vae' trains a VAE, not {type(model).__name__}; use model: "
                "{name: vae}"
            )
        self.data_info = data.describe() | {"class_names": data.class_names}
        self.data, self.data_shape = data, tuple(data.input_shape)
        self.conditional = bool(getattr(model, "conditional", False))
        likelihood = getattr(model, "likelihood", "bernoulli")
        if likelihood == "bernoulli" and isinstance(data.train, Split) and len(data.train):
            lo, hi = float(data.train.x.min()), float(data.train.x.max())
            if lo < 0 or hi > 1:
                raise ConfigError(
                    f"model.likelihood: bernoulli needs data in [0, 1], but {data.name} ranges "
                    f"over [{lo:.3g}, {hi:.3g}]; set data.scale: none (or minmax), or "
                    "model.likelihood: gaussian"
                )

    def configure_optimizers(self, model, train: TrainConfig, steps_per_epoch: int):
        if self.kl_warmup_epochs:
            batches = steps_per_epoch * train.accumulate
            self.warmup_steps = max(1, round(self.kl_warmup_epochs * batches))
        return super().configure_optimizers(model, train, steps_per_epoch)

    def state(self) -> dict[str, Any]:
        # restored by the Trainer on resume (after setup and configure_optimizers)
        return {"step": self.step, "warmup_steps": self.warmup_steps}

    # --- the step ---------------------------------------------------------------------------
    def kl_weight(self, step: int | None = None) -> float:
        """β at training step ``step`` (default: the next one): β · min(1, step / warm-up)."""
        step = self.step if step is None else step
        if not self.warmup_steps:
            return self.beta
        return self.beta * min(1.0, step / self.warmup_steps)

    def _labels(self, y: torch.Tensor) -> torch.Tensor | None:
        return y.long() if self.conditional else None

    def terms(
        self, model, decoded: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, x
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction NLL, KL), each (B,), in fp32 whatever the autocast."""
        log_sigma = getattr(model, "log_sigma", None)
        likelihood = getattr(model, "likelihood", "bernoulli")
        recon = reconstruction_nll(decoded.float(), x.float(), likelihood, log_sigma)
        return recon, kl_divergence(mu.float(), logvar.float())

    def training_step(self, model, x, y):
        weight = self.kl_weight()
        self.step += 1
        decoded, mu, logvar = model(x, self._labels(y))
        recon, kl = self.terms(model, decoded, mu, logvar, x)
        loss = (recon + weight * kl).mean()
        return loss, torch.stack([recon, kl], dim=1)  # (B, 2): per-sample terms for the logs

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return outputs[:, :2].sum(dim=0)  # (2,) sums of recon and KL, kept on the device

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        recon, kl = (float(v) / max(1, num_samples) for v in stats)
        return {"elbo": -(recon + kl), "recon": recon, "kl": kl}

    # --- evaluation -------------------------------------------------------------------------
    def _generator(self, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed)

    def eval_step(self, model, x, y):
        """Per sample: [recon NLL, KL, reconstruction (D values), input (D values)].

        The ELBO is estimated with one z per sample drawn from a generator seeded the same for
        every batch (the global RNG is not touched); the reconstruction shown is the decoder's
        mean at z = μ."""
        self._model = model
        labels = self._labels(y)
        mu, logvar = model.encode(x, labels)
        z = model.reparameterize(mu, logvar, generator=self._generator(x.device))
        recon, kl = self.terms(model, model.decode(z, labels), mu, logvar, x)
        x_hat = model.mean(model.decode(mu, labels)).float()
        return torch.cat([recon[:, None], kl[:, None], x_hat.flatten(1), x.flatten(1)], dim=1)

    def evaluate(self, outputs, y, full=True):
        recon, kl = outputs[:, 0].double(), outputs[:, 1].double()
        elbo = -(recon + kl)
        metrics = {
            "loss": float(-elbo.mean()),
            "elbo": float(elbo.mean()),
            "recon": float(recon.mean()),
            "kl": float(kl.mean()),
        }
        if not full:
            return metrics, None, {}
        n, d = len(outputs), (outputs.shape[1] - 2) // 2
        shape = self._shape(d)
        x_hat = outputs[:, 2 : 2 + d].reshape(n, *shape)
        x = outputs[:, 2 + d :].reshape(n, *shape)
        quality = self.sample_quality(x, y) if n > 1 else {}
        metrics |= quality
        details = {
            "task_type": "vae",
            "beta": self.beta,
            "conditional": self.conditional,
            "likelihood": getattr(self._model, "likelihood", None),
            "latent_dim": getattr(self._model, "latent_dim", None),
            "metrics": metrics,
        }
        preds = {
            "y_true": y.cpu().numpy(),
            "y_pred": x_hat.cpu().numpy(),  # reconstructions (means of p(x|z = μ))
            "elbo": elbo.float().cpu().numpy(),
            "recon": recon.float().cpu().numpy(),
            "kl": kl.float().cpu().numpy(),
        }
        return metrics, details, preds

    def sample_quality(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """FID of as many prior samples as ``x`` has images, against ``x``; for a conditional
        VAE one sample per label of ``y`` and the share classified as that label."""
        from deepworks.evaluate.generative import real_floor, reference_classifier, sample_quality

        data, model = self.data, self._model
        if model is None or data is None or data.num_classes is None:
            return {}
        if not isinstance(data.train, Split) or len(x) < 2:
            return {}
        device = next(model.parameters()).device
        labels = y.long().to(device) if self.conditional else None
        samples = model.sample(len(x), labels, generator=self._generator(device))
        reference = reference_classifier(data)
        return sample_quality(
            samples.float().cpu(),
            None if labels is None else labels.cpu(),
            x.cpu(),
            reference,
            real_reference=real_floor(data, len(x)),
            seed=self.seed,
        )

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        """Per input: the ELBO as the prediction (a one-sample estimate of log p(x), low for
        inputs unlike the training data) and the reconstruction. A conditional VAE is given
        no labels here, so its figures are those for class 0."""
        d = (outputs.shape[1] - 2) // 2
        elbo = -(outputs[:, 0] + outputs[:, 1]).cpu().numpy()
        recon = outputs[:, 2 : 2 + d].reshape(len(outputs), *self._shape(d)).cpu().numpy()
        return {"y_pred": elbo, "reconstruction": recon}

    def _shape(self, d: int) -> tuple[int, ...]:
        """The data's shape for ``d`` values per sample (flat when the task was not set up)."""
        return self.data_shape if self.data_shape and math.prod(self.data_shape) == d else (d,)

    # --- pictures for the report ------------------------------------------------------------
    @torch.no_grad()
    def save_pictures(self, model, data: DataBundle, run_dir) -> None:
        """Prior samples (a 10 x 10 grid; one row per class for a conditional VAE), latent
        interpolations between pairs of test images, and test reconstructions, into
        ``run_dir/vae_pictures.npz`` for the report."""
        split = data.test or data.val
        if run_dir is None or not isinstance(split, Split) or len(split) < 2:
            return
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        g = self._generator(device)
        arrays: dict[str, np.ndarray] = {}
        if isinstance(data.train, Split) and len(data.train):  # the grey scale of the pictures
            arrays["value_range"] = np.array([data.train.x.min(), data.train.x.max()])
        labels = None
        if self.conditional:  # row c of the grid: ten samples of class c
            labels = torch.arange(data.num_classes, device=device).repeat_interleave(10)
        n = len(labels) if labels is not None else 100
        arrays["samples"] = model.sample(n, labels, generator=g).float().cpu().numpy()
        if labels is not None:
            arrays["sample_labels"] = labels.cpu().numpy()
        x, y = split.x.to(device), split.y.to(device)
        pairs = _interpolation_pairs(y.cpu(), same_class=self.conditional)
        if pairs:
            a, b = (torch.tensor(p, device=device) for p in zip(*pairs, strict=True))
            ya = self._labels(y[a]) if self.conditional else None
            mu_a, _ = model.encode(x[a], ya)
            mu_b, _ = model.encode(x[b], ya)
            t = torch.linspace(0, 1, 8, device=device)[None, :, None]  # (1, T, 1)
            z = (1 - t) * mu_a[:, None] + t * mu_b[:, None]  # (P, T, latent)
            yz = None if ya is None else ya.repeat_interleave(t.shape[1])
            frames = model.mean(model.decode(z.flatten(0, 1), yz))  # (P·T, *data_shape)
            frames = frames.view(len(a), t.shape[1], *frames.shape[1:])  # (P, T, *data_shape)
            arrays["interpolation"] = frames.cpu().numpy()
            arrays["interpolation_ends"] = torch.stack([x[a], x[b]], 1).cpu().numpy()
        shown = torch.arange(min(16, len(x)), device=device)
        labels_shown = self._labels(y[shown]) if self.conditional else None
        mu, _ = model.encode(x[shown], labels_shown)
        arrays["originals"] = x[shown].cpu().numpy()
        arrays["reconstructions"] = model.mean(model.decode(mu, labels_shown)).cpu().numpy()
        model.train(was_training)
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
        atomic_write_bytes(Path(run_dir) / PICTURES, buf.getvalue())


def _interpolation_pairs(y: torch.Tensor, same_class: bool, n: int = 6) -> list[tuple[int, int]]:
    """Up to ``n`` pairs of indices, each starting from another class: both ends of the same
    class (to show style varying within a class) or of different classes (to show one digit
    turning into another); the first matches in the split's order."""
    pairs: list[tuple[int, int]] = []
    starts: set[int] = set()
    labels = y.tolist()
    for i, yi in enumerate(labels):
        if len(pairs) == n:
            break
        if yi in starts:
            continue
        j = next((j for j in range(i + 1, len(labels)) if (labels[j] == yi) == same_class), None)
        if j is not None:
            pairs.append((i, j))
            starts.add(yi)
    return pairs
