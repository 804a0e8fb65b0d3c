"""Autoencoder tasks: reconstruction (plain, denoising, sparse) and anomaly detection.

**autoencoder** trains ``x_hat = g(f(x))`` to reconstruct its input. The loss is the mean
squared error ``mean((x_hat - x)^2)`` or, for data in [0, 1], the binary cross-entropy
``-mean(x log x_hat + (1 - x) log(1 - x_hat))`` (computed from the decoder's logits, which is
numerically stable). Two classic regularizers make the code more useful than a plain bottleneck:

- *Denoising* (Vincent et al., 2008): the encoder sees a corrupted ``x~`` and the loss compares
  ``g(f(x~))`` with the clean ``x``, so the network must learn the data's structure to undo the
  noise. ``noise: {kind: gaussian, amount: s}`` adds N(0, s^2); ``masking`` zeroes each value
  with probability ``amount``; ``salt_pepper`` sets each value with probability ``amount`` to
  the data's minimum or maximum. Evaluation reports ``noisy_mse`` (corrupted vs clean) next to
  ``denoised_mse`` (reconstruction of the corrupted input vs clean) on the same fixed noise.
- *Sparsity* on the code z (B, k): ``{kind: l1, weight: w}`` adds ``w * mean_b sum_j |z_bj|``;
  ``{kind: kl, target: rho, weight: w}`` adds ``w * sum_j KL(rho || rho_hat_j)`` with
  ``rho_hat_j = mean_b s(z_bj)`` the mean activation of unit j over the batch, ``s`` the
  sigmoid (the code itself when the model's ``code_activation`` is already sigmoid), and
  ``KL(rho || q) = rho log(rho / q) + (1 - rho) log((1 - rho) / (1 - q))`` (Ng, 2011).

**anomaly_detection** trains the same autoencoder on normal data only (``data.train_classes``)
and scores each sample by its reconstruction error: what the model never saw reconstructs
badly. A sample is flagged when its score reaches a threshold chosen on the validation split:
``threshold: {quantile: 0.95}`` of the normal samples' scores (no labelled anomalies needed),
``best_f1`` (the score that maximises F1 on the validation labels), or ``{value: t}``. Metrics:
ROC-AUC and PR-AUC (average precision, anomaly = positive) of the score, and precision, recall
and F1 at the threshold, which is kept in the task's state for ``predict`` and later
evaluations.

Evaluation gathers per-sample values, the code and the reconstruction of every sample in one
tensor per batch (``eval_step``), which ``evaluate`` and ``predict`` unpack.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import ConfigError
from deepworks.evaluate.specs import MetricSpec
from deepworks.registry import register_task
from deepworks.rundir import RECONSTRUCTIONS
from deepworks.tasks.base import Task
from deepworks.utils import atomic_write_bytes

NOISE_KINDS = ("gaussian", "masking", "salt_pepper")
EVAL_NOISE_SEED = 1234  # evaluation noise is the same in every epoch and run
N_PICTURES = 16  # test samples whose reconstructions the report shows


def corrupt(
    x: torch.Tensor,
    kind: str,
    amount: float,
    low: float = 0.0,
    high: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A corrupted copy of ``x`` for denoising (see the module docstring for the kinds)."""
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + amount * noise
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if kind == "masking":
        return x * (u >= amount)
    # salt and pepper: u < amount/2 -> low, amount/2 <= u < amount -> high
    out = torch.where(u < amount / 2, torch.full_like(x, low), x)
    return torch.where((u >= amount / 2) & (u < amount), torch.full_like(x, high), out)


def sparsity_penalty(
    z: torch.Tensor, sparsity: dict[str, Any] | None, code_is_sigmoid: bool = False
) -> torch.Tensor:
    """The sparsity term added to the loss for codes z (B, k); zero without ``sparsity``."""
    if not sparsity:
        return z.new_zeros(())
    weight = float(sparsity.get("weight", 1e-3))
    if sparsity["kind"] == "l1":
        return weight * z.abs().sum(dim=1).mean()
    rho = float(sparsity.get("target", 0.05))
    act = z if code_is_sigmoid else torch.sigmoid(z)
    rho_hat = act.mean(dim=0).clamp(1e-6, 1 - 1e-6)  # (k,) mean activation of each unit
    kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
    return weight * kl.sum()


