"""Autoencoder and anomaly-detection tasks: sparsity penalties against hand computations, noise,
denoising targets, the normal-only training check, ROC/PR metrics against scikit-learn and a
pairwise count, thresholds chosen on the validation split, and the report sections."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from deepworks.config import LossConfig
from deepworks.data.pipeline import load_dataset
from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.tasks.autoencoder import (
    AnomalyDetection,
    Autoencoder,
    corrupt,
    sparsity_penalty,
)
from deepworks.train.trainer import Trainer

CPU = torch.device("cpu")
FAST = {"progress": False, "checkpoint": None, "device": "cpu"}


@pytest.fixture(scope="module")
def cancer_normal():
    """breast_cancer with only benign (label 1) rows in the training split."""
    return load_dataset("breast_cancer", split={"val": 0.2, "test": 0.2}, seed=0, train_classes=[1])


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0, scale="none")


def ae(in_features, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("hidden", [16])
    return create_model("autoencoder", in_features=in_features, **kw)


# --- penalties and noise ----------------------------------------------------------------------


def test_l1_penalty_is_weight_times_mean_code_l1_norm():
    z = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    # sample sums |z|: 3.5 and 4.0 -> mean 3.75
    got = sparsity_penalty(z, {"kind": "l1", "weight": 0.1})
    assert float(got) == pytest.approx(0.1 * 3.75)


def test_kl_penalty_matches_a_hand_computation():
    z = torch.tensor([[0.0, 2.0], [math.log(3), -2.0]])  # sigmoid: [0.5, .881], [0.75, .119]
    rho, w = 0.1, 0.5
    total = 0.0
    for j in range(2):
        q = sum(1 / (1 + math.exp(-float(z[i, j]))) for i in range(2)) / 2
        total += rho * math.log(rho / q) + (1 - rho) * math.log((1 - rho) / (1 - q))
    got = sparsity_penalty(z, {"kind": "kl", "target": rho, "weight": w})
    assert float(got) == pytest.approx(w * total, rel=1e-5)
    # a code that is already sigmoid is used as it is
    s = torch.sigmoid(z)
    torch.testing.assert_close(
        sparsity_penalty(s, {"kind": "kl", "target": rho, "weight": w}, code_is_sigmoid=True), got
    )
    # zero when every unit's mean activation is the target
    flat = torch.full((4, 3), math.log(rho / (1 - rho)))
    assert float(sparsity_penalty(flat, {"kind": "kl", "target": rho, "weight": 1.0})) < 1e-6


def test_noise_kinds():
    g = torch.Generator().manual_seed(0)
    x = torch.full((200, 50), 0.5)
    masked = corrupt(x, "masking", 0.3, generator=g)
    assert set(masked.unique().tolist()) == {0.0, 0.5}
    assert (masked == 0).float().mean() == pytest.approx(0.3, abs=0.02)
    sp = corrupt(x, "salt_pepper", 0.2, low=-1.0, high=2.0, generator=g)
    assert set(sp.unique().tolist()) == {-1.0, 0.5, 2.0}
    assert (sp == -1).float().mean() == pytest.approx(0.1, abs=0.015)
    assert (sp == 2).float().mean() == pytest.approx(0.1, abs=0.015)
    gauss = corrupt(x, "gaussian", 0.3, generator=g)
    assert float((gauss - x).std()) == pytest.approx(0.3, rel=0.05)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise": {"kind": "blur"}}, "task.noise.kind"),
        ({"noise": {"kind": "masking", "amount": 1.5}}, "task.noise.amount"),
        ({"noise": {"kind": "gaussian", "std": 0.1}}, "unknown key"),
        ({"sparsity": {"kind": "l2"}}, "task.sparsity.kind"),
        ({"sparsity": {"kind": "kl", "target": 2}}, "task.sparsity.target"),
        ({"sparsity": {"kind": "l1", "target": 0.1}}, "unknown key"),
    ],
)
def test_bad_noise_and_sparsity_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Autoencoder(**kwargs)


# --- the autoencoder task ---------------------------------------------------------------------


def test_denoising_feeds_noisy_inputs_and_scores_against_clean_targets(digits):
    task = Autoencoder(noise={"kind": "masking", "amount": 0.5})
    model = ae(64, output="sigmoid")
    task.setup(digits, LossConfig(name="mse"), CPU, model)
    x, y = digits.train.x[:32], digits.train.y[:32]
    torch.manual_seed(7)
    loss, recon = task.training_step(model, x, y)
    torch.manual_seed(7)
    noisy = corrupt(x, "masking", 0.5)
    assert not torch.equal(noisy, x)
    want = model(noisy)
    torch.testing.assert_close(recon, want)
    torch.testing.assert_close(loss, F.mse_loss(want, x))
    assert abs(loss.item() - F.mse_loss(want, noisy).item()) > 1e-4


def test_bce_loss_uses_the_decoder_logits(digits):
    task = Autoencoder()
    model = ae(64, output="sigmoid")
    task.setup(digits, LossConfig(name="bce"), CPU, model)
    x = digits.train.x[:16]
    loss, recon = task.training_step(model, x, digits.train.y[:16])
    torch.testing.assert_close(loss, F.binary_cross_entropy(recon, x), rtol=1e-5, atol=1e-6)


def test_bce_needs_unit_range_data_and_a_sigmoid_output(cancer_normal, digits):
    with pytest.raises(ConfigError, match=r"bce needs inputs in \[0, 1\].*data.scale: minmax"):
        Autoencoder().setup(cancer_normal, LossConfig(name="bce"), CPU, ae(30, output="sigmoid"))
    with pytest.raises(ConfigError, match="model.output: sigmoid"):
        Autoencoder().setup(digits, LossConfig(name="bce"), CPU, ae(64))
    with pytest.raises(ConfigError, match="model: {name: autoencoder}"):
        Autoencoder().setup(
            digits, LossConfig(), CPU, create_model("mlp", in_features=64, num_classes=10)
        )


def test_training_lowers_the_error_and_denoising_beats_the_noise(digits):
    task = Autoencoder(noise={"kind": "salt_pepper", "amount": 0.2})
    model = ae(64, hidden=[64], latent_dim=16, output="sigmoid")
    trainer = Trainer(epochs=8, batch_size=64, optimizer={"name": "adam", "lr": 0.005}, **FAST)
    fit = trainer.fit(model, digits, task=task)
    assert fit.history[-1]["val/loss"] < fit.history[0]["val/loss"]
    test = trainer.test(model, digits)
    m = test.metrics
    assert m["test/denoised_mse"] < 0.5 * m["test/noisy_mse"]
    # the reported MSE is that of the saved reconstructions; noise is fixed across evaluations
    preds = test.predictions
    x = digits.test.x
    assert preds["reconstruction"].shape == tuple(x.shape)
    assert preds["code"].shape == (len(x), 16)
    mse = ((preds["reconstruction"] - x.numpy()) ** 2).mean()
    assert m["test/mse"] == pytest.approx(float(mse), rel=1e-4)
    np.testing.assert_allclose(
        preds["y_pred"], ((preds["reconstruction"] - x.numpy()) ** 2).mean(1), rtol=1e-4
    )
    again = trainer.test(model, digits).metrics
    assert again["test/denoised_mse"] == m["test/denoised_mse"]
    assert test.details["task_type"] == "autoencoder"


def test_sparsity_penalty_shrinks_the_code(digits):
    def mean_abs_code(sparsity):
        model = ae(64, latent_dim=8, output="sigmoid")
        trainer = Trainer(epochs=4, batch_size=64, optimizer={"name": "adam", "lr": 0.005}, **FAST)
        trainer.fit(model, digits, task=Autoencoder(sparsity=sparsity))
        return float(np.abs(trainer.test(model, digits).predictions["code"]).mean())

    assert mean_abs_code({"kind": "l1", "weight": 0.05}) < 0.5 * mean_abs_code(None)


# --- anomaly detection ------------------------------------------------------------------------


def test_anomalies_in_the_training_split_are_a_config_error():
    data = load_dataset("breast_cancer", split={"val": 0.2, "test": 0.2}, seed=0)
    count = int((data.train.y == 0).sum())
    with pytest.raises(ConfigError) as err:
        AnomalyDetection(normal=[1]).setup(data, LossConfig(), CPU, ae(30))
    message = str(err.value)
    assert f"holds {count} rows of class 0 ('malignant')" in message
    assert "set data.train_classes: [1]" in message


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "task.normal"),
        ({"normal": [1], "threshold": {"quantile": 1.5}}, "task.threshold"),
        ({"normal": [1], "threshold": "best_f2"}, "task.threshold"),
    ],
)
def test_bad_anomaly_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AnomalyDetection(**kwargs)


def test_unknown_normal_label_and_missing_validation_split_are_config_errors(cancer_normal):
    with pytest.raises(ConfigError, match="task.normal: 5 is not a label"):
        AnomalyDetection(normal=[5]).setup(cancer_normal, LossConfig(), CPU, ae(30))
    no_val = load_dataset("breast_cancer", split={"val": 0.0, "test": 0.2}, train_classes=[1])
    with pytest.raises(ConfigError, match="set data.split.val"):
        AnomalyDetection(normal=[1]).setup(no_val, LossConfig(), CPU, ae(30))


@pytest.fixture(scope="module")
def detector(cancer_normal):
    """(task, model, trainer, val result, test result) of a short anomaly-detection run."""
    task = AnomalyDetection(normal=[1], threshold={"quantile": 0.9})
    model = ae(30, latent_dim=8)
    trainer = Trainer(epochs=15, batch_size=32, optimizer={"name": "adam", "lr": 0.003}, **FAST)
    trainer.fit(model, cancer_normal, task=task)
    val = trainer.validate(model, cancer_normal)
    test = trainer.test(model, cancer_normal)
    return task, model, trainer, val, test


def test_roc_and_pr_auc_match_sklearn_and_a_pairwise_count(detector, cancer_normal):
    _, _, _, _, test = detector
    p = test.predictions
    anomaly = (cancer_normal.test.y.numpy() == 0).astype(int)
    np.testing.assert_array_equal(p["is_anomaly"], anomaly)
    score = p["score"]
    assert test.metrics["test/roc_auc"] == pytest.approx(skm.roc_auc_score(anomaly, score))
    assert test.metrics["test/pr_auc"] == pytest.approx(skm.average_precision_score(anomaly, score))
    # ROC-AUC = P(score of a random anomaly > score of a random normal sample), ties count half
    pos, neg = score[anomaly == 1], score[anomaly == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert test.metrics["test/roc_auc"] == pytest.approx(wins / (len(pos) * len(neg)))
    assert test.metrics["test/roc_auc"] > 0.8
    # the score is each sample's reconstruction MSE
    x = cancer_normal.test.x.numpy()
    np.testing.assert_allclose(score, ((p["reconstruction"] - x) ** 2).mean(1), rtol=1e-4)


def test_threshold_is_the_normal_validation_quantile_and_is_reused(detector, cancer_normal):
    task, model, trainer, val, test = detector
    score = val.predictions["score"]
    normal_val = score[cancer_normal.val.y.numpy() == 1]
    assert task.threshold == pytest.approx(float(np.quantile(normal_val, 0.9)))
    assert task.state()["threshold"] == task.threshold
    # evaluating the test split does not move it; its flags and F1 use it
    assert test.metrics["test/threshold"] == val.metrics["val/threshold"] == task.threshold
    flags = (test.predictions["score"] >= task.threshold).astype(int)
    np.testing.assert_array_equal(test.predictions["y_pred"], flags)
    want_f1 = skm.f1_score(test.predictions["is_anomaly"], flags)
    assert test.metrics["test/f1"] == pytest.approx(want_f1)
    # a task restored from the state predicts with the same threshold
    restored = AnomalyDetection(normal=[1])
    restored.load_state(task.state())
    trainer.task = restored
    pred = trainer.predict(model, cancer_normal.test.x)
    np.testing.assert_array_equal(pred["y_pred"], flags)
    np.testing.assert_allclose(pred["score"], test.predictions["score"], rtol=1e-6)
    trainer.task = task


def test_best_f1_threshold_maximises_validation_f1(detector, cancer_normal):
    task, model, _, val, _ = detector
    score = val.predictions["score"]
    anomaly = val.predictions["is_anomaly"]
    chosen = task.fit_threshold.__func__(
        AnomalyDetection(normal=[1], threshold="best_f1"), score, anomaly
    )
    best = max(skm.f1_score(anomaly, (score >= t).astype(int)) for t in np.unique(score))
    assert skm.f1_score(anomaly, (score >= chosen).astype(int)) == pytest.approx(best)


# --- whole runs and their reports -------------------------------------------------------------


def run_config(task: dict, data: dict, model: dict, epochs: int = 2) -> dict:
    return {
        "name": task["name"],
        "data": data | {"split": {"val": 0.2, "test": 0.2}},
        "model": {"name": "autoencoder"} | model,
        "task": task,
        "train": {"epochs": epochs, "batch_size": 64, "progress": False},
    }


def test_autoencoder_run_report_shows_reconstructions_and_latent_space(tmp_path):
    from deepworks.recipes import train

    cfg = run_config(
        {"name": "autoencoder", "noise": {"kind": "gaussian", "amount": 0.2}},
        {"name": "digits", "as_image": True, "scale": "none"},
        {"hidden": [16], "output": "sigmoid"},
    )
    run = train(cfg, out=tmp_path)
    assert {"test/mse", "test/noisy_mse", "test/denoised_mse"} <= set(run.metrics)
    html = (run.dir / "report.html").read_text()
    for title in ("Reconstructions", "Latent space", "corrupted input", "clean original"):
        assert title in html
    with np.load(run.dir / "reconstructions.npz") as f:
        assert {"x", "reconstruction", "noisy", "denoised"} <= set(f.files)


def test_anomaly_run_report_shows_scores_curves_and_threshold(tmp_path):
    from deepworks.recipes import train

    cfg = run_config(
        {"name": "anomaly_detection", "normal": [1], "threshold": "best_f1"},
        {"name": "breast_cancer", "train_classes": [1]},
        {"latent_dim": 4},
    )
    run = train(cfg, out=tmp_path)
    assert {"test/roc_auc", "test/pr_auc", "test/f1", "test/threshold"} <= set(run.metrics)
    html = (run.dir / "report.html").read_text()
    for title in ("Anomaly scores", "ROC and precision-recall", "Reconstructions", "Latent space"):
        assert title in html


def test_denoising_anomaly_run_resumes_exactly(tmp_path, cancer_normal):
    """Stopped mid-epoch and resumed, a denoising run ends with the same weights (the noise
    comes from the generators a checkpoint restores) and the same threshold."""

    def task():
        return AnomalyDetection(normal=[1], noise={"kind": "gaussian", "amount": 0.3})

    settings = {"epochs": 2, "batch_size": 32, "progress": False, "device": "cpu"}
    full_trainer = Trainer(checkpoint=None, **settings)
    full = full_trainer.fit(ae(30, latent_dim=4), cancer_normal, task())
    ckpt = {"every_n_steps": 1, "every_n_epochs": None, "save_best": False, "keep_last": 1}
    Trainer(max_steps=10, run_dir=tmp_path, checkpoint=ckpt, **settings).fit(
        ae(30, latent_dim=4), cancer_normal, task()
    )
    second = Trainer(run_dir=tmp_path, checkpoint=ckpt, **settings)
    resumed_task = task()
    resumed = second.fit(
        ae(30, seed=1, latent_dim=4),
        cancer_normal,
        resumed_task,
        resume=tmp_path / "checkpoints" / "last",
    )
    expected = full.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
    assert resumed_task.threshold == full_trainer.task.threshold
    assert resumed.history[-1]["val/roc_auc"] == full.history[-1]["val/roc_auc"]
