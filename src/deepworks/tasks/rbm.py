"""Training a restricted Boltzmann machine by contrastive divergence (CD-k) or persistent CD.

Each step (see ``deepworks.models.rbm`` for the model and its equations):

1. ``v_0``: the batch, flattened, read as probabilities in [0, 1] (``binarize: true`` draws
   binary ``v_0 ~ Bernoulli(x)`` instead, a fresh draw each step).
2. The negative sample ``v_k``: k Gibbs steps v → h → v, started from ``v_0`` (CD-k) or from the
   persistent chains (PCD, Tieleman 2008: ``persistent: true``).
3. ``loss = mean F(v_0) - mean F(v_k)`` with ``v_k`` constant: its gradient is the CD estimate of
   the negative log-likelihood gradient, so the Trainer's ordinary backward and optimizer step
   (SGD with momentum is the classic choice) perform the CD update. The logged ``train/loss`` is
   this free-energy difference, not a likelihood: it can be negative and it is not a measure of
   fit. ``train/recon_error`` is.

Persistent chains ("fantasy particles"):

- A fresh fit starts without chains; the first training step draws them from its batch
  (``v ~ Bernoulli(x)``), one chain per sample of that batch. Their number then stays fixed
  (the last, shorter batch of an epoch still uses all of them: the negative phase is a mean).
- They are never reset between steps or epochs: they are the model's running sample.
- :meth:`carry_state` hands them to the checkpoint and :meth:`load_carry_state` restores them, so
  a resumed run continues the same chains (training is exactly that of an uninterrupted run).

Metrics of a split (validation every epoch, test at the end):

- ``recon_error``: mean squared error between v and one Gibbs step's mean p(v | h ~ p(h | v)).
- ``pseudo_log_likelihood``: the stochastic estimate of scikit-learn's
  ``BernoulliRBM.score_samples`` (one random unit flipped per sample), averaged; higher is better.
- ``free_energy``: mean F(v); ``free_energy_gap``: mean F(split) - mean F(training subset).
  The gap is Hinton's overfitting monitor: it grows when the model assigns the training data a
  much higher probability than held-out data.
- ``loss``: the CD-k loss on the split (chains started from its data), comparable to the CD
  training loss.

Random draws of the evaluation come from a generator seeded afresh for every split, so a split's
metrics do not depend on what was evaluated before.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import ConfigError
from deepworks.evaluate.specs import MetricSpec
from deepworks.registry import register_task
from deepworks.rundir import RBM_PICTURES
from deepworks.tasks.base import Task
from deepworks.utils import atomic_write_bytes

EVAL_SEED = 1234
TRAIN_REFERENCE = 1024  # training samples whose free energy the gap compares against
PICTURES = RBM_PICTURES


@register_task("rbm")
class RBMTask(Task):
    """Train an RBM (``model: {name: rbm}``) by CD-k or persistent CD.

    Args:
        k: Gibbs steps of the negative phase (CD-1 is the classic choice).
        persistent: Persistent contrastive divergence: chains carried from step to step.
        binarize: Draw binary inputs ``v ~ Bernoulli(x)`` each step instead of using the grey
            levels as probabilities.
        sample_steps: Gibbs steps from noise for the samples in the report.
    """

    name = "rbm"
    losses = ()
    metrics = (
        MetricSpec("recon_error", "min", headline=True, label="Reconstruction error"),
        MetricSpec("pseudo_log_likelihood", "max", headline=True),
        MetricSpec("free_energy", None),
        MetricSpec("free_energy_gap", None, label="Free energy gap (val - train)"),
    )

    def __init__(
        self,
        k: int = 1,
        persistent: bool = False,
        binarize: bool = False,
        sample_steps: int = 1000,
    ):
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1 Gibbs step, not {k}")
        self.k, self.persistent, self.binarize = k, persistent, binarize
        self.sample_steps = sample_steps
        self.chain: torch.Tensor | None = None  # persistent chains, (C, V)
        self.train_reference: torch.Tensor | None = None  # (N_ref, V)
        self._eval_model: nn.Module | None = None
        self._eval_generator: torch.Generator | None = None

    # --- set-up -----------------------------------------------------------------------------
    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        return data.num_outputs or 1  # an RBM has no output layer; nothing takes this

    def setup(
        self, data: DataBundle, loss: LossConfig, device: torch.device, model: nn.Module = None
    ) -> None:
        self.data_info = data.describe() | {"class_names": data.class_names}
        if loss.name is not None or loss.class_weights is not None:
            raise ConfigError(
                "train.loss: the rbm task trains by contrastive divergence and takes no loss; "
                "remove train.loss"
            )
        if model is not None and not hasattr(model, "free_energy"):
            raise ConfigError(
                f"model.name: the rbm task trains a restricted Boltzmann machine (model: "
                f"{{name: rbm}}), not a {type(model).__name__}"
            )
        if isinstance(data.train, Split):
            x = data.train.x
            lo, hi = float(x.min()), float(x.max())
            if lo < 0 or hi > 1:
                raise ConfigError(
                    f"data.scale: the rbm task reads inputs as probabilities in [0, 1], but the "
                    f"training inputs span [{lo:.3g}, {hi:.3g}]; set data.scale: minmax (or none "
                    "for data already in [0, 1])"
                )
            self.train_reference = x[:TRAIN_REFERENCE].flatten(1).float().to(device)
        self.chain = None
        self._eval_generator = None

    def state(self) -> dict[str, Any]:
        return {"k": self.k, "persistent": self.persistent, "binarize": self.binarize}

    # --- the step ---------------------------------------------------------------------------
    def visible(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The batch as visible units: flat, in [0, 1] (held-out data scaled with the training
        split's min-max can stray slightly outside), binary when ``binarize``."""
        v = x.flatten(1).float().clamp(0, 1)  # (B, V)
        return torch.bernoulli(v, generator=generator) if self.binarize else v

    def training_step(self, model, x, y):
        v0 = self.visible(x)
        with torch.no_grad():
            if self.persistent:
                if self.chain is None:
                    self.chain = torch.bernoulli(v0)  # one chain per sample of the first batch
                vk = model.gibbs(self.chain, self.k).float()
                self.chain = vk
            else:
                vk = model.gibbs(v0, self.k).float()
            recon_error = (v0 - model.reconstruct(v0).float()).pow(2).mean(1)  # (B,)
        loss = model.free_energy(v0).mean() - model.free_energy(vk).mean()
        return loss, recon_error

    def carry_state(self) -> dict[str, torch.Tensor]:
        return {"chain": self.chain} if self.chain is not None else {}

    def load_carry_state(self, state: dict[str, torch.Tensor]) -> None:
        self.chain = state.get("chain")

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return outputs.sum()

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        return {"recon_error": float(stats) / max(1, num_samples)}

    # --- evaluation -------------------------------------------------------------------------
    def generator(self, device: torch.device) -> torch.Generator:
        if self._eval_generator is None or self._eval_generator.device != device:
            self._eval_generator = torch.Generator(device=device).manual_seed(EVAL_SEED)
        return self._eval_generator

    def eval_step(self, model, x, y):
        """Per sample: (recon_error, free_energy, pseudo_log_likelihood, CD loss), (B, 4)."""
        self._eval_model = model  # evaluate() compares against the training free energy
        g = self.generator(x.device)
        v = self.visible(x, g)
        recon = (v - model.reconstruct(v, g).float()).pow(2).mean(1)
        fe = model.free_energy(v).float()
        pll = model.pseudo_log_likelihood(v, generator=g).float()
        cd = fe - model.free_energy(model.gibbs(v, self.k, g)).float()
        return torch.stack([recon, fe, pll, cd], dim=1)

    def evaluate(self, outputs, y, full=True):
        self._eval_generator = None  # the next split starts from the same seed
        out = outputs.double().cpu().numpy()
        recon, fe, pll, cd = out.T
        metrics = {
            "loss": float(cd.mean()),
            "recon_error": float(recon.mean()),
            "pseudo_log_likelihood": float(pll.mean()),
            "free_energy": float(fe.mean()),
        }
        model, ref = self._eval_model, self.train_reference
        if model is not None and ref is not None:
            with torch.no_grad():
                train_fe = model.free_energy(ref.to(outputs.device)).double().mean()
            metrics["free_energy_gap"] = metrics["free_energy"] - float(train_fe)
        if not full:
            return metrics, None, {}
        details = {"task_type": "rbm", "k": self.k, "persistent": self.persistent}
        y_np = y.cpu().numpy()
        predictions = {
            "y_true": y_np,
            "y_pred": fe,  # the free energy: low for inputs typical of the training data
            "free_energy": fe,
            "recon_error": recon,
            "pseudo_log_likelihood": pll,
        }
        return metrics, details, predictions

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        out = outputs.double().cpu().numpy()
        return {"free_energy": out[:, 1], "recon_error": out[:, 0]}

    # --- pictures ---------------------------------------------------------------------------
    def save_pictures(self, model: nn.Module, data: DataBundle, run_dir) -> None:
        """``rbm.npz`` for the report: filters (rows of W), Gibbs chains from noise at several
        step counts, and held-out inputs with their one-step reconstructions."""
        save_rbm_pictures(model, data, Path(run_dir), self.sample_steps)


