"""Adversarial training: a discriminator step, then (every ``n_critic`` steps) a generator step.

Each training batch of real samples x (and labels y for a conditional GAN) runs:

1. **D step.** Fakes ``x̃ = G(z)``, ``z ~ N(0, I)``; D is trained to tell x from x̃:

   * ``bce`` (the original GAN, DCGAN): ``L_D = −log σ(D(x)) − log(1 − σ(D(x̃)))``; with
     ``label_smoothing: s`` the real target is 1 − s (Salimans et al., 2016), which keeps D from
     growing over-confident logits that give G vanishing gradients.
   * ``hinge`` (SAGAN, BigGAN): ``L_D = max(0, 1 − D(x)) + max(0, 1 + D(x̃))``.
   * ``wgan_gp`` (Gulrajani et al., 2017): D is a critic estimating the Wasserstein distance
     ``W = E[D(x)] − E[D(x̃)]``; ``L_D = −W + λ E[(‖∇D(x̂)‖₂ − 1)²]`` with
     ``x̂ = ε x + (1 − ε) x̃``, ``ε ~ U[0, 1]`` per sample: the gradient penalty keeps the critic
     1-Lipschitz, which the Kantorovich–Rubinstein duality behind W requires.

2. **G step** (after every ``n_critic``-th D step: WGAN-GP trains the critic 5 times per
   generator step, so G always learns from a nearly optimal critic). G is trained to fool the
   updated D: ``bce`` uses the non-saturating loss ``L_G = −log σ(D(x̃))`` (strong gradients
   when D rejects the fakes), ``hinge`` and ``wgan_gp`` use ``L_G = −D(x̃)``.

Instance noise (Sønderby et al., 2017): Gaussian noise of standard deviation ``instance_noise``,
annealed linearly to 0 over the planned training steps, is added to every input of D, so the
real and fake distributions overlap early on and D cannot separate them perfectly.

Divergence: a non-finite loss of either player, or a saturated discriminator (``bce`` /
``hinge``: it scores ≥ 99% of real samples as real while giving the fakes a mean probability
< 1% for ``saturation_steps`` consecutive steps, so G learns nothing) raise
:class:`~deepworks.tasks.base.Diverged`, which stops the run and names the last good checkpoint.

Logged per epoch: ``train/d_loss``, ``train/g_loss``, ``train/d_real`` (D(x)), ``train/d_fake``
(D(G(z))) — probabilities for ``bce``, raw scores otherwise — and for WGAN-GP ``train/wasserstein``
and ``train/gp``. ``loss`` is D's loss without the gradient penalty (for WGAN-GP: −W), the same
quantity as ``val/loss``: D's loss on real validation data against fresh fakes, whose gap to the
training value shows D memorizing the training set. When the data has labels, ``val/fid`` is
the digits-FID (see :mod:`deepworks.evaluate.generative`) of fakes against the validation split;
the test split adds the noise baseline, the real-data floor and, for a conditional GAN, the
class accuracy of samples generated for the test labels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.config import LossConfig, OptimizerConfig, TrainConfig
from deepworks.data.bundle import DataBundle
from deepworks.errors import ConfigError
from deepworks.evaluate.generative import SAMPLE_QUALITY_METRICS
from deepworks.evaluate.specs import MetricSpec
from deepworks.optim import OptimizerSet
from deepworks.registry import CALLBACKS, register_task
from deepworks.rundir import SAMPLES
from deepworks.tasks.base import Diverged, Task

#: Columns of the per-step statistics vector (``training_step``'s outputs).
STATS = ("d_loss", "loss", "g_loss", "g_steps", "d_real", "d_fake", "wasserstein", "gp", "steps")
#: Defaults per loss: (lr, betas, n_critic) — DCGAN's and the WGAN-GP paper's.
DEFAULTS = {
    "bce": (2e-4, (0.5, 0.999), 1),
    "hinge": (2e-4, (0.5, 0.999), 1),
    "wgan_gp": (1e-4, (0.0, 0.9), 5),
}
LOSSES = tuple(DEFAULTS)
SAMPLE_SEED = 1234  # the fixed noise of the per-epoch sample grids


def discriminator_loss(
    loss: str, d_real: torch.Tensor, d_fake: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """D's loss from its scores (B,) of real and fake samples (no gradient penalty)."""
    if loss == "bce":
        real = F.binary_cross_entropy_with_logits(
            d_real, torch.full_like(d_real, 1 - label_smoothing)
        )
        fake = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        return real + fake
    if loss == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    return d_fake.mean() - d_real.mean()  # wgan_gp: −W


