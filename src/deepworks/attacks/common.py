"""What every attack shares: the threat model, the input space, and robust accuracy.

An adversarial example for a classifier ``f`` and a correctly classified input ``x`` with label
``y`` is an ``x'`` close to ``x`` that ``f`` gets wrong. "Close" is the threat model:

    ||x' - x||_p <= eps    and    clip_min <= x' <= clip_max        (p = inf or 2)

Attacks act in the *raw input space* (digit pixels in [0, 1]), where ``eps`` means something to a
person, even when the run's model was trained on standardized inputs: :class:`InputSpaceModel`
wraps the model with the run's scaler, ``f(x) = model((x - shift) / scale)``, so gradients flow
through the scaling and the perturbation budget is measured before it.

The robust accuracy at ``eps`` is the fraction of samples that the model classifies correctly both
as they are and under the attack (a sample that is already wrong counts as broken, as in
AutoAttack / RobustBench):

    robust_acc(eps) = 1/N * sum_i [f(x_i) = y_i  and  f(attack(x_i, eps)) = y_i]

Every attack is deterministic given a seed: randomness (PGD's random start, Square's windows)
comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.registry import ATTACKS


class Attack:
    """Base of every attack: the threat model and one call per batch.

    Args:
        eps: Perturbation budget, in the norm of the attack (``norm``), in raw input units.
        clip_min: Smallest valid input value.
        clip_max: Largest valid input value.
    """

    name = "attack"
    norm = "linf"  # "linf" or "l2": how eps is measured

    def __init__(self, eps: float, clip_min: float = 0.0, clip_max: float = 1.0):
        self.eps = float(eps)
        self.clip_min, self.clip_max = float(clip_min), float(clip_max)
        if not self.clip_max > self.clip_min:
            raise ConfigError(
                f"clip range [{clip_min}, {clip_max}] is empty; clip_max must exceed clip_min"
            )

    def check_eps(self, num_features: int) -> None:
        """A one-line :class:`ConfigError` for an eps outside the input range."""
        check_eps(self.eps, self.norm, self.clip_min, self.clip_max, num_features)

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Adversarial versions of ``x`` (same shape) against ``model`` (returns logits)."""
        raise NotImplementedError

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Attack one batch; random draws come from ``generator`` (None: the global RNG)."""
        self.check_eps(x[0].numel())
        # gradients are taken w.r.t. the input only, also under an outer no_grad / inference_mode
        # (clones made here are ordinary tensors that autograd accepts)
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().clamp(self.clip_min, self.clip_max)
            x_adv = self.perturb(model, x, y.clone(), generator)
        return x_adv.detach()

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Back into the eps-ball around ``x`` (in this attack's norm) and the input range."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:  # shrink deltas longer than eps onto the sphere
            factor = torch.clamp(self.eps / (flat_norm(delta) + 1e-12), max=1.0)  # (B,)
            delta = delta * factor.view(-1, *[1] * (x.ndim - 1))
        return (x + delta).clamp(self.clip_min, self.clip_max)


def check_eps(eps: float, norm: str, clip_min: float, clip_max: float, num_features: int) -> None:
    """Raise a one-line :class:`ConfigError` when ``eps`` is negative, not finite or larger than
    the input range allows (``clip_max - clip_min`` for L-inf; times sqrt(D) for L2)."""
    width = clip_max - clip_min
    largest = width if norm == "linf" else width * math.sqrt(num_features)
    if not math.isfinite(eps) or eps < 0 or eps > largest + 1e-9:
        unit = "" if norm == "linf" else f" (L2 over {num_features} inputs)"
        raise ConfigError(
            f"eps {eps:g} is outside the input range [{clip_min:g}, {clip_max:g}]: an {norm} "
            f"attack needs 0 <= eps <= {largest:g}{unit}"
        )


def flat_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample: (B, ...) -> (B,)."""
    return t.flatten(1).norm(p=2, dim=1)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit of the true class minus the largest other logit, (B,); negative = misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.clone()
    others.scatter_(1, y[:, None], -float("inf"))
    return true - others.amax(dim=1)


