"""Attributions: how much each input value contributed to one output of a trained model.

Every method answers "which pixels / features made the model say class t?" with a map
``A(x) ∈ R^{shape of x}`` and is registered by name (``deepworks list explainers``). The
gradient and perturbation methods run on Captum; deepworks chooses baselines, feature groups and
the Grad-CAM layer, and checks completeness.

Gradient methods (one or a few backward passes):

- ``saliency``: ``|∂f_t/∂x|`` (Simonyan et al., 2013) — where a small change moves the score most.
- ``input_x_gradient``: ``x ⊙ ∂f_t/∂x`` — first-order contribution of each value relative to 0.
- ``ig`` (Integrated Gradients, Sundararajan et al., 2017): the path integral from a baseline
  ``x'`` to ``x``, ``IG_i = (x_i − x'_i) ∫₀¹ ∂f_t(x' + α(x − x'))/∂x_i dα``, approximated with a
  Gauss–Legendre quadrature. It is *complete*: ``Σ_i IG_i = f_t(x) − f_t(x')``; the gap
  ``|Σ IG − (f_t(x) − f_t(x'))|`` measures the quadrature error and is returned as ``delta``.
- ``smoothgrad`` (Smilkov et al., 2017): the saliency averaged over noisy copies
  ``x + N(0, σ²)``, with σ a fraction of the input range; sharper maps than one gradient.
- ``deeplift`` (Shrikumar et al., 2017): back-propagates *differences from the baseline* with the
  rescale rule, complete like IG but in one backward pass; ``deeplift_shap`` averages it over a
  background sample of training inputs (an approximation of SHAP values).
- ``grad_cam`` (Selvaraju et al., 2017): at the last convolutional stage, the feature maps
  ``A^k`` weighted by their average gradients, ``ReLU(Σ_k mean(∂f_t/∂A^k) A^k)``, upsampled to the
  image: a coarse map of the regions that speak for class t.

Perturbation methods (many forward passes, no gradients):

- ``occlusion`` (Zeiler & Fergus, 2014): slide a patch set to the baseline over the input; the
  attribution is the drop of ``f_t`` averaged over the patches that covered a value.
- ``kernel_shap`` (Lundberg & Lee, 2017) and ``lime`` (Ribeiro et al., 2016): switch groups of
  features (image superpixels on a regular grid; single tabular features) on and off at random,
  then fit a weighted linear model of ``f_t`` on the on/off pattern; its coefficients are the
  attributions (Shapley kernel weights for KernelSHAP, a proximity kernel and a lasso for LIME).

``permutation`` (feature importance over a data set) and ``attention`` (attention rollout) live in
their own modules. Each method is called as ``attribute(name, model, x, target, ...)``.
"""

from __future__ import annotations

import collections
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.errors import ConfigError, MissingExtraError
from deepworks.registry import EXPLAINERS, register_explainer

Baseline = Literal["zeros", "mean", "blur"]