def image_shape(data: DataBundle, width: int) -> tuple[int, int]:
    """How to draw a visible vector: the data's image size, a square, or one row."""
    shape = tuple(data.input_shape)
    if len(shape) == 3 and shape[0] == 1:
        return shape[1], shape[2]
    side = int(round(width**0.5))
    return (side, side) if side * side == width else (1, width)


@torch.no_grad()
def save_rbm_pictures(
    model: nn.Module, data: DataBundle, run_dir: Path, steps: int = 1000, n: int = 10
) -> Path | None:
    """Write ``run_dir/rbm.npz``: ``filters`` (≤64, h, w), ``chains`` (S, n, h, w) after
    ``chain_steps`` (S,) Gibbs steps from the same noise, ``inputs`` and ``reconstructions``."""
    if not hasattr(model, "free_energy"):
        return None
    model.eval()
    w = model.weight.detach().float().cpu()
    h, wd = image_shape(data, w.shape[1])
    device = model.weight.device
    g = torch.Generator(device=device).manual_seed(EVAL_SEED)
    noise = (torch.rand(n, w.shape[1], generator=g, device=device) < 0.5).float()
    snapshots = sorted({1, *(s for s in (10, 100, steps) if 1 < s <= steps)})
    chains, v, done = [], noise, 0
    for s in snapshots:  # continue one chain: v after s steps, shown as p(v | h) of step s
        v = model.gibbs(v, s - 1 - done, g)
        chains.append(model.reconstruct(v, g).float().cpu())
        v, done = model.gibbs(v, 1, g), s
    split = data.test if isinstance(data.test, Split) else data.train
    inputs = split.x[:n].flatten(1).float().clamp(0, 1)
    recon = model.reconstruct(inputs.to(device), g).float().cpu()
    arrays = {
        "filters": w[:64].reshape(-1, h, wd).numpy(),
        "chains": torch.stack(chains).reshape(len(snapshots), n, h, wd).numpy(),
        "chain_steps": np.array(snapshots),
        "inputs": inputs.reshape(-1, h, wd).numpy(),
        "reconstructions": recon.reshape(-1, h, wd).numpy(),
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = run_dir / PICTURES
    atomic_write_bytes(path, buf.getvalue())
    return path
