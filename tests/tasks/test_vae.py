"""VAE task: the ELBO's two terms against a hand computation, the KL warm-up ramp and its exact
resume, evaluation (sample quality, the global RNG left alone), the report, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import deepworks as dw
from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.tasks.vae import VAETask, kl_divergence, reconstruction_nll
from deepworks.train.callbacks import Callback
from deepworks.train.trainer import Trainer

FAST = {"progress": False, "checkpoint": None, "device": "cpu"}
CPU = torch.device("cpu")


def toy_images(n: int = 48, seed: int = 0, classes: int = 3) -> DataBundle:
    """Blurry bars in [0, 1]: class c lights row 2c of a 1 x 6 x 6 image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.1 * torch.rand(n, 1, 6, 6, generator=g)
    x[torch.arange(n), 0, 2 * y] += 0.8
    split = Split(x, y)
    return DataBundle(
        name="bars",
        train=split,
        val=Split(x[:12], y[:12]),
        test=Split(x[12:24], y[12:24]),
        task_type="classification",
        input_shape=(1, 6, 6),
        num_classes=classes,
        class_names=[f"bar{i}" for i in range(classes)],
    )


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def test_elbo_terms_match_a_hand_computation():
    # a VAE without hidden layers: μ, log σ² and the logits are affine maps we can redo in numpy
    torch.manual_seed(0)
    model = create_model("vae", in_features=4, latent_dim=2, hidden=[])
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape) * 0.7)
    x = torch.tensor([[0.0, 1.0, 0.25, 0.5], [1.0, 0.0, 0.75, 0.0]])
    W = {k: v.double().numpy() for k, v in model.state_dict().items()}
    xn = x.double().numpy()
    mu = xn @ W["mu.weight"].T + W["mu.bias"]
    logvar = xn @ W["logvar.weight"].T + W["logvar.bias"]
    torch.manual_seed(123)
    eps = torch.randn(2, 2).double().numpy()  # what forward draws after the same seed
    z = mu + np.exp(logvar / 2) * eps
    p = sigmoid(z @ W["decoder.weight"].T + W["decoder.bias"])
    bce = -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum(1)  # Bernoulli NLL, nats
    kl = -0.5 * (1 + logvar - mu**2 - np.exp(logvar)).sum(1)

    task = VAETask(beta=0.5)
    task.setup(toy_images(), LossConfig(), CPU, model)
    torch.manual_seed(123)
    loss, terms = task.training_step(model, x, torch.zeros(2))
    loss = loss.detach()
    np.testing.assert_allclose(terms[:, 0].detach().numpy(), bce, rtol=1e-5)
    np.testing.assert_allclose(terms[:, 1].detach().numpy(), kl, rtol=1e-5)
    np.testing.assert_allclose(loss.item(), np.mean(bce + 0.5 * kl), rtol=1e-5)  # β = 0.5

    # evaluation: the same terms with ε from the task's seeded generator; loss = −ELBO (β = 1)
    eps = torch.randn(2, 2, generator=torch.Generator().manual_seed(task.seed)).double().numpy()
    z = mu + np.exp(logvar / 2) * eps
    p = sigmoid(z @ W["decoder.weight"].T + W["decoder.bias"])
    bce = -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum(1)
    with torch.no_grad():
        out = task.eval_step(model, x, torch.zeros(2))
    metrics, _, _ = task.evaluate(out, torch.zeros(2), full=False)
    assert metrics["elbo"] == pytest.approx(-np.mean(bce + kl), rel=1e-5)
    assert metrics["loss"] == pytest.approx(-metrics["elbo"])
    assert metrics["recon"] == pytest.approx(bce.mean(), rel=1e-5)


