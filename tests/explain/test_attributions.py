"""Attribution methods against Captum called directly, IG completeness, the Grad-CAM layer,
permutation importance against scikit-learn, the randomization test and activation maximization."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from deepworks.errors import ConfigError, MissingExtraError
from deepworks.explain import Context, activation_maximization, attribute, grad_cam_layer
from deepworks.explain.attention import rollout
from deepworks.explain.attributions import gaussian_blur
from deepworks.explain.permutation import permutation_importance
from deepworks.explain.sanity import randomization_test
from deepworks.registry import EXPLAINERS, MODELS

captum_attr = pytest.importorskip("captum.attr")
TOL = 1e-5  # float32 rounding: the same computation, a different order of operations at most


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    kwargs = {"in_channels": 1, "num_classes": 10, "image_size": 8, "channels": [4, 8]}
    model = MODELS.build("cnn", kwargs).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 1, 8, 8, generator=g), torch.randn(40, 1, 8, 8, generator=g)


@pytest.fixture(scope="module")
def tabular():
    torch.manual_seed(2)
    model = MODELS.build("mlp", {"in_features": 6, "num_classes": 3, "hidden": [16]}).eval()
    g = torch.Generator().manual_seed(3)
    return model, torch.randn(4, 6, generator=g), torch.randn(30, 6, generator=g)


def grid_mask(side: int = 8, cell: int = 2) -> torch.Tensor:
    idx = torch.arange(side) // cell
    return (idx[:, None] * (side // cell) + idx[None, :]).view(1, 1, side, side)


def reference(method: str, model, x, target, background, tabular: bool):
    """Captum called directly with the settings deepworks documents for ``method``."""
    A = captum_attr
    zeros = torch.zeros_like(x)
    if method == "saliency":
        return A.Saliency(model).attribute(x, target=target, abs=True)
    if method == "input_x_gradient":
        return A.InputXGradient(model).attribute(x, target=target)
    if method == "ig":
        return A.IntegratedGradients(model).attribute(
            x, baselines=zeros, target=target, n_steps=128, method="gausslegendre"
        )
    if method == "smoothgrad":
        torch.manual_seed(0)
        tunnel = A.NoiseTunnel(A.Saliency(model))
        stdev = 0.15 * float(x.max() - x.min())
        return tunnel.attribute(x, nt_type="smoothgrad", nt_samples=32, stdevs=stdev, target=target)
    if method == "deeplift":
        return A.DeepLift(model).attribute(x, baselines=zeros, target=target)
    if method == "deeplift_shap":  # every background input (their order does not matter)
        return A.DeepLiftShap(model).attribute(x, baselines=background[:8], target=target)
    if method == "grad_cam":
        layer = model.get_submodule("blocks.1.0")  # the last conv-BN-ReLU block
        cam = A.LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
        return A.LayerAttribution.interpolate(cam, (8, 8), "bilinear").expand_as(x)
    if method == "occlusion":
        window, stride = ((1,), (1,)) if tabular else ((1, 2, 2), (1, 1, 1))
        return A.Occlusion(model).attribute(
            x, sliding_window_shapes=window, strides=stride, baselines=zeros, target=target
        )
    if method in ("kernel_shap", "lime"):
        from captum._utils.models.linear_model import SkLearnLasso

        if method == "kernel_shap":
            explainer = A.KernelShap(model)
        else:
            explainer = A.Lime(model, interpretable_model=SkLearnLasso(alpha=0.01))
        mask = torch.arange(6).view(1, 6) if tabular else grid_mask()
        torch.manual_seed(0)
        rows = [
            explainer.attribute(
                x[i : i + 1], baselines=zeros[i : i + 1], target=int(target[i]),
                feature_mask=mask, n_samples=200, perturbations_per_eval=64,
            )
            for i in range(len(x))
        ]  # fmt: skip
        return torch.cat(rows)
    raise AssertionError(method)


CAPTUM_METHODS = [
    "saliency",
    "input_x_gradient",
    "ig",
    "smoothgrad",
    "deeplift",
    "deeplift_shap",
    "grad_cam",
    "occlusion",
    "kernel_shap",
    "lime",
]


def test_every_registered_method_is_covered():
    assert set(EXPLAINERS.names()) == set(CAPTUM_METHODS) | {"permutation", "attention"}


@pytest.mark.parametrize("method", CAPTUM_METHODS)
def test_images_match_captum(method, images):
    model, (x, background) = tiny_cnn(), images
    target = torch.tensor([0, 3, 7])
    context = Context(background=background[:8] if method == "deeplift_shap" else background)
    ours = attribute(method, model, x, target, context)
    expected = reference(method, model, x, target, background, tabular=False)
    assert ours.values.shape == x.shape
    assert ours.values.abs().max() > 0
    diff = (ours.values - expected.detach()).abs().max().item()
    assert diff < TOL * max(1.0, expected.abs().max().item()), (method, diff)


@pytest.mark.parametrize(
    "method", ["saliency", "ig", "deeplift", "occlusion", "kernel_shap", "lime", "smoothgrad"]
)
def test_tabular_matches_captum(method, tabular):
    model, x, background = tabular
    target = torch.tensor([0, 1, 2, 1])
    ours = attribute(method, model, x, target, Context(background=background))
    expected = reference(method, model, x, target, background, tabular=True)
    diff = (ours.values - expected.detach()).abs().max().item()
    assert diff < TOL * max(1.0, expected.abs().max().item()), (method, diff)


def test_predicted_class_is_the_default_target(images):
    model, (x, _) = tiny_cnn(), images
    ours = attribute("saliency", model, x)
    assert torch.equal(ours.target, model(x).argmax(-1))


@pytest.mark.parametrize("baseline", ["zeros", "mean", "blur"])
def test_integrated_gradients_is_complete(baseline, images):
    """Σ IG = f(x) − f(x') up to the quadrature error: within 1% of the output gap here."""
    model, (x, background) = tiny_cnn(), images
    target = torch.tensor([1, 2, 3])
    result = attribute("ig", model, x, target, Context(background=background), baseline=baseline)
    base = {
        "zeros": torch.zeros_like(x),
        "mean": background.mean(0, keepdim=True).expand_as(x),
        "blur": gaussian_blur(x, 1.0),
    }[baseline]
    with torch.no_grad():
        rows = torch.arange(3)
        gain = model(x)[rows, target] - model(base)[rows, target]
    gap = (result.values.flatten(1).sum(1) - gain).abs()
    assert torch.allclose(result.delta, gap, atol=1e-5)
    assert torch.allclose(result.delta, result.info["captum_delta"], atol=1e-4)
    assert (gap <= 1e-2 * gain.abs().clamp_min(1.0)).all(), gap
    # a crude two-point quadrature is visibly incomplete: the gap measures something
    coarse = attribute(
        "ig", model, x, target, Context(background=background), baseline=baseline, steps=2
    )
    assert coarse.delta.max() > 3 * result.delta.max()


def test_blur_baseline_matches_scipy(images):
    from scipy.ndimage import gaussian_filter

    x = images[0]
    expected = gaussian_filter(x.numpy(), sigma=(0, 0, 1.0, 1.0), mode="mirror", truncate=2.0)
    assert np.allclose(gaussian_blur(x, 1.0).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["cnn", "resnet", "lenet"])
def test_grad_cam_explains_the_last_conv_stage(name):
    """The last Conv2d (registration = execution order in these models) and a layer after it
    whose output has that conv's shape — found by the same code for every architecture."""
    torch.manual_seed(0)
    cls = MODELS.get(name)
    model = MODELS.build(name, dict(cls.example_kwargs) | {"num_classes": 4}).eval()
    x = torch.randn(2, *cls.example_input_shape)
    conv_name, layer_name = grad_cam_layer(model, x)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert conv_name == convs[-1]
    shapes = {}
    hooks = [
        model.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: shapes.__setitem__(n, o.shape)
        )
        for n in {conv_name, layer_name}
    ]
    model(x)
    for h in hooks:
        h.remove()
    assert shapes[layer_name] == shapes[conv_name]
    cam = attribute("grad_cam", model, x, torch.tensor([0, 1]))
    assert cam.values.shape == x.shape and cam.info["layer"] == layer_name


