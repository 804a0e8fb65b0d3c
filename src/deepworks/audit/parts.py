"""The measurements of an audit, one function per part of the card.

Every function takes a loaded run (:class:`deepworks.explain.runs.Loaded`: the model in eval mode
on the CPU, its rebuilt data split and ``data.json``) and returns plain numbers (for
``audit.json``) plus the arrays its figures need. Nothing here writes files.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepworks.data.bundle import invert_scaler
from deepworks.explain.runs import Loaded

# robust accuracy is measured at these fractions of the input range unless --eps says otherwise
DEFAULT_EPS_FRACTIONS = (0.05, 0.1, 0.2)


# --- 1. the model: size and speed ----------------------------------------------------------


def model_facts(run: Loaded, model_name: str, weights: Any) -> dict[str, Any]:
    """Parameter count and the size of the checkpoint's weights file (``model.safetensors``)."""
    params = sum(p.numel() for p in run.model.parameters())
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    size = weights.stat().st_size if weights.is_file() else None
    return {
        "name": model_name,
        "class": type(run.model).__name__,
        "parameters": int(params),
        "trainable_parameters": int(trainable),
        "size_mb": None if size is None else size / 1e6,
        "has_conv": any(isinstance(m, nn.Conv2d) for m in run.model.modules()),
    }