class InputSpaceModel(nn.Module):
    """A classifier seen from the raw input space, always returning (B, K) logits.

    Applies the run's scaler (``data.json`` "scaler": {"kind", "shift", "scale"}) before the
    model, turns a softmax output layer's probabilities back into logits (their log), and a
    single binary logit z into the two-class logits [0, z].
    """

    def __init__(self, model: nn.Module, scaler: dict[str, Any] | None = None):
        super().__init__()
        self.model = model
        self.probs = getattr(model, "output_kind", "logits") == "probs"
        scaled = bool(scaler) and scaler.get("kind", "none") != "none"
        shift = torch.tensor(scaler["shift"], dtype=torch.float32) if scaled else torch.zeros(())
        scale = torch.tensor(scaler["scale"], dtype=torch.float32) if scaled else torch.ones(())
        self.register_buffer("shift", shift, persistent=False)
        self.register_buffer("scale", scale, persistent=False)

    def scale_in(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> the scaled inputs the model was trained on."""
        return (x - self.shift) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(self.scale_in(x))
        if self.probs:
            out = out.clamp_min(1e-12).log()
        if out.shape[-1] == 1:  # sigmoid output: P(1) = sigmoid(z) = softmax([0, z])[1]
            out = torch.cat([torch.zeros_like(out), out], dim=-1)
        return out.float()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and afterwards restore every submodule's own mode (a frozen
    batch norm stays in eval mode inside a training model)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def build_attack(
    name: str | Attack,
    eps: float,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    where: str = "attack",
    **kwargs: Any,
) -> Attack:
    """An attack from its registered name (``deepworks list attacks``) and options."""
    if isinstance(name, Attack):
        return name
    return ATTACKS.build(
        name, kwargs, where=where, eps=float(eps), clip_min=clip_min, clip_max=clip_max
    )


def require_classes(task_type: str | None, where: str = "attack") -> None:
    """Attacks need a classifier: a one-line error for regression (and other) runs."""
    if task_type != "classification":
        raise ConfigError(
            f"{where}: adversarial attacks need a classification run (class labels to flip), "
            f"this run is {task_type}; train a classifier (task: {{name: classification}})"
        )


def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256):
    """Accuracy of ``model`` (in eval mode, restored afterwards) on ``(x, y)``."""
    with eval_mode(model), torch.no_grad():
        pred = torch.cat([model(b.to(_device(model))).argmax(1).cpu() for b in x.split(batch_size)])
    return float((pred == y.cpu()).float().mean())


def run_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    batch_size: int = 256,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Attack a whole split in batches, with the model in eval mode (restored afterwards).

    Returns ``{"x_adv", "clean_pred", "adv_pred"}``. ``on_batch(n)`` is called after each batch
    of n samples (a progress bar).
    """
    attack.check_eps(x[0].numel())
    device = _device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    advs, clean, adv = [], [], []
    with eval_mode(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            xb, yb = xb.to(device), yb.to(device)
            xa = attack(model, xb, yb, generator)
            with torch.no_grad():
                clean.append(model(xb).argmax(1).cpu())
                adv.append(model(xa).argmax(1).cpu())
            advs.append(xa.cpu())
            if on_batch is not None:
                on_batch(len(yb))
    return {"x_adv": torch.cat(advs), "clean_pred": torch.cat(clean), "adv_pred": torch.cat(adv)}


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | Attack = "pgd",
    eps: float = 0.1,
    batch_size: int = 256,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    seed: int = 0,
    **attack_kwargs: Any,
) -> float:
    """Fraction of ``(x, y)`` classified correctly before and after the attack at ``eps``.

    ``model`` must take raw inputs and return logits (wrap it in :class:`InputSpaceModel`).

    Example:
        >>> robust_accuracy(model, x_test, y_test, "pgd", eps=0.1, steps=20)
    """
    attack = build_attack(attack, eps, clip_min, clip_max, **attack_kwargs)
    out = run_attack(model, x, y, attack, batch_size, seed)
    y = y.cpu()
    return float(((out["clean_pred"] == y) & (out["adv_pred"] == y)).float().mean())


def robustness_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str = "pgd",
    eps: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3),
    batch_size: int = 256,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    seed: int = 0,
    **attack_kwargs: Any,
) -> list[dict[str, float]]:
    """Robust accuracy at each eps (eps = 0 is the clean accuracy): ``[{"eps", "accuracy"}]``."""
    curve = []
    for e in eps:
        if e == 0:
            acc = clean_accuracy(model, x, y, batch_size)
        else:
            acc = robust_accuracy(
                model, x, y, attack, e, batch_size, clip_min, clip_max, seed, **attack_kwargs
            )
        curve.append({"eps": float(e), "accuracy": acc})
    return curve


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device