def test_grad_cam_on_a_model_without_convolutions(tabular):
    model, x, _ = tabular
    with pytest.raises(ConfigError, match="grad_cam needs a convolutional layer; MLP has none"):
        attribute("grad_cam", model, x.view(4, 1, 2, 3))


def test_unknown_method_and_option_are_one_line_errors(images):
    model, (x, _) = tiny_cnn(), images
    with pytest.raises(ConfigError, match="did you mean 'saliency'"):
        attribute("saliancy", model, x)
    with pytest.raises(ConfigError, match="unknown key 'stesp'; did you mean 'steps'"):
        attribute("ig", model, x, stesp=5)


def test_permutation_importance_matches_sklearn_and_ranks_features():
    """Only feature 0 decides the class; feature 1 is noise. Our numbers equal scikit-learn's
    permutation_importance on the same model, data and seed."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.inspection import permutation_importance as sk_importance

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    model = MODELS.build("mlp", {"in_features": 2, "num_classes": 2, "hidden": [8]})
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()

    class Wrapped(ClassifierMixin, BaseEstimator):
        def fit(self, a, b):
            return self

        def predict(self, a):
            with torch.no_grad():
                return model(torch.as_tensor(a, dtype=torch.float32)).argmax(-1).numpy()

    mean, std, base = permutation_importance(model, x, y, repeats=4, seed=7)
    sk = sk_importance(Wrapped().fit(x, y), x.numpy(), y.numpy(), n_repeats=4, random_state=7)
    assert np.allclose(mean, sk.importances_mean, atol=1e-12)
    assert np.allclose(std, sk.importances_std, atol=1e-12)
    assert base > 0.9 and mean[0] > 0.3 > 0.05 > abs(mean[1])
    via = attribute("permutation", model, x, context=Context(labels=y, seed=7), repeats=4)
    assert not via.per_input and np.allclose(via.values.view(-1).numpy(), mean, atol=1e-7)


def test_permutation_importance_for_regression_matches_sklearn_r2():
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.inspection import permutation_importance as sk_importance

    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 3, generator=g)
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 0.0, -0.5]]))
    y = model(x).detach()[:, 0] + 0.1 * torch.randn(200, generator=g)

    class Wrapped(RegressorMixin, BaseEstimator):
        def fit(self, a, b):
            return self

        def predict(self, a):
            with torch.no_grad():
                return model(torch.as_tensor(a, dtype=torch.float32))[:, 0].numpy()

    mean, _, _ = permutation_importance(model, x, y, repeats=3, seed=0, regression=True)
    sk = sk_importance(Wrapped().fit(x, y), x.numpy(), y.numpy(), n_repeats=3, random_state=0)
    assert np.allclose(mean, sk.importances_mean, atol=1e-6)
    assert mean[0] > mean[2] > mean[1] - 1e-9


def test_attention_rollout():
    """One layer: ½(mean over heads) + ½I, rows renormalized; two layers: their product."""
    g = torch.Generator().manual_seed(0)
    maps = [torch.rand(2, 3, 5, 5, generator=g).softmax(-1) for _ in range(2)]
    one = 0.5 * maps[0].mean(1) + 0.5 * torch.eye(5)
    assert torch.allclose(rollout(maps[:1]), one / one.sum(-1, keepdim=True))
    two = 0.5 * maps[1].mean(1) + 0.5 * torch.eye(5)
    assert torch.allclose(rollout(maps), two @ one, atol=1e-6)
    assert torch.allclose(rollout(maps).sum(-1), torch.ones(2, 5))
    torch.manual_seed(0)
    cls = MODELS.get("vit")
    vit = MODELS.build("vit", dict(cls.example_kwargs) | {"num_classes": 3}).eval()
    x = torch.randn(2, *cls.example_input_shape)
    result = attribute("attention", vit, x)
    assert result.values.shape == x.shape and (result.values >= 0).all()


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP trained on 1400 digits (64 pixels in [0, 1]) and 16 held-out digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = MODELS.build("mlp", {"in_features": 64, "num_classes": 10, "hidden": [32]})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:1400]), y[:1400]).backward()
        opt.step()
    return model.eval(), x[1400:1416], y[1400:1416]


def test_randomization_test_separates_trained_from_random_weights(digits_mlp):
    model, x, y = digits_mlp
    assert (model(x).argmax(-1) == y).float().mean() > 0.8
    result = randomization_test(model, x, "saliency", mode="cascading")
    assert result.same == pytest.approx(1.0)
    assert [label for label, _, _ in result.stages] == ["head", "features.1"]
    assert all(rho < 0.5 for _, rho, _ in result.stages), result.stages
    every = randomization_test(model, x, "saliency", mode="all")
    assert len(every.stages) == 1 and every.stages[0][1] < 0.5
    assert torch.equal(model(x).argmax(-1), model(x).argmax(-1))  # the model is unchanged


def test_activation_maximization_raises_the_target_logit(digits_mlp):
    model = tiny_cnn()  # images: jitter and total variation on
    vis = activation_maximization(model, (1, 8, 8), [2, 5], steps=60, seed=0)
    assert vis.images.shape == (2, 1, 8, 8)
    assert (vis.end > vis.start + 1.0).all(), (vis.start, vis.end)
    trained = digits_mlp[0]  # a trained model's optimum is classified as its class
    bounds = (torch.tensor(0.0), torch.tensor(1.0))
    vis = activation_maximization(trained, (64,), [2, 5, 8], steps=100, bounds=bounds)
    assert (vis.end > vis.start + 1.0).all()
    assert vis.images.min() >= 0 and vis.images.max() <= 1
    with torch.no_grad():
        assert trained(vis.images).argmax(-1).tolist() == [2, 5, 8]
    channels = activation_maximization(trained, (64,), [0, 1], layer="features.1", steps=30)
    assert (channels.end > channels.start).all() and channels.layer == "features.1"


def test_missing_captum_is_one_line(monkeypatch, images):
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(MissingExtraError, match=r"deepworks explain needs captum: pip install"):
        attribute("saliency", tiny_cnn(), images[0])


@pytest.mark.slow
def test_import_deepworks_does_not_import_captum():
    code = "import sys, deepworks; sys.exit('captum' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
