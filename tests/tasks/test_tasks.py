"""Tasks: classification (bce / cross-entropy / softmax models) and regression (target scaling),
checked against torch losses and scikit-learn metrics on the returned predictions."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_class_weight

from deepworks.config import LossConfig
from deepworks.data.pipeline import load_dataset
from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.tasks.classification import Classification
from deepworks.tasks.regression import Regression
from deepworks.train.trainer import Trainer

FAST = {"progress": False, "checkpoint": None, "device": "cpu"}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cancer():
    return load_dataset("breast_cancer", split={"val": 0.15, "test": 0.2}, seed=0)


@pytest.fixture(scope="module")
def iris():
    return load_dataset("iris", split={"val": 0.2, "test": 0.2}, seed=0)


@pytest.fixture(scope="module")
def diabetes():
    return load_dataset("diabetes", split={"val": 0.15, "test": 0.2}, seed=3)


def mlp(in_features, num_classes, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("hidden", [16])
    return create_model("mlp", in_features=in_features, num_classes=num_classes, **kw)


def setup(task, data, **loss):
    task.setup(data, LossConfig(**loss), CPU)
    return task


# --- classification -------------------------------------------------------------------------


@pytest.mark.parametrize("loss, outputs", [("bce", 1), ("cross_entropy", 2)])
def test_binary_with_bce_and_with_cross_entropy_both_train(cancer, loss, outputs):
    task = Classification()
    assert task.num_outputs(cancer, LossConfig(name=loss)) == outputs
    model = mlp(30, outputs)
    adam = {"name": "adam", "lr": 0.01}
    trainer = Trainer(epochs=5, batch_size=32, loss={"name": loss}, optimizer=adam, **FAST)
    result = trainer.fit(model, cancer, task=task)
    assert task.binary_logit == (loss == "bce")
    test = trainer.test(model, cancer)
    # near logistic regression (sklearn) on the same split; the majority class is 63 %
    logreg = LogisticRegression(max_iter=1000).fit(cancer.train.x.numpy(), cancer.train.y)
    reference = logreg.score(cancer.test.x.numpy(), cancer.test.y)
    assert test.metrics["test/accuracy"] > reference - 0.05
    assert test.metrics["test/roc_auc"] > 0.97
    losses = [h["train/loss"] for h in result.history]
    assert losses[-1] < losses[0]
    # probabilities: (N, 2), rows sum to 1, from sigmoid / softmax of the model's outputs
    prob = test.predictions["y_prob"]
    assert prob.shape == (len(cancer.test), 2)
    np.testing.assert_allclose(prob.sum(1), 1, atol=1e-6)
    model.eval()
    with torch.no_grad():
        out = model(cancer.test.x)
    expected = torch.sigmoid(out[:, 0]).numpy() if loss == "bce" else out.softmax(-1)[:, 1].numpy()
    np.testing.assert_allclose(prob[:, 1], expected, atol=1e-6)
    # the reported loss is torch's loss on those outputs
    y = cancer.test.y
    ref = (
        F.binary_cross_entropy_with_logits(out[:, 0], y.float())
        if loss == "bce"
        else F.cross_entropy(out, y)
    )
    assert test.metrics["test/loss"] == pytest.approx(float(ref), rel=1e-5)
    # training accuracy of the bce head thresholds the logit at 0 (p = 0.5)
    assert 0.5 < result.history[-1]["train/accuracy"] <= 1.0


def test_bce_needs_two_classes(iris):
    with pytest.raises(ConfigError, match="'bce' is for two classes"):
        Classification().num_outputs(iris, LossConfig(name="bce"))


def test_classification_refuses_one_label_per_position():
    from deepworks.data.bundle import DataBundle, Split

    x, y = torch.ones(4, 5, dtype=torch.int64), torch.zeros(4, 5, dtype=torch.int64)
    data = DataBundle("tags", Split(x, y), None, None, "classification", (5,), num_classes=3)
    with pytest.raises(ConfigError, match="token_classification"):
        Classification().num_outputs(data, LossConfig())


def test_multiclass_probabilities_sum_to_one_and_metrics_match_sklearn(iris):
    task = Classification()
    model = mlp(4, 3)
    trainer = Trainer(epochs=5, batch_size=16, optimizer={"name": "adam", "lr": 0.03}, **FAST)
    trainer.fit(model, iris, task=task)
    result = trainer.test(model, iris)
    p = result.predictions
    np.testing.assert_allclose(p["y_prob"].sum(1), 1, atol=1e-6)
    assert np.array_equal(p["y_true"], iris.test.y.numpy())
    assert np.array_equal(p["y_pred"], p["y_prob"].argmax(1))
    m = result.metrics
    assert m["test/accuracy"] == skm.accuracy_score(p["y_true"], p["y_pred"])
    assert m["test/f1_macro"] == pytest.approx(
        skm.f1_score(p["y_true"], p["y_pred"], average="macro")
    )
    assert m["test/log_loss"] == pytest.approx(skm.log_loss(p["y_true"], p["y_prob"]), rel=1e-5)
    assert m["test/loss"] == pytest.approx(m["test/log_loss"], rel=1e-4)  # CE = log loss
    assert "test/top3_accuracy" not in m  # k must be below the number of classes
    assert (
        result.details["confusion_matrix"]
        == skm.confusion_matrix(p["y_true"], p["y_pred"]).tolist()
    )
    assert (
        task.predict(trainer.outputs(model, iris.test))["y_pred"].tolist() == p["y_pred"].tolist()
    )


def test_softmax_output_model_trains_through_the_log_of_its_probabilities(iris):
    model = mlp(4, 3, output_activation="softmax")
    assert model.output_kind == "probs"
    task = setup(Classification(), iris)
    x, y = iris.train.x[:16], iris.train.y[:16]
    loss, outputs = task.training_step(model, x, y)
    reference = F.nll_loss(model(x).log(), y)  # cross-entropy of the probabilities
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert torch.allclose(outputs.exp(), model(x), atol=1e-6)
    trainer = Trainer(epochs=20, batch_size=16, optimizer={"name": "adam", "lr": 0.03}, **FAST)
    result = trainer.fit(model, iris, task=task)
    assert result.history[-1]["train/loss"] < 0.5 * result.history[0]["train/loss"]
    assert result.history[-1]["train/accuracy"] > 0.9


def test_softmax_output_model_evaluates_with_its_own_probabilities(iris):
    model = mlp(4, 3, output_activation="softmax")
    trainer = Trainer(epochs=20, batch_size=16, optimizer={"name": "adam", "lr": 0.03}, **FAST)
    trainer.fit(model, iris)
    result = trainer.test(model, iris)
    model.eval()
    with torch.no_grad():
        prob = model(iris.test.x)
    np.testing.assert_allclose(result.predictions["y_prob"], prob.numpy(), atol=1e-5)
    nll = F.nll_loss(prob.clamp_min(1e-12).log(), iris.test.y)
    assert result.metrics["test/loss"] == pytest.approx(float(nll), rel=1e-4)


def test_balanced_class_weights_are_sklearns(cancer):
    task = setup(Classification(), cancer, class_weights="balanced")
    y = cancer.train.y.numpy()
    expected = compute_class_weight("balanced", classes=np.unique(y), y=y)
    np.testing.assert_allclose(task.loss_fn.weight.numpy(), expected, rtol=1e-6)
    # with bce the same weights become pos_weight = w1 / w0
    bce = setup(Classification(), cancer, name="bce", class_weights="balanced")
    assert float(bce.loss_fn.pos_weight) == pytest.approx(expected[1] / expected[0], rel=1e-6)


def test_weighted_loss_equals_torch_weighted_cross_entropy(iris):
    task = setup(Classification(), iris, class_weights=[1.0, 2.0, 4.0], label_smoothing=0.1)
    logits, y = torch.randn(10, 3), torch.tensor([0, 1, 2, 2, 1, 0, 2, 2, 1, 0])
    expected = F.cross_entropy(logits, y, weight=torch.tensor([1.0, 2.0, 4.0]), label_smoothing=0.1)
    assert torch.allclose(task.loss_fn(logits, y), expected)


def test_focal_loss_with_gamma_zero_is_cross_entropy(iris):
    task = setup(Classification(), iris, name="focal", gamma=0.0)
    logits, y = torch.randn(12, 3), torch.randint(0, 3, (12,))
    assert torch.allclose(task.loss_fn(logits, y), F.cross_entropy(logits, y), atol=1e-6)
    focused = setup(Classification(), iris, name="focal", gamma=2.0)
    assert float(focused.loss_fn(logits, y)) < float(F.cross_entropy(logits, y))


def test_hinge_loss_is_torch_multi_margin(iris):
    task = setup(Classification(), iris, name="hinge")
    logits, y = torch.randn(12, 3), torch.randint(0, 3, (12,))
    assert torch.allclose(task.loss_fn(logits, y), F.multi_margin_loss(logits, y))


def test_classification_state_round_trip(cancer):
    task = setup(Classification(), cancer, name="bce")
    other = Classification()
    other.load_state(task.state())
    assert other.binary_logit is True
    out = torch.tensor([[-2.0], [0.0], [3.0]])
    np.testing.assert_allclose(other.predict(out)["y_prob"], task.predict(out)["y_prob"])
    assert other.predict(out)["y_pred"].tolist() == [0, 0, 1]  # p = 0.5 is not positive


# --- regression -----------------------------------------------------------------------------


def test_regression_standardizes_the_target_and_predicts_in_target_units(diabetes):
    task = Regression()
    model = mlp(10, 1, hidden=[32])
    trainer = Trainer(epochs=30, batch_size=32, optimizer={"name": "adam", "lr": 0.01}, **FAST)
    trainer.fit(model, diabetes, task=task)
    y_train = diabetes.train.y.double()
    assert task.y_mean == pytest.approx(float(y_train.mean()))
    assert task.y_std == pytest.approx(float(y_train.std()))

    result = trainer.test(model, diabetes)
    y_true, y_pred = result.predictions["y_true"], result.predictions["y_pred"]
    model.eval()
    with torch.no_grad():
        out = model(diabetes.test.x).squeeze(-1).double()
    np.testing.assert_allclose(y_pred, (out * task.y_std + task.y_mean).numpy(), rtol=1e-5)
    # predictions are in the target's units (diabetes progression, about 25..346)
    assert 25 < y_pred.mean() < 346 and y_pred.std() > 20
    m = result.metrics
    assert m["test/mse"] == pytest.approx(skm.mean_squared_error(y_true, y_pred), rel=1e-6)
    assert m["test/rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    assert m["test/mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred), rel=1e-6)
    assert m["test/r2"] == pytest.approx(skm.r2_score(y_true, y_pred), rel=1e-6)
    assert m["test/r2"] > 0.3  # better than predicting the mean
    # the loss is the MSE of the standardized target
    assert m["test/loss"] == pytest.approx(m["test/mse"] / task.y_std**2, rel=1e-4)
    np.testing.assert_allclose(trainer.predict(model, diabetes.test.x)["y_pred"], y_pred)


def test_regression_without_standardization_trains_on_raw_targets(diabetes):
    task = setup(Regression(standardize_target=False), diabetes)
    assert (task.y_mean, task.y_std) == (0.0, 1.0)
    model = mlp(10, 1)
    x, y = diabetes.train.x[:8], diabetes.train.y[:8]
    loss, _ = task.training_step(model, x, y)
    assert loss.item() == pytest.approx(F.mse_loss(model(x).squeeze(-1), y).item(), rel=1e-6)
    scaled = setup(Regression(), diabetes)
    loss, _ = scaled.training_step(model, x, y)
    target = (y - scaled.y_mean) / scaled.y_std
    expected = F.mse_loss(model(x).squeeze(-1), target).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_regression_state_round_trip(diabetes):
    task = setup(Regression(), diabetes)
    other = Regression()
    other.load_state(task.state())
    out = torch.tensor([[-1.0], [0.0], [2.0]])
    np.testing.assert_allclose(other.predict(out)["y_pred"], task.predict(out)["y_pred"])
    assert other.predict(out)["y_pred"][1] == pytest.approx(task.y_mean)


@pytest.mark.parametrize("loss", ["mae", "huber"])
def test_regression_losses_are_torchs(diabetes, loss):
    task = setup(Regression(standardize_target=False), diabetes, name=loss)
    out, y = torch.randn(9, 1), torch.randn(9)
    ref = F.l1_loss if loss == "mae" else F.huber_loss
    assert torch.allclose(task.loss_fn(out, y), ref(out.squeeze(-1), y))


# --- mismatches are one-line config errors --------------------------------------------------


def test_task_loss_and_data_mismatches(iris, diabetes):
    cases = [
        (
            lambda: setup(Classification(), iris, name="mse"),
            "'mse' does not fit the classification task",
        ),
        (
            lambda: setup(Regression(), diabetes, name="cross_entropy"),
            "'cross_entropy' does not fit the regression task",
        ),
        (
            lambda: setup(Classification(), iris, name="cross_entropi"),
            "did you mean 'cross_entropy'",
        ),
        (
            lambda: Classification().num_outputs(diabetes, LossConfig()),
            "needs one class label per sample",
        ),
        (lambda: Regression().num_outputs(iris, LossConfig()), "needs a real-valued target"),
        (
            lambda: setup(Regression(), diabetes, class_weights="balanced"),
            "regression data has no classes",
        ),
        (
            lambda: setup(Classification(), iris, class_weights=[1.0, 2.0]),
            "2 weights given for 3 classes",
        ),
    ]
    for make, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            make()
        assert "\n" not in str(err.value)


def test_trainer_reports_a_loss_mismatch_before_training(iris):
    model = mlp(4, 3)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError, match="train.loss.name"):
        Trainer(epochs=1, loss={"name": "mse"}, **FAST).fit(model, iris, task="classification")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