def generator_loss(loss: str, d_fake: torch.Tensor) -> torch.Tensor:
    """G's loss from D's scores (B,) of its samples: non-saturating for bce, −D otherwise."""
    if loss == "bce":
        return F.softplus(-d_fake).mean()  # −log σ(D(G(z)))
    return -d_fake.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP's penalty ``E[(‖∇ₓ D(x̂)‖₂ − 1)²]`` at ``x̂ = ε real + (1 − ε) fake``.

    Args:
        critic: x (B, ...) → scores (B,).
        eps: Mixing weights (B,); drawn from U[0, 1] when None.
    """
    if eps is None:
        eps = torch.rand(len(real), device=real.device)
    eps = eps.view(-1, *[1] * (real.ndim - 1))
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)  # (B, ...)
    # create_graph: the penalty is itself differentiated when D steps
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


@register_task("gan")
class GANTask(Task):
    """Adversarial training of a ``gan`` model (bce, hinge or WGAN-GP; n_critic, label
    smoothing, instance noise, divergence stops).

    Args:
        loss: "bce" (non-saturating GAN), "hinge" or "wgan_gp".
        g_lr: Generator Adam learning rate (default 2e-4; WGAN-GP 1e-4).
        d_lr: Discriminator Adam learning rate (same defaults).
        betas: Adam betas of both players (default (0.5, 0.999); WGAN-GP (0.0, 0.9)).
        n_critic: D steps per G step (default 1; WGAN-GP 5).
        gp_weight: λ of the gradient penalty (WGAN-GP).
        label_smoothing: s: real samples get target 1 − s in D's bce loss.
        instance_noise: Start std of the Gaussian noise added to D's inputs, annealed to 0.
        saturation_steps: Consecutive saturated D steps that stop training (0: never).
    """

    name = "gan"
    metrics = (
        *SAMPLE_QUALITY_METRICS,
        MetricSpec("g_loss", "min", label="Generator loss"),
        MetricSpec("d_loss", "min", label="Discriminator loss"),
        MetricSpec("d_real", None, label="D(real)"),
        MetricSpec("d_fake", None, label="D(fake)"),
        MetricSpec("wasserstein", None, label="Wasserstein estimate"),
        MetricSpec("gp", "min", label="Gradient penalty"),
    )
    manual_optimization = True

    def __init__(
        self,
        loss: Literal["bce", "hinge", "wgan_gp"] = "bce",
        g_lr: float | None = None,
        d_lr: float | None = None,
        betas: tuple[float, float] | None = None,
        n_critic: int | None = None,
        gp_weight: float = 10.0,
        label_smoothing: float = 0.0,
        instance_noise: float = 0.0,
        saturation_steps: int = 300,
    ):
        super().__init__()
        if loss not in DEFAULTS:
            raise ConfigError(f"task.loss: {loss!r} is not a GAN loss (choices: {LOSSES})")
        lr, default_betas, critic = DEFAULTS[loss]
        self.loss = loss
        self.g_lr, self.d_lr = g_lr or lr, d_lr or lr
        self.betas = tuple(betas) if betas is not None else default_betas
        self.n_critic = n_critic or critic
        if self.n_critic < 1:
            raise ConfigError(f"task.n_critic: must be at least 1, got {n_critic}")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"task.label_smoothing: must lie in [0, 1), got {label_smoothing}")
        if label_smoothing and loss != "bce":
            raise ConfigError("task.label_smoothing: applies to loss: bce only; remove it")
        self.gp_weight, self.label_smoothing = gp_weight, label_smoothing
        self.instance_noise, self.saturation_steps = instance_noise, saturation_steps
        self.steps = 0  # D steps taken (carried in checkpoints: the n_critic phase)
        self.saturated = 0  # consecutive saturated D steps
        self.planned_steps = 1
        self.optimizers: OptimizerSet | None = None
        self.data: DataBundle | None = None
        self.conditional = False

    # --- set-up -----------------------------------------------------------------------------
    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        return data.num_classes or 0  # the classes a conditional GAN is conditioned on

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        if loss.name is not None:
            raise ConfigError(
                f"train.loss.name: the gan task takes its loss as task.loss (bce, hinge, "
                f"wgan_gp), not train.loss; move {loss.name!r} there"
            )
        if model is not None and not hasattr(model, "discriminate"):
            raise ConfigError(
                f"task.name: gan trains a generator against a discriminator; use model.name: "
                f"gan, not a {type(model).__name__}"
            )
        self.data_info = data.describe() | {"class_names": data.class_names}
        self.data = data
        self.conditional = bool(getattr(model, "conditional", False))
        if self.conditional and not data.num_classes:
            raise ConfigError(
                f"model.conditional: {data.name} has no class labels to condition on; "
                "use labelled data or set model.conditional: false"
            )
        critic = model.discriminator.modules() if model is not None else ()
        batch_norm = any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in critic)
        if self.loss == "wgan_gp" and batch_norm:
            raise ConfigError(
                "model.d_norm: batch norm mixes the samples of a batch, which breaks "
                "WGAN-GP's per-sample gradient penalty; set model.d_norm: layer or none"
            )
        self._check_range(data, getattr(model, "output", "linear"))
        self._eval_gen = torch.Generator().manual_seed(0)

    def _check_range(self, data: DataBundle, output: str) -> None:
        """G's output activation must reach the data's values, or D wins by range alone."""
        bounds = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}.get(output)
        if bounds is None or not data.train.x.is_floating_point():
            return
        lo, hi = float(data.train.x.min()), float(data.train.x.max())
        if lo < bounds[0] - 1e-6 or hi > bounds[1] + 1e-6:
            raise ConfigError(
                f"model.output: {output} generates values in [{bounds[0]:g}, {bounds[1]:g}] but "
                f"the training data spans [{lo:.3g}, {hi:.3g}]; set data.scale: none (digits "
                "lie in [0, 1]), data.scale: minmax, or model.output: linear"
            )

    def configure_optimizers(self, model: nn.Module, train: TrainConfig, steps_per_epoch: int):
        if train.optimizer != OptimizerConfig() or train.scheduler is not None:
            raise ConfigError(
                "train.optimizer: the gan task builds one Adam per player; set task.g_lr, "
                "task.d_lr and task.betas instead of train.optimizer / train.scheduler"
            )
        # instance noise anneals over the planned run (not max_steps: a run stopped early and
        # resumed follows the same schedule)
        self.planned_steps = max(1, steps_per_epoch * train.epochs)
        self.optimizers = OptimizerSet(
            generator=torch.optim.Adam(model.generator.parameters(), self.g_lr, self.betas),
            discriminator=torch.optim.Adam(model.discriminator.parameters(), self.d_lr, self.betas),
        )
        return self.optimizers, None, None

    def carry_state(self) -> dict[str, torch.Tensor]:
        return {"steps": torch.tensor(self.steps), "saturated": torch.tensor(self.saturated)}

    def load_carry_state(self, state: dict[str, torch.Tensor]) -> None:
        self.steps = int(state.get("steps", 0))
        self.saturated = int(state.get("saturated", 0))

    def callbacks(self) -> list:
        """The ``sample_grid`` callback: samples of the same noise after every epoch."""
        return [CALLBACKS.build("sample_grid", {"seed": SAMPLE_SEED})]

    # --- the step ---------------------------------------------------------------------------
    def noise_std(self) -> float:
        return self.instance_noise * max(0.0, 1.0 - self.steps / self.planned_steps)

    def training_step(self, model, x, y):
        labels = y if self.conditional else None
        opts, std = self.optimizers, self.noise_std()

        def noisy(t: torch.Tensor) -> torch.Tensor:
            return t + std * torch.randn_like(t) if std > 0 else t

        g_step = (self.steps + 1) % self.n_critic == 0
        z = torch.randn(len(x), model.latent_dim, device=x.device)
        with torch.set_grad_enabled(g_step):  # no graph through G when G does not step
            fake = model.generate(z, labels)  # (B, *shape)

        # --- discriminator / critic step
        real_in, fake_in = noisy(x), noisy(fake.detach())
        d_real = model.discriminate(real_in, labels)  # (B,)
        d_fake = model.discriminate(fake_in, labels)
        loss = discriminator_loss(self.loss, d_real, d_fake, self.label_smoothing)
        d_loss, gp = loss, torch.zeros((), device=x.device)
        if self.loss == "wgan_gp":
            gp = gradient_penalty(lambda t: model.discriminate(t, labels), real_in, fake_in)
            d_loss = loss + self.gp_weight * gp
        if not torch.isfinite(d_loss):
            raise Diverged(f"discriminator loss is {d_loss.item()}")
        opts["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        opts["discriminator"].step()
        self.steps += 1

        # --- generator step, against the updated D
        g_loss = torch.zeros((), device=x.device)
        if g_step:
            g_loss = generator_loss(self.loss, model.discriminate(noisy(fake), labels))
            if not torch.isfinite(g_loss):
                raise Diverged(f"generator loss is {g_loss.item()}")
            opts["generator"].zero_grad(set_to_none=True)
            g_loss.backward()
            opts["generator"].step()

        d_real, d_fake = d_real.detach(), d_fake.detach()
        self._check_saturation(d_real, d_fake)
        if self.loss == "bce":  # D(x), D(G(z)) as probabilities
            d_real, d_fake = d_real.sigmoid(), d_fake.sigmoid()
        one = torch.ones((), device=x.device)
        stats = torch.stack(
            [
                d_loss.detach(),
                loss.detach(),
                g_loss.detach(),
                one * g_step,
                d_real.mean(),
                d_fake.mean(),
                -loss.detach() if self.loss == "wgan_gp" else 0 * one,
                gp.detach(),
                one,
            ]
        )
        return loss.detach(), stats

    def _check_saturation(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> None:
        if not self.saturation_steps or self.loss == "wgan_gp":
            return
        real_right = (d_real > 0).float().mean()
        fake_prob = d_fake.sigmoid().mean()
        if real_right >= 0.99 and fake_prob < 0.01:
            self.saturated += 1
        else:
            self.saturated = 0
        if self.saturated >= self.saturation_steps:
            raise Diverged(
                f"discriminator saturated for {self.saturated} steps (it rejects every fake "
                "with D(G(z)) < 0.01, so the generator gets no gradient); lower task.d_lr or "
                "add task.label_smoothing / task.instance_noise"
            )

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return outputs  # summed over the epoch's steps

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        s = dict(zip(STATS, stats.tolist(), strict=True))
        steps = max(s["steps"], 1)
        out = {k: s[k] / steps for k in ("d_loss", "d_real", "d_fake")}
        out["g_loss"] = s["g_loss"] / max(s["g_steps"], 1)  # mean over the G steps only
        if self.loss == "wgan_gp":
            out["wasserstein"], out["gp"] = s["wasserstein"] / steps, s["gp"] / steps
        return out

    # --- evaluation -------------------------------------------------------------------------
    def eval_step(self, model, x, y):
        """Per sample: [D(x), D(G(z)), G(z) flattened, x flattened] (B, 2 + 2·D), with z from
        the task's own generator (the global RNG of training is left alone)."""
        labels = y if self.conditional else None
        z = torch.randn(len(x), model.latent_dim, generator=self._eval_gen).to(x.device)
        fake = model.generate(z, labels)
        scores = torch.stack([model.discriminate(x, labels), model.discriminate(fake, labels)], 1)
        return torch.cat([scores, fake.flatten(1), x.flatten(1).to(fake.dtype)], 1)

    def evaluate(self, outputs, y, full=True):
        self._eval_gen.manual_seed(0)  # every evaluation of a split draws the same z
        outputs = outputs.float()
        d_real, d_fake = outputs[:, 0], outputs[:, 1]
        width = (outputs.shape[1] - 2) // 2
        shape = tuple(self.data_info.get("input_shape") or (width,))
        fake = outputs[:, 2 : 2 + width].reshape(len(outputs), *shape).cpu()
        real = outputs[:, 2 + width :].reshape(len(outputs), *shape).cpu()
        smooth = self.label_smoothing
        metrics = {
            "loss": float(discriminator_loss(self.loss, d_real, d_fake, smooth)),
            "g_loss": float(generator_loss(self.loss, d_fake)),
        }
        squash = torch.sigmoid if self.loss == "bce" else (lambda t: t)
        metrics["d_real"], metrics["d_fake"] = (
            float(squash(d_real).mean()),
            float(squash(d_fake).mean()),
        )
        details: dict[str, Any] = {
            "task_type": "gan",
            "loss": self.loss,
            "conditional": self.conditional,
        }
        preds: dict[str, np.ndarray] = {"y_true": y.cpu().numpy(), "samples": fake.numpy()}
        ref = self._reference()
        if ref is None:
            preds["y_pred"] = d_fake.cpu().numpy()
            return metrics, details, preds
        from deepworks.evaluate.generative import frechet_distance, real_floor, sample_quality

        preds["y_pred"] = ref.predict(fake)  # the class the reference classifier sees
        if not full:
            metrics["fid"] = frechet_distance(ref.features(fake), ref.features(real))
            return metrics, details, preds
        labels = y if self.conditional else None
        quality = sample_quality(fake, labels, real, ref, real_floor(self.data, len(real)))
        details["quality"] = quality
        metrics = quality | metrics  # sample quality first: the report's headline cards
        return metrics, details, preds

    def _reference(self):
        """The data's reference classifier (None for unlabelled data)."""
        if self.data is None or not self.data.num_classes:
            return None
        from deepworks.evaluate.generative import reference_classifier

        return reference_classifier(self.data)

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        """D's verdict on given samples: its score and (bce, hinge) the probability of 'real'."""
        score = outputs[:, 0].float().cpu()
        return {"y_pred": score.numpy(), "y_prob": torch.sigmoid(score).numpy()}

    # --- pictures ---------------------------------------------------------------------------
    def save_pictures(self, model: nn.Module, data: DataBundle, run_dir: Path) -> None:
        """``samples/final.npz``: a sample grid (conditional: one row per class) and a latent
        interpolation (rows: z moving linearly between two random points)."""
        g = torch.Generator().manual_seed(SAMPLE_SEED + 1)
        was_training = model.training
        model.eval()
        k = data.num_classes or 0
        if self.conditional:
            labels = torch.arange(k).repeat_interleave(10)  # row c: ten samples of class c
            grid = model.sample(len(labels), labels, generator=g)
        else:
            labels = torch.full((64,), -1)
            grid = model.sample(64, generator=g)
        a, b = torch.randn(2, 8, model.latent_dim, generator=g)
        t = torch.linspace(0, 1, 10).view(1, 10, 1)
        z = (a[:, None] * (1 - t) + b[:, None] * t).reshape(80, -1)  # (8 rows · 10 steps, latent)
        device = next(model.parameters()).device
        y = torch.arange(8).repeat_interleave(10) % max(k, 1) if self.conditional else None
        with torch.no_grad():
            lerp = model.generate(z.to(device), None if y is None else y.to(device))
        model.train(was_training)
        out = Path(run_dir) / SAMPLES
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            out / "final.npz",
            grid=grid.float().cpu().numpy(),
            labels=labels.numpy(),
            interpolation=lerp.float().cpu().numpy(),
        )