def _check_noise(noise: dict[str, Any] | None) -> dict[str, Any] | None:
    if not noise:
        return None
    noise = dict(noise)
    kind, amount = noise.get("kind", "gaussian"), noise.get("amount", 0.3)
    if kind not in NOISE_KINDS:
        raise ConfigError(f"task.noise.kind: {kind!r}; choose {', '.join(NOISE_KINDS)}")
    if set(noise) - {"kind", "amount"}:
        extra = ", ".join(sorted(set(noise) - {"kind", "amount"}))
        raise ConfigError(f"task.noise: unknown key(s) {extra} (choices: kind, amount)")
    if not isinstance(amount, int | float) or amount < 0 or (kind != "gaussian" and amount > 1):
        limit = "a probability in [0, 1]" if kind != "gaussian" else "a std >= 0"
        raise ConfigError(f"task.noise.amount: {amount!r}; give {limit} for {kind} noise")
    return {"kind": kind, "amount": float(amount)}


def _check_sparsity(sparsity: dict[str, Any] | None) -> dict[str, Any] | None:
    if not sparsity:
        return None
    sparsity = dict(sparsity)
    kind = sparsity.get("kind", "l1")
    allowed = {"l1": {"kind", "weight"}, "kl": {"kind", "weight", "target"}}
    if kind not in allowed:
        raise ConfigError(f"task.sparsity.kind: {kind!r}; choose l1 or kl")
    if set(sparsity) - allowed[kind]:
        extra = ", ".join(sorted(set(sparsity) - allowed[kind]))
        choices = ", ".join(sorted(allowed[kind]))
        raise ConfigError(f"task.sparsity: unknown key(s) {extra} for {kind} (choices: {choices})")
    out = {"kind": kind, "weight": float(sparsity.get("weight", 1e-3))}
    if out["weight"] < 0:
        raise ConfigError(f"task.sparsity.weight: {out['weight']}; give a weight >= 0")
    if kind == "kl":
        out["target"] = float(sparsity.get("target", 0.05))
        if not 0 < out["target"] < 1:
            raise ConfigError(f"task.sparsity.target: {out['target']}; give a value in (0, 1)")
    return out