def test_kl_and_gaussian_nll_match_torch_distributions_and_scipy():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)
    means, x = torch.randn(5, 2, 2, generator=g), torch.randn(5, 2, 2, generator=g)
    log_sigma = torch.tensor(-0.3)
    nll = reconstruction_nll(means, x, "gaussian", log_sigma)
    ref = -stats.norm.logpdf(x.numpy(), means.numpy(), math.exp(-0.3)).reshape(5, -1).sum(1)
    np.testing.assert_allclose(nll.numpy(), ref, rtol=1e-5)


def test_kl_warmup_ramps_beta_linearly_from_zero():
    task = VAETask(beta=2.0, kl_warmup_steps=4)
    assert [task.kl_weight(s) for s in range(7)] == [0, 0.5, 1, 1.5, 2, 2, 2]
    by_epochs = VAETask(kl_warmup_epochs=1.5)
    train = Trainer(**FAST).config
    by_epochs.configure_optimizers(torch.nn.Linear(2, 2), train, steps_per_epoch=10)
    assert by_epochs.warmup_steps == 15
    assert VAETask(beta=3.0).kl_weight(0) == 3.0  # no warm-up: β from the first step
    # the first step's loss is the reconstruction alone; the counter moves once per batch
    data = toy_images()
    model = create_model("vae", in_features=36, latent_dim=2, hidden=[8])
    task.setup(data, LossConfig(), CPU, model)
    loss, terms = task.training_step(model, data.train.x[:8], data.train.y[:8])
    torch.testing.assert_close(loss, terms[:, 0].mean())
    assert task.step == 1 and task.state()["step"] == 1
    with pytest.raises(ConfigError, match="not both"):
        VAETask(kl_warmup_epochs=1, kl_warmup_steps=10)


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model(
        "vae", in_features=36, in_channels=1, image_size=[6, 6], num_classes=3,
        conditional=True, latent_dim=3, hidden=[16],
    )  # fmt: skip


class Crash(Callback):
    """Dies after step ``at``, once its checkpoint is written: a crash mid-epoch."""

    order = 100  # after ModelCheckpoint

    def __init__(self, at: int):
        self.at = at

    def on_batch_end(self, trainer, loss):
        if trainer.global_step == self.at:
            raise RuntimeError("crash")


def test_resume_mid_warmup_equals_the_uninterrupted_run(tmp_path):
    # 48 samples / 16 = 3 batches per epoch, KL warm-up over 5 steps; a crash after step 4
    data = toy_images()
    cfg = {"epochs": 3, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.01}}
    full_task = VAETask(kl_warmup_steps=5)
    full = Trainer(**FAST, **cfg).fit(_model(), data, full_task)
    ckpt = FAST | {"checkpoint": {"every_n_steps": 1, "keep_last": 1}}
    first = Trainer(**ckpt, **cfg, run_dir=tmp_path, callbacks=[Crash(4)])
    with pytest.raises(RuntimeError, match="crash"):
        first.fit(_model(), data, VAETask(kl_warmup_steps=5))
    resumed_task = VAETask(kl_warmup_steps=5)
    second = Trainer(**ckpt, **cfg, run_dir=tmp_path)
    resumed = second.fit(_model(1), data, resumed_task, resume=tmp_path / "checkpoints" / "last")
    assert resumed_task.step == full_task.step == 9
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name, rtol=0, atol=0)
    assert resumed.history[-1]["train/loss"] == pytest.approx(full.history[-1]["train/loss"])