@dataclass
class Attribution:
    """What an attribution method returns.

    Attributes:
        method: The registered name.
        values: (N, *input_shape) attribution of every input value (for a global method such as
            ``permutation``: (1, *input_shape), one importance per feature).
        target: (N,) the output index explained for each input.
        delta: (N,) completeness gap ``|Σ A − (f_t(x) − f_t(baseline))|`` (IG, DeepLift), else None.
        per_input: False for global methods (one map for the whole data set).
        info: Extra facts, e.g. ``{"layer": "blocks.2.0"}`` for Grad-CAM, or standard deviations.
    """

    method: str
    values: torch.Tensor
    target: torch.Tensor
    delta: torch.Tensor | None = None
    per_input: bool = True
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What some methods need besides the model and the inputs.

    Attributes:
        background: Training inputs (in the model's input space): the ``mean`` baseline and the
            DeepLiftShap background.
        labels: True labels (or values) of the inputs, for ``permutation``.
        regression: Whether the model's output is a value rather than class scores.
        seed: Seeds the random parts (noise, coalitions, permutations) so runs repeat.
    """

    background: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    regression: bool = False
    seed: int = 0


def captum():
    """The ``captum.attr`` module, or a one-line error naming the extra that installs it."""
    try:
        import captum.attr as attr
    except ImportError as exc:
        raise MissingExtraError(
            "deepworks explain needs captum: pip install -e .[explain]"
        ) from exc
    return attr


def attribute(
    method: str,
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | int | None = None,
    context: Context | None = None,
    **options: Any,
) -> Attribution:
    """Explain ``model``'s output ``target`` for the inputs ``x`` with a registered method.

    Args:
        method: A name from ``deepworks list explainers`` (``ig``, ``grad_cam``, ...).
        model: A model in its input space (scaled inputs); put in eval mode while explaining.
        x: (N, *input_shape) float inputs.
        target: (N,) output indices, one int for all, or None for the predicted classes.
        context: Background data, labels, seed (see :class:`Context`).
        **options: The method's own options (``steps=64``, ``baseline="mean"``, ...), checked
            against its signature.
    """
    context = context or Context()
    if not x.is_floating_point() and not getattr(EXPLAINERS.get(method), "accepts_tokens", False):
        raise ConfigError(
            f"{method} needs real-valued inputs; this model takes token ids: use --method attention"
        )
    was_training = model.training
    model.eval()
    try:
        if target is None:
            target = predicted(model, x, context.regression)
        target = torch.as_tensor(target, dtype=torch.long, device=x.device).expand(len(x))
        with warnings.catch_warnings():  # Captum's notes about hooks it sets and removes
            warnings.simplefilter("ignore")
            return EXPLAINERS.build(
                method,
                options,
                where=f"explain {method}",
                model=model,
                x=x,
                target=target.clone(),
                context=context,
            )
    finally:
        model.train(was_training)


@torch.no_grad()
def predicted(model: nn.Module, x: torch.Tensor, regression: bool = False) -> torch.Tensor:
    """(N,) predicted classes (argmax of the outputs); 0 (the one output) for regression."""
    if regression:
        return torch.zeros(len(x), dtype=torch.long, device=x.device)
    return model(x).argmax(-1)


# --- baselines and feature groups ------------------------------------------------------------


def make_baseline(kind: str, x: torch.Tensor, context: Context, sigma: float = 1.0) -> torch.Tensor:
    """The reference input a path or difference method compares against, shaped like ``x``.

    ``zeros``: the all-zero input (with standard scaling: the average training value of every
    feature); ``mean``: the mean training input; ``blur``: each image Gaussian-blurred with
    ``sigma`` pixels, which removes edges but keeps the overall brightness.
    """
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "mean":
        if context.background is None:
            raise ConfigError("baseline 'mean' needs training data (none was given)")
        return context.background.mean(0, keepdim=True).to(x).expand_as(x).clone()
    if kind == "blur":
        if x.ndim != 4:
            raise ConfigError("baseline 'blur' needs images; use zeros or mean for this data")
        return gaussian_blur(x, sigma)
    raise ConfigError(f"baseline {kind!r} is not a baseline (choices: blur, mean, zeros)")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) images blurred per channel with a Gaussian of ``sigma`` pixels."""
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:  # reflection needs pad < side: fall back to replicating edges
        y = F.pad(x, (radius,) * 4, mode="replicate")
    else:
        y = F.pad(x, (radius,) * 4, mode="reflect")
    y = F.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)  # rows
    return F.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)  # cols