@register_task("autoencoder")
class Autoencoder(Task):
    """Reconstruct the input through a bottleneck: plain, denoising or sparse autoencoders.

    Args:
        noise: Denoising: ``{kind: gaussian|masking|salt_pepper, amount: 0.3}``.
        sparsity: ``{kind: l1, weight: 1e-3}`` or ``{kind: kl, target: 0.05, weight: 1e-3}``.
    """

    name = "autoencoder"
    losses = ("mse", "bce")
    metrics = (
        MetricSpec("mse", "min", headline=True, label="Reconstruction MSE"),
        MetricSpec("noisy_mse", None, headline=True, label="MSE of the noisy input"),
        MetricSpec("denoised_mse", "min", headline=True, label="MSE of the denoised input"),
        MetricSpec("sparsity_penalty", None),
    )
    STATS = 2  # per-sample columns before the code: training-objective loss, clean MSE

    def __init__(self, noise: dict[str, Any] | None = None, sparsity: dict[str, Any] | None = None):
        super().__init__()
        self.noise = _check_noise(noise)
        self.sparsity = _check_sparsity(sparsity)
        self.loss_kind = "mse"
        self.input_shape: list[int] = []
        self.latent_dim = 0
        self.low, self.high = 0.0, 1.0  # the data's range, for salt-and-pepper noise
        self.code_is_sigmoid = False
        self._eval_batches = 0

    # --- set-up -----------------------------------------------------------------------------
    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        if data.task_type not in ("classification", "regression") or data.extras.get("tokenizer"):
            raise ConfigError(
                f"task.name: {self.name} reconstructs feature vectors or images; {data.name} is "
                f"{data.task_type} data"
            )
        return data.num_outputs

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        super().setup(data, loss, device, model)
        self.num_outputs(data, loss)
        self.loss_kind = self.loss_name(loss)
        self.input_shape = list(data.input_shape)
        if model is not None:
            if not all(hasattr(model, a) for a in ("encode", "decode_logits", "activate")):
                raise ConfigError(
                    f"task.name: {self.name} needs an encoder-decoder model; use "
                    "model: {name: autoencoder}"
                )
            self.latent_dim = int(model.latent_dim)
            self.code_is_sigmoid = getattr(model, "code_activation", "") == "sigmoid"
            if self.loss_kind == "bce" and getattr(model, "output", "") != "sigmoid":
                raise ConfigError(
                    "train.loss.name: bce reconstructs values in [0, 1]; set model.output: "
                    "sigmoid, or use loss mse"
                )
        if isinstance(data.train, Split):
            x = data.train.x
            self.low, self.high = float(x.min()), float(x.max())
            if self.loss_kind == "bce" and (self.low < 0 or self.high > 1):
                raise ConfigError(
                    f"train.loss.name: bce needs inputs in [0, 1], but {data.name}'s training "
                    f"inputs span [{self.low:.3g}, {self.high:.3g}]; set data.scale: minmax "
                    "(or none for data already in [0, 1]), or use loss mse"
                )
        self._eval_batches = 0

    def state(self) -> dict[str, Any]:
        return {
            "loss_kind": self.loss_kind,
            "input_shape": self.input_shape,
            "latent_dim": self.latent_dim,
            "low": self.low,
            "high": self.high,
            "code_is_sigmoid": self.code_is_sigmoid,
        }

    # --- the step ---------------------------------------------------------------------------
    def per_sample_loss(self, logits: torch.Tensor, recon: torch.Tensor, target: torch.Tensor):
        """Reconstruction loss of each sample (B,): mean over its values."""
        if self.loss_kind == "bce":
            loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            loss = (recon - target) ** 2
        return loss.flatten(1).mean(dim=1)

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n = self.noise
        return corrupt(x, n["kind"], n["amount"], self.low, self.high, generator)

    def training_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        inputs = self.corrupt(x) if self.noise else x  # denoising: noisy in, clean target
        z = model.encode(inputs)  # (B, k)
        logits = model.decode_logits(z).reshape(x.shape)
        recon = model.activate(logits)
        loss = self.per_sample_loss(logits, recon, x).mean()
        loss = loss + sparsity_penalty(z, self.sparsity, self.code_is_sigmoid)
        return loss, recon

    # --- evaluation -------------------------------------------------------------------------
    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per sample: [loss, mse, (noisy_mse, denoised_mse, denoised loss), code, recon]."""
        z = model.encode(x)
        logits = model.decode_logits(z).reshape(x.shape)
        recon = model.activate(logits)
        loss = self.per_sample_loss(logits, recon, x)
        cols = [loss, ((recon - x) ** 2).flatten(1).mean(1)]
        if self.noise:
            # fixed noise per evaluation batch, from a generator of its own (the global RNG,
            # which a resumed run restores, is left alone)
            g = torch.Generator(device=x.device).manual_seed(EVAL_NOISE_SEED + self._eval_batches)
            self._eval_batches += 1
            noisy = self.corrupt(x, g)
            d_logits = model.decode_logits(model.encode(noisy)).reshape(x.shape)
            denoised = model.activate(d_logits)
            cols += [
                ((noisy - x) ** 2).flatten(1).mean(1),
                ((denoised - x) ** 2).flatten(1).mean(1),
                self.per_sample_loss(d_logits, denoised, x),
            ]
        # float32 throughout: under bf16 autocast the code and reconstruction come out in bf16
        return torch.cat([torch.stack(cols, 1).float(), z.float(), recon.flatten(1).float()], 1)

    def unpack(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The gathered ``eval_step`` columns by name."""
        self._eval_batches = 0  # the next split's evaluation starts the noise sequence again
        n_stats = 5 if self.noise else 2
        k = self.latent_dim or outputs.shape[1] - n_stats - int(np.prod(self.input_shape))
        stats = outputs[:, :n_stats]
        out = {
            "loss": stats[:, 0],
            "clean_loss": stats[:, 0],  # reconstruction loss of the clean input
            "mse": stats[:, 1],
            "code": outputs[:, n_stats : n_stats + k],
            "reconstruction": outputs[:, n_stats + k :].reshape(-1, *self.input_shape),
        }
        if self.noise:
            out |= {"noisy_mse": stats[:, 2], "denoised_mse": stats[:, 3]}
            out["loss"] = stats[:, 4]  # the training objective: reconstruct clean from noisy
        return out

    def evaluate(self, outputs, y, full=True):
        parts = self.unpack(outputs.float())
        penalty = sparsity_penalty(parts["code"], self.sparsity, self.code_is_sigmoid)
        metrics = {"loss": float(parts["loss"].mean() + penalty), "mse": float(parts["mse"].mean())}
        if self.noise:
            metrics["noisy_mse"] = float(parts["noisy_mse"].mean())
            metrics["denoised_mse"] = float(parts["denoised_mse"].mean())
        if self.sparsity:
            metrics["sparsity_penalty"] = float(penalty)
        if not full:
            return metrics, None, {}
        details = {
            "task_type": "autoencoder",
            "loss": self.loss_kind,
            "latent_dim": int(parts["code"].shape[1]),
            "noise": self.noise,
            "sparsity": self.sparsity,
            "class_names": self.data_info.get("class_names"),
        }
        preds = {"y_true": y.cpu().numpy()} | self._arrays(parts, "mse")
        return metrics, details, preds

    def _arrays(self, parts: dict[str, torch.Tensor], score: str) -> dict[str, np.ndarray]:
        return {
            "y_pred": parts[score].cpu().numpy(),
            "code": parts["code"].cpu().numpy(),
            "reconstruction": parts["reconstruction"].cpu().numpy(),
        }

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        """``y_pred``: each sample's reconstruction MSE; also its code and reconstruction."""
        return self._arrays(self.unpack(outputs.float()), "mse")

    @torch.no_grad()
    def save_pictures(self, model: nn.Module, data: DataBundle, run_dir) -> None:
        """``reconstructions.npz``: the first test inputs, their reconstructions and, for a
        denoising run, their noisy versions and what the model made of them."""
        split = data.test or data.val
        if run_dir is None or not isinstance(split, Split) or not len(split):
            return
        device = next(model.parameters()).device
        x = split.x[:N_PICTURES].to(device)
        model.eval()
        arrays = {"x": x, "reconstruction": model(x).float(), "y": split.y[:N_PICTURES]}
        if self.noise:
            g = torch.Generator(device=device).manual_seed(EVAL_NOISE_SEED)
            arrays["noisy"] = self.corrupt(x, g)
            arrays["denoised"] = model(arrays["noisy"]).float()
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: v.cpu().numpy() for k, v in arrays.items()})
        atomic_write_bytes(Path(run_dir) / RECONSTRUCTIONS, buf.getvalue())