def test_evaluation_scores_samples_and_leaves_the_global_rng_alone():
    data = dw.load_dataset("digits", split={"val": 0.1, "test": 0.2}, as_image=True, scale="none")
    torch.manual_seed(0)
    model = create_model(
        "vae", in_features=64, in_channels=1, image_size=[8, 8], num_classes=10,
        conditional=True, latent_dim=4, hidden=[64],
    )  # fmt: skip
    trainer = Trainer(**FAST, epochs=2, batch_size=128, optimizer={"name": "adam", "lr": 0.01})
    trainer.fit(model, data, VAETask())
    before = torch.get_rng_state()
    result = trainer.test(model, data)
    again = trainer.test(model, data)
    assert torch.equal(torch.get_rng_state(), before)
    m = result.metrics
    assert m == again.metrics  # the same noise every time
    for key in ("elbo", "recon", "kl", "fid", "fid_noise", "fid_real", "class_accuracy"):
        assert math.isfinite(m[f"test/{key}"]), key
    assert m["test/loss"] == pytest.approx(-m["test/elbo"])
    assert m["test/kl"] > 0 and m["test/recon"] > 0
    assert m["test/fid_real"] < m["test/fid_noise"]
    assert 0 <= m["test/class_accuracy"] <= 1
    assert result.details["task_type"] == "vae" and result.details["conditional"]
    preds = result.predictions
    assert preds["y_pred"].shape == (len(data.test), 1, 8, 8)  # reconstructions
    np.testing.assert_allclose(preds["elbo"], -(preds["recon"] + preds["kl"]), rtol=1e-5)
    assert np.mean(preds["elbo"]) == pytest.approx(m["test/elbo"], rel=1e-5)
    new = trainer.predict(model, data.test.x[:5])  # no labels: the ELBO given class 0
    assert new["y_pred"].shape == (5,) and np.isfinite(new["y_pred"]).all()
    assert new["reconstruction"].shape == (5, 1, 8, 8)


def test_a_digits_cvae_run_writes_its_pictures_and_report(tmp_path):
    config = {
        "name": "cvae",
        "data": {"name": "digits", "as_image": True, "scale": "none"},
        "model": {"name": "vae", "conditional": True, "latent_dim": 4, "hidden": [32]},
        "task": {"name": "vae", "kl_warmup_epochs": 1},
        "train": {"epochs": 1, "batch_size": 128, "progress": False},
    }  # fmt: skip
    run = dw.train(config, out=tmp_path)
    pics = np.load(run.dir / "vae_pictures.npz")
    assert pics["samples"].shape == (100, 1, 8, 8)
    np.testing.assert_array_equal(pics["sample_labels"], np.repeat(np.arange(10), 10))
    assert pics["interpolation"].shape[1:] == (8, 1, 8, 8)
    assert pics["reconstructions"].shape == pics["originals"].shape == (16, 1, 8, 8)
    html = (run.dir / "report.html").read_text()
    for title in (
        "Samples from the prior",
        "Latent interpolation",
        "Reconstructions",
        "ELBO per split",
        "Sample quality",
    ):
        assert title in html, title
    assert "test/class_accuracy" in run.metrics and "test/fid" in run.metrics


def test_config_errors_name_the_fix(tmp_path):
    base = {
        "data": {"name": "digits", "as_image": True, "scale": "none"},
        "model": {"name": "vae", "latent_dim": 4},
        "task": {"name": "vae"},
        "train": {"epochs": 1, "progress": False},
    }
    regression = base | {
        "data": {"name": "diabetes"},
        "model": {"name": "vae", "conditional": True, "latent_dim": 2},
    }
    with pytest.raises(ConfigError, match="conditional VAE needs class labels"):
        dw.train(regression, out=tmp_path)
    with pytest.raises(ConfigError, match="bernoulli needs data in \\[0, 1\\].*scale: none"):
        dw.train(base | {"data": {"name": "digits", "scale": "standard"}}, out=tmp_path)
    with pytest.raises(ConfigError, match="remove train.loss"):
        dw.train(base, overrides=["train.loss.name=mse"], out=tmp_path)
    with pytest.raises(ConfigError, match="latent_dim: 64 must be between 1 and 63"):
        dw.train(base, overrides=["model.latent_dim=64"], out=tmp_path)
    with pytest.raises(ConfigError, match="use model: {name: vae}"):
        dw.train(base | {"model": {"name": "mlp"}}, out=tmp_path)
    assert not list(tmp_path.iterdir())  # no run directory is left behind