def _timed(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed(model: nn.Module, x: torch.Tensor, batch: int = 256, repeats: int = 20) -> dict:
    """CPU latency per sample at batch 1 and throughput at batch ``batch``.

    Medians of timed repeats after a warm-up (the first calls pay for allocations and kernel
    selection), with as many intra-op threads as the process has (``torch.get_num_threads``).
    """
    model = model.cpu().eval()
    one = x[:1].cpu()
    reps = (batch + len(x) - 1) // len(x)
    many = x.cpu().repeat(reps, *[1] * (x.ndim - 1))[:batch]
    with torch.inference_mode():
        latency = _timed(lambda: model(one), repeats, warmup=3)
        full = _timed(lambda: model(many), max(3, repeats // 4), warmup=1)
    return {
        "latency_ms": 1000 * latency,
        "throughput_per_s": batch / full,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }


# --- 2. evaluation and calibration ---------------------------------------------------------


def evaluate(cfg: Any, run: Loaded, task: Any) -> Any:
    """The test split through the run's task, as ``deepworks evaluate`` does it: metrics,
    details (confusion matrix, per-class metrics) and predictions (``y_prob`` for classifiers)."""
    from deepworks.train.trainer import Trainer

    trainer = Trainer(cfg.train.model_copy(update={"progress": False}), seed=cfg.seed)
    trainer.task = task
    task.setup(run.data, cfg.train.loss, trainer.device, run.model)
    try:
        result = trainer.evaluate(run.model.to(trainer.device), run.data.test)
    finally:
        run.model.cpu()
    result.metrics = {f"test/{k}": v for k, v in result.metrics.items()}
    return result


def calibration_part(y_prob: np.ndarray, y_true: np.ndarray, n_bins: int) -> dict[str, Any]:
    """ECE, MCE, Brier score and the reliability bins of the test predictions."""
    from deepworks.evaluate.calibration import calibration

    return calibration(y_prob, y_true, n_bins).to_dict()


# --- 3. robustness -------------------------------------------------------------------------


class FeatureRangeModel(nn.Module):
    """A tabular classifier seen from per-feature [0, 1] coordinates.

    Tabular features live on very different scales (a radius of 10, an area of 2000), so one
    eps in raw units means nothing for most of them. Here each feature is measured as a fraction
    of its training range, ``u = (x - lo) / (hi - lo)``, and the model sees
    ``model(scale(lo + u * (hi - lo)))``: an L-inf budget eps = 0.1 moves every feature by at
    most a tenth of its training range.
    """

    def __init__(self, model: nn.Module, scaler: dict[str, Any] | None, lo, hi):
        super().__init__()
        from deepworks.attacks.common import InputSpaceModel

        self.space = InputSpaceModel(model, scaler)
        self.register_buffer("lo", lo, persistent=False)
        self.register_buffer("width", (hi - lo).clamp_min(1e-12), persistent=False)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> fractions of each feature's training range."""
        return (x - self.lo) / self.width

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.space(self.lo + u * self.width)


def attack_space(run: Loaded) -> tuple[nn.Module, torch.Tensor, tuple[float, float], str]:
    """(model to attack, test inputs in its space, valid input range, unit of eps).

    Images (and other non-flat inputs) are attacked in their raw units, as ``deepworks attack``
    does, within the training inputs' minimum and maximum; flat tabular features as fractions
    of each feature's training range (:class:`FeatureRangeModel`).
    """
    from deepworks.attacks.common import InputSpaceModel

    scaler = run.info.get("scaler")
    raw_train = invert_scaler(run.data.train.x, scaler)
    raw_test = invert_scaler(run.data.test.x, scaler)
    if run.data.is_image or raw_train.ndim != 2:
        lo, hi = float(raw_train.min()), float(raw_train.max())
        return InputSpaceModel(run.model, scaler), raw_test, (lo, hi), "raw input units"
    space = FeatureRangeModel(run.model, scaler, raw_train.min(0).values, raw_train.max(0).values)
    return space, space.to_unit(raw_test), (0.0, 1.0), "fraction of each feature's range"


def default_eps(lo: float, hi: float) -> list[float]:
    """0.05, 0.1, 0.2 of the input range (exactly those for [0, 1] inputs)."""
    return [float(f"{f * (hi - lo):.6g}") for f in DEFAULT_EPS_FRACTIONS]


def middle(values: Sequence[float]) -> float:
    """The middle budget of a sorted list (the lower middle for an even count)."""
    return sorted(values)[(len(values) - 1) // 2]


def robustness_part(
    run: Loaded,
    attacks: dict[str, list[Any]],
    n: int,
    seed: int,
    device: torch.device,
    batch_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Robust accuracy of each attack at each eps on the first ``n`` test samples.

    ``attacks`` maps an attack name to its built attacks, one per eps (already checked against
    the input range). Returns (figures, examples) where examples holds the middle eps of the
    first attack: inputs, adversarial inputs, labels and both predictions.
    """
    from deepworks.attacks.common import run_attack

    space, x, _, _ = attack_space(run)
    space = space.to(device)
    x, y = x[:n], run.data.test.y[:n].long()
    curves: dict[str, list[dict[str, float]]] = {}
    examples: dict[str, Any] = {}
    clean = None
    try:
        for name, built in attacks.items():
            rows = []
            for attack in built:
                t0 = time.perf_counter()
                res = run_attack(space, x, y, attack, batch_size, seed, on_batch=on_batch)
                clean_ok, adv_ok = res["clean_pred"] == y, res["adv_pred"] == y
                delta = (res["x_adv"] - x).flatten(1)  # (N, D) perturbations
                clean = float(clean_ok.float().mean())
                rows.append(
                    {
                        "eps": attack.eps,
                        "robust_accuracy": float((clean_ok & adv_ok).float().mean()),
                        "success_rate": float((clean_ok & ~adv_ok).sum() / clean_ok.sum().clamp(1)),
                        "mean_linf": float(delta.abs().amax(1).mean()),
                        "mean_l2": float(delta.norm(dim=1).mean()),
                        "seconds": round(time.perf_counter() - t0, 3),
                    }
                )
                if not examples and attack.eps == middle([a.eps for a in built]):
                    examples = {"x": x, "y": y, "eps": attack.eps, "method": name} | res
            curves[name] = rows
    finally:
        run.model.cpu()
    figures = {
        "samples": len(y),
        "clean_accuracy": clean,
        "norms": {name: built[0].norm for name, built in attacks.items()},  # linf or l2
        "curves": {
            name: [{"eps": 0.0, "robust_accuracy": clean}] + rows for name, rows in curves.items()
        },
    }
    return figures, examples


# --- 4. explanations -----------------------------------------------------------------------


def explain_part(
    run: Loaded, methods: Sequence[str], inputs: int, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Attributions of each method for the first ``inputs`` test inputs, and the randomization
    sanity check (every weight layer re-initialized at once) of each method.

    Returns (figures, arrays): figures per method ``{"rho", "passed", "rhos"}``; arrays per
    method the attribution values, targets, predictions and the inputs.
    """
    from deepworks.explain.attributions import attribute
    from deepworks.explain.runs import context_for
    from deepworks.explain.sanity import randomization_test

    x, labels = run.data.test.x[:inputs], run.data.test.y[:inputs]
    context = context_for(run, labels, seed)
    with torch.no_grad():
        out = run.model(x)
    if run.regression:
        pred, target = out.reshape(len(x), -1)[:, 0], None
    else:
        pred = out.argmax(-1)
        target = pred
    figures: dict[str, Any] = {}
    arrays: dict[str, Any] = {"x": x, "labels": labels, "pred": pred}
    for method in methods:
        values = attribute(method, run.model, x, target, context).values
        sanity = randomization_test(run.model, x, method, target, "all", context, seed=seed)
        rho = sanity.stages[0][1]
        figures[method] = {
            "rho": rho,
            "rhos": sanity.stages[0][2],
            "rho_trained_vs_itself": sanity.same,
            "passed": bool(rho < 0.5),
        }
        arrays[method] = values.detach().cpu().numpy()
    return figures, arrays


# --- 5. per-class errors -------------------------------------------------------------------


def errors_part(details: dict[str, Any], names: Sequence[str], top: int = 5) -> dict[str, Any]:
    """Per-class precision / recall / F1 / support, the confusion matrix, the most confused
    (true, predicted) pairs."""
    cm = np.asarray(details["confusion_matrix"])
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = [
        {"true": names[i], "pred": names[j], "count": int(off[i, j]),
         "share_of_true": float(off[i, j] / max(cm[i].sum(), 1))}
        for i, j in (np.unravel_index(k, off.shape) for k in order)
        if off[i, j] > 0
    ]  # fmt: skip
    return {
        "class_names": list(names),
        "per_class": details["per_class"],
        "confusion_matrix": cm.tolist(),
        "confused_pairs": pairs,
        "errors": int(off.sum()),
        "samples": int(cm.sum()),
    }