def feature_groups(x: torch.Tensor, cell: int | None = None) -> torch.Tensor:
    """(1, *input_shape) integer mask of the features KernelSHAP / LIME switch together.

    Images: square superpixels of ``cell`` pixels on a regular grid (default a quarter of the
    shorter side, so an 8x8 digit has 16 cells of 2x2), shared by all channels. Other inputs:
    every value on its own.
    """
    if x.ndim != 4:
        return torch.arange(math.prod(x.shape[1:]), device=x.device).view(1, *x.shape[1:])
    _, c, h, w = x.shape
    cell = cell or max(1, min(h, w) // 4)
    rows = torch.arange(h, device=x.device) // cell
    cols = torch.arange(w, device=x.device) // cell
    grid = rows[:, None] * math.ceil(w / cell) + cols[None, :]  # (H, W) cell index
    return grid.expand(1, c, h, w).clone()


def completeness_gap(
    model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, values: torch.Tensor, target
) -> torch.Tensor:
    """(N,) ``|Σ_i A_i − (f_t(x) − f_t(baseline))|``: zero for an exactly complete attribution."""
    with torch.no_grad():
        rows = torch.arange(len(x), device=x.device)
        gain = model(x)[rows, target] - model(baseline)[rows, target]
    return (values.flatten(1).sum(1) - gain).abs()


# --- gradient methods -----------------------------------------------------------------------


@register_explainer("saliency")
def saliency(model, x, target, context: Context, absolute: bool = True) -> Attribution:
    """Saliency: the gradient of the target score, |∂f_t/∂x| (Simonyan et al., 2013)."""
    values = captum().Saliency(model).attribute(x, target=target, abs=absolute)
    return Attribution("saliency", values.detach(), target)


@register_explainer("input_x_gradient")
def input_x_gradient(model, x, target, context: Context) -> Attribution:
    """Gradient x input: x ⊙ ∂f_t/∂x, the first-order contribution of each value."""
    values = captum().InputXGradient(model).attribute(x, target=target)
    return Attribution("input_x_gradient", values.detach(), target)


@register_explainer("ig")
def integrated_gradients(
    model,
    x,
    target,
    context: Context,
    baseline: Baseline = "zeros",
    steps: int = 128,
    sigma: float = 1.0,
    internal_batch_size: int | None = 512,
) -> Attribution:
    """Integrated Gradients: the gradient integrated along the path from a baseline to x."""
    base = make_baseline(baseline, x, context, sigma)
    ig = captum().IntegratedGradients(model)
    values, captum_delta = ig.attribute(
        x,
        baselines=base,
        target=target,
        n_steps=steps,
        method="gausslegendre",
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )
    values = values.detach()
    delta = completeness_gap(model, x, base, values, target)
    info = {"baseline": baseline, "steps": steps, "captum_delta": captum_delta.detach().abs()}
    return Attribution("ig", values, target, delta, info=info)


@register_explainer("smoothgrad")
def smoothgrad(
    model, x, target, context: Context, samples: int = 32, noise: float = 0.15
) -> Attribution:
    """SmoothGrad: saliency averaged over noisy copies of the input (noise tunnel)."""
    attr = captum()
    stdev = noise * float(x.max() - x.min())  # σ as a fraction of the inputs' range
    torch.manual_seed(context.seed)
    tunnel = attr.NoiseTunnel(attr.Saliency(model))
    values = tunnel.attribute(
        x, nt_type="smoothgrad", nt_samples=samples, stdevs=stdev, target=target
    )
    return Attribution("smoothgrad", values.detach(), target, info={"stdev": stdev})


@register_explainer("deeplift")
def deeplift(
    model, x, target, context: Context, baseline: Baseline = "zeros", sigma: float = 1.0
) -> Attribution:
    """DeepLIFT: differences from a baseline back-propagated with the rescale rule."""
    base = make_baseline(baseline, x, context, sigma)
    values = captum().DeepLift(model).attribute(x, baselines=base, target=target)
    values = values.detach()
    delta = completeness_gap(model, x, base, values, target)
    return Attribution("deeplift", values, target, delta, info={"baseline": baseline})


@register_explainer("deeplift_shap")
def deeplift_shap(model, x, target, context: Context, background: int = 32) -> Attribution:
    """DeepLiftShap: DeepLIFT averaged over a background sample of training inputs."""
    if context.background is None:
        raise ConfigError("deeplift_shap needs training data as its background")
    generator = torch.Generator().manual_seed(context.seed)
    pick = torch.randperm(len(context.background), generator=generator)[:background]
    base = context.background[pick].to(x)
    values = captum().DeepLiftShap(model).attribute(x, baselines=base, target=target)
    return Attribution("deeplift_shap", values.detach(), target, info={"background": len(base)})


# --- Grad-CAM -------------------------------------------------------------------------------


def forward_calls(
    model: nn.Module, x: torch.Tensor, modules: Iterable[nn.Module]
) -> list[tuple[nn.Module, tuple[int, ...] | None]]:
    """(module, output shape) for every call of ``modules`` while ``model`` runs one input, in
    the order the calls finish (forward hooks, so it works for any architecture)."""
    calls: list[tuple[nn.Module, tuple[int, ...] | None]] = []

    def hook(module, _inputs, output):
        calls.append((module, tuple(output.shape) if isinstance(output, torch.Tensor) else None))

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return calls


def grad_cam_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, str]:
    """(name of the last Conv2d run by ``model(x)``, name of the module Grad-CAM explains).

    Found by running the model once with forward hooks, so it works for any architecture: the
    last convolution in *execution* order, followed through every later module whose output
    still has that convolution's output shape — its batch norm and activation, a residual sum
    (the output of a residual block). Grad-CAM thus sees the final feature maps, not the raw
    pre-activation of the last conv. Modules run more than once (a shared activation) and the
    model itself are skipped.
    """
    names = {m: n for n, m in model.named_modules() if n}
    order = forward_calls(model, x, names)
    calls = collections.Counter(m for m, _ in order)
    convs = [i for i, (m, _) in enumerate(order) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(
            f"grad_cam needs a convolutional layer; {type(model).__name__} has none: "
            "use ig or saliency"
        )
    last = convs[-1]
    conv, shape = order[last]
    layer = conv
    for module, out_shape in order[last + 1 :]:  # hooks fire when a module finishes
        if out_shape == shape and calls[module] == 1:
            layer = module
    return names[conv], names[layer]


@register_explainer("grad_cam")
def grad_cam(model, x, target, context: Context, relu: bool = True) -> Attribution:
    """Grad-CAM: last-stage feature maps weighted by their mean gradients, upsampled."""
    attr = captum()
    conv_name, layer_name = grad_cam_layer(model, x)
    if x.ndim != 4:
        raise ConfigError("grad_cam needs images (N, C, H, W); use ig or saliency for this data")
    layer = model.get_submodule(layer_name)
    cam = attr.LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=relu)
    cam = attr.LayerAttribution.interpolate(cam.detach(), tuple(x.shape[-2:]), "bilinear")
    values = cam.expand_as(x).clone()  # (N, 1, H, W) -> one map shared by every channel
    info = {"conv": conv_name, "layer": layer_name, "resolution": list(cam.shape[-2:])}
    return Attribution("grad_cam", values, target, info=info)