@register_task("anomaly_detection")
class AnomalyDetection(Autoencoder):
    """Flag anomalies by reconstruction error of an autoencoder fitted on normal data only.

    Args:
        normal: Label(s) of the normal class(es); every other label is an anomaly.
        threshold: ``{quantile: 0.95}`` of the normal validation scores, ``best_f1`` on the
            validation split, or ``{value: t}``.
        noise: Train as a denoising autoencoder (see ``autoencoder``).
        sparsity: Sparsity penalty on the code (see ``autoencoder``).
    """

    name = "anomaly_detection"
    metrics = (
        MetricSpec("roc_auc", "max", headline=True, label="ROC AUC"),
        MetricSpec("pr_auc", "max", headline=True, label="PR AUC (average precision)"),
        MetricSpec("f1", "max", headline=True, fmt=".2%"),
        MetricSpec("precision", "max", fmt=".2%"),
        MetricSpec("recall", "max", fmt=".2%"),
        MetricSpec("threshold", None, label="Anomaly threshold"),
    )

    def __init__(
        self,
        normal: list[int] | None = None,
        threshold: dict[str, float] | str = {"quantile": 0.95},  # noqa: B006 (read only)
        noise: dict[str, Any] | None = None,
        sparsity: dict[str, Any] | None = None,
    ):
        super().__init__(noise=noise, sparsity=sparsity)
        if not normal:
            raise ConfigError("task.normal: give the label(s) of the normal class, e.g. [1]")
        self.normal = [int(c) for c in normal]
        self.policy, self.policy_value = self._parse_threshold(threshold)
        self.threshold: float | None = self.policy_value if self.policy == "value" else None
        self._val_y: torch.Tensor | None = None

    @staticmethod
    def _parse_threshold(threshold: dict[str, float] | str) -> tuple[str, float | None]:
        if threshold == "best_f1":
            return "best_f1", None
        if isinstance(threshold, dict) and len(threshold) == 1:
            ((policy, value),) = threshold.items()
            if policy == "quantile" and 0 < float(value) < 1:
                return "quantile", float(value)
            if policy == "value":
                return "value", float(value)
        raise ConfigError(
            f"task.threshold: {threshold!r}; use {{quantile: 0.95}} (of the normal validation "
            "scores), best_f1, or {value: 0.5}"
        )

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        super().setup(data, loss, device, model)
        if data.num_classes is None:
            raise ConfigError(
                f"task.name: anomaly_detection needs class labels to tell normal from anomalous "
                f"samples; {data.name} is {data.task_type} data"
            )
        names = data.class_names or [str(i) for i in range(data.num_classes)]
        bad = [c for c in self.normal if not 0 <= c < data.num_classes]
        if bad:
            raise ConfigError(
                f"task.normal: {bad[0]} is not a label of {data.name} (labels 0..."
                f"{data.num_classes - 1}: {', '.join(names)})"
            )
        train_y = data.train.y.cpu()
        anomalous = ~torch.isin(train_y, torch.tensor(self.normal))
        if anomalous.any():
            label = int(train_y[anomalous][0])
            count = int((train_y == label).sum())
            raise ConfigError(
                f"the training split holds {count} rows of class {label} ({names[label]!r}), "
                f"which task.normal: {self.normal} makes an anomaly; anomaly_detection fits on "
                f"normal data only: set data.train_classes: {self.normal}"
            )
        val = data.val
        if self.policy != "value":
            if val is None or not len(val):
                raise ConfigError(
                    "task.threshold: the threshold is chosen on the validation split, but the "
                    "data has none; set data.split.val (e.g. 0.2) or threshold: {value: t}"
                )
            is_anomaly = ~torch.isin(val.y.cpu(), torch.tensor(self.normal))
            if self.policy == "best_f1" and not is_anomaly.any():
                raise ConfigError(
                    "task.threshold: best_f1 needs anomalies in the validation split, which has "
                    "none; use threshold: {quantile: 0.95}"
                )
            if is_anomaly.all():
                raise ConfigError("task.threshold: the validation split has no normal samples")
            self._val_y = val.y.cpu().clone()

    def state(self) -> dict[str, Any]:
        return super().state() | {"threshold": self.threshold}

    def is_anomaly(self, y: torch.Tensor) -> np.ndarray:
        """1 for labels outside ``normal`` (the positive class of every metric), else 0."""
        return (~torch.isin(y.cpu(), torch.tensor(self.normal))).numpy().astype(np.int64)

    def fit_threshold(self, score: np.ndarray, anomaly: np.ndarray) -> float:
        """The threshold from validation scores and labels, per the configured policy."""
        if self.policy == "value":
            return float(self.policy_value)
        if self.policy == "quantile":
            return float(np.quantile(score[anomaly == 0], self.policy_value))
        from sklearn.metrics import precision_recall_curve

        precision, recall, thresholds = precision_recall_curve(anomaly, score)
        p, r = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        return float(thresholds[int(np.argmax(f1))])

    def _is_val(self, y: torch.Tensor) -> bool:
        v = self._val_y
        return v is not None and len(v) == len(y) and torch.equal(v, y.cpu())

    def evaluate(self, outputs, y, full=True):
        from sklearn import metrics as skm

        parts = self.unpack(outputs.float())
        score = parts["clean_loss"].cpu().numpy().astype(np.float64)
        anomaly = self.is_anomaly(y)
        normal = torch.as_tensor(anomaly == 0, device=outputs.device)
        penalty = sparsity_penalty(parts["code"][normal], self.sparsity, self.code_is_sigmoid)
        metrics = {"loss": float(parts["loss"][normal].mean() + penalty)}
        if self._is_val(y):  # validation data chooses the threshold for the current weights
            self.threshold = self.fit_threshold(score, anomaly)
        if 0 < anomaly.sum() < len(anomaly):
            metrics["roc_auc"] = float(skm.roc_auc_score(anomaly, score))
            metrics["pr_auc"] = float(skm.average_precision_score(anomaly, score))
        flagged = self.flag(score)
        if flagged is not None:
            p, r, f, _ = skm.precision_recall_fscore_support(
                anomaly, flagged, average="binary", zero_division=0
            )
            metrics |= {"precision": float(p), "recall": float(r), "f1": float(f)}
            metrics["threshold"] = float(self.threshold)
        if not full:
            return metrics, None, {}
        metrics["mse"] = float(parts["mse"].mean())
        names = self.data_info.get("class_names")
        details = {
            "task_type": "anomaly_detection",
            "loss": self.loss_kind,
            "latent_dim": int(parts["code"].shape[1]),
            "normal": self.normal,
            "class_names": names,
            "threshold": self.threshold,
            "threshold_policy": {self.policy: self.policy_value},
        }
        if flagged is not None:
            cm = skm.confusion_matrix(anomaly, flagged, labels=[0, 1])
            details["confusion_matrix"] = cm.tolist()
            details["class_names"] = ["normal", "anomaly"]
            details["label_names"] = names
        preds = {"y_true": y.cpu().numpy(), "score": score, "is_anomaly": anomaly}
        preds |= self._arrays(parts, "clean_loss")
        preds["y_pred"] = flagged if flagged is not None else np.zeros(len(score), np.int64)
        return metrics, details, preds

    def flag(self, score: np.ndarray) -> np.ndarray | None:
        """1 where the score reaches the threshold; None before a threshold is chosen."""
        if self.threshold is None:
            return None
        return (score >= self.threshold).astype(np.int64)

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        """``y_pred``: 1 for an anomaly (score >= threshold); ``score``: reconstruction error."""
        parts = self.unpack(outputs.float())
        score = parts["clean_loss"].cpu().numpy().astype(np.float64)
        arrays = self._arrays(parts, "clean_loss")
        flagged = self.flag(score)
        return arrays | {"y_pred": flagged if flagged is not None else score, "score": score}