# --- perturbation methods -------------------------------------------------------------------


@register_explainer("occlusion")
def occlusion(
    model,
    x,
    target,
    context: Context,
    window: int | None = None,
    stride: int | None = None,
    baseline: Baseline = "zeros",
) -> Attribution:
    """Occlusion: the score drop when a sliding patch is replaced by the baseline."""
    base = make_baseline(baseline, x, context)
    if x.ndim == 4:  # (C, k, k) patches over all channels
        window = window or max(1, min(x.shape[-2:]) // 4)
        stride = stride or max(1, window // 2)
        shapes, strides = (x.shape[1], window, window), (x.shape[1], stride, stride)
    else:  # one value (a tabular feature) at a time
        window, stride = window or 1, stride or 1
        shapes, strides = (window,) * (x.ndim - 1), (stride,) * (x.ndim - 1)
    values = (
        captum()
        .Occlusion(model)
        .attribute(x, sliding_window_shapes=shapes, strides=strides, baselines=base, target=target)
    )
    info = {"window": window, "stride": stride, "baseline": baseline}
    return Attribution("occlusion", values.detach(), target, info=info)


def _surrogate(method: str, explainer, x, target, context: Context, baseline, cell, samples):
    """KernelSHAP / LIME one input at a time (each fits its own linear model), seeded once."""
    base = make_baseline(baseline, x, context)
    mask = feature_groups(x, cell)
    torch.manual_seed(context.seed)
    rows = []
    for i in range(len(x)):
        rows.append(
            explainer.attribute(
                x[i : i + 1],
                baselines=base[i : i + 1],
                target=int(target[i]),
                feature_mask=mask,
                n_samples=samples,
                perturbations_per_eval=min(samples, 64),
            )
        )
    values = torch.cat(rows).detach()
    info = {"groups": int(mask.max()) + 1, "samples": samples, "baseline": baseline}
    return Attribution(method, values, target, info=info)


@register_explainer("kernel_shap")
def kernel_shap(
    model,
    x,
    target,
    context: Context,
    samples: int = 200,
    cell: int | None = None,
    baseline: Baseline = "zeros",
) -> Attribution:
    """KernelSHAP: Shapley values from a kernel-weighted linear fit on feature coalitions."""
    explainer = captum().KernelShap(model)
    return _surrogate("kernel_shap", explainer, x, target, context, baseline, cell, samples)


@register_explainer("lime")
def lime(
    model,
    x,
    target,
    context: Context,
    samples: int = 200,
    cell: int | None = None,
    baseline: Baseline = "zeros",
    alpha: float = 0.01,
) -> Attribution:
    """LIME: a sparse linear surrogate fitted to random on/off perturbations near the input."""
    attr = captum()
    from captum._utils.models.linear_model import SkLearnLasso

    explainer = attr.Lime(model, interpretable_model=SkLearnLasso(alpha=alpha))
    return _surrogate("lime", explainer, x, target, context, baseline, cell, samples)
