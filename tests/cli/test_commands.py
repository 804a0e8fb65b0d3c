"""The happy paths of the real ``deepworks`` script: train, evaluate, predict, crossval.

Runs use tiny budgets (one epoch, batch 256, small MLPs); outputs go to pytest's tmp folders.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

import deepworks as dw


def table_value(stdout: str, key: str) -> str:
    """The value cell of the row ``key`` of a rich table printed by the CLI."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 3 and cells[1] == key:
            return cells[2]
    raise AssertionError(f"no row {key!r} in:\n{stdout}")


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def raw_split(data: dw.DataBundle, split: str, scaler: dict) -> np.ndarray:
    """Inputs of a split in the units of the data file (undo the run's scaling)."""
    x = getattr(data, split).x.numpy().astype(np.float64)
    return x * np.asarray(scaler["scale"]) + np.asarray(scaler["shift"])


def run_data(run: Path) -> tuple[dw.RunConfig, dw.DataBundle, dict]:
    """(the run's config, its data re-created as `evaluate` does, data.json)."""
    from deepworks.run import build_data, load_run_config

    config = load_run_config(run)
    info = json.loads((run / "data.json").read_text())
    return config, build_data(config), info


# --- train ---------------------------------------------------------------------------------


def test_train_writes_a_run_directory(trained):
    run, result = trained
    for name in ("config.yaml", "history.csv", "metrics.json", "report.html", "data.json"):
        assert (run / name).is_file(), name
    assert "test/accuracy" in result.stdout
    assert str(run) in result.stdout
    assert "Traceback" not in result.output


def test_train_metrics_json_is_flat(trained):
    run, result = trained
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test/accuracy", "test/loss", "val/loss", "val/accuracy", "train/loss"):
        assert key in metrics, key
    assert all(isinstance(v, int | float) for v in metrics.values()), metrics
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    # the printed table shows the same numbers
    assert table_value(result.stdout, "test/accuracy") == f"{metrics['test/accuracy']:.2%}"


def test_train_history_csv_has_one_row_per_epoch(trained_run):
    rows = read_csv((trained_run / "history.csv").read_text())
    assert len(rows) == 1  # epochs: 1
    for column in ("epoch", "train/loss", "val/loss", "lr"):
        assert column in rows[0], column
    assert float(rows[0]["train/loss"]) > 0


def test_train_config_yaml_is_resolved_with_the_overrides(trained_run, tiny_config):
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["model"]["in_features"] == 30  # inferred from breast_cancer
    assert config["model"]["num_classes"] == 2
    # the shared run was trained with --set model.hidden=[16] --set train.optimizer.lr=0.01
    assert yaml.safe_load(tiny_config.read_text())["model"]["hidden"] == [32]
    assert config["model"]["hidden"] == [16]
    assert config["train"]["optimizer"]["lr"] == 0.01
    assert config["train"]["epochs"] == 1 and config["train"]["batch_size"] == 256
    assert dw.load_config(trained_run / "config.yaml").train.epochs == 1


@pytest.mark.parametrize("which", ["best", "last"])
def test_train_writes_checkpoints(trained_run, which):
    ckpt = trained_run / "checkpoints" / which
    weights = ckpt / "model.safetensors"
    assert weights.is_file()
    manifest = json.loads((ckpt / "manifest.json").read_text())["files"]
    assert manifest["model.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    # the weights fit the model that config.yaml describes
    from deepworks.run import load_run_config

    config = load_run_config(trained_run).model
    model = dw.create_model(config.name, **config.kwargs)
    tensors = load_file(weights)
    assert {k: v.shape for k, v in tensors.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }


def test_train_report_is_self_contained_html(trained_run):
    html = (trained_run / "report.html").read_text()
    assert "<html" in html.lower()
    assert 'src="http' not in html and "src='http" not in html


# --- evaluate ------------------------------------------------------------------------------


def test_evaluate_prints_the_test_accuracy_of_metrics_json(cli, trained_run, snapshot):
    before = snapshot(trained_run)
    result = cli("evaluate", trained_run)
    assert result.rc == 0, str(result)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert table_value(result.stdout, "test/accuracy") == f"{metrics['test/accuracy']:.2%}"
    assert snapshot(trained_run) == before  # evaluate only reads


def test_evaluate_json(cli, trained_run):
    result = cli("evaluate", trained_run, "--json")
    assert result.rc == 0, str(result)
    got = json.loads(result.stdout)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert got["test/accuracy"] == pytest.approx(metrics["test/accuracy"], abs=1e-9)
    assert got["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-4)
    assert all(k.startswith(("test/", "graded/")) for k in got)
    assert got["graded/step"] == metrics["graded/step"]  # the checkpoint train graded


def test_evaluate_val_split(cli, trained_run):
    result = cli("evaluate", trained_run, "--split", "val", "--json")
    assert result.rc == 0, str(result)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert json.loads(result.stdout)["val/accuracy"] == pytest.approx(metrics["val/accuracy"])


# --- predict -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris_csv_run(train_tiny, tmp_path_factory) -> Path:
    """A run trained on a CSV file with named columns and a text target."""
    from sklearn.datasets import load_iris

    folder = tmp_path_factory.mktemp("iris_csv")
    bunch = load_iris()
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    lines = [",".join([*columns, "species"])]
    for x, y in zip(bunch.data, bunch.target, strict=True):
        lines.append(",".join([*(f"{v:g}" for v in x), str(bunch.target_names[y])]))
    path = folder / "iris.csv"
    path.write_text("\n".join(lines) + "\n")
    config = {
        "name": "iris_csv",
        "data": {"name": "csv", "path": str(path), "target": "species"},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"optimizer": {"name": "adam", "lr": 0.05}, "precision": "fp32"},
    }
    config_path = folder / "iris_csv.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run, _ = train_tiny(config_path, folder / "runs")
    return run


def test_predict_csv_gives_class_names_and_probabilities(cli, iris_csv_run, tmp_path):
    config, data, info = run_data(iris_csv_run)
    x = np.round(raw_split(data, "test", info["scaler"]), 4)
    assert data.class_names == ["setosa", "versicolor", "virginica"]
    # the columns in another order than in training: they are matched by name
    order = ["petal_width", "sepal_length", "petal_length", "sepal_width"]
    trained_order = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    lines = [",".join(order)]
    for row in x:
        values = dict(zip(trained_order, row, strict=True))
        lines.append(",".join(f"{values[c]:g}" for c in order))
    inputs = tmp_path / "input.csv"
    inputs.write_text("\n".join(lines) + "\n")
    output = tmp_path / "preds.csv"

    result = cli("predict", iris_csv_run, inputs, "-o", output)
    assert result.rc == 0, str(result)
    rows = read_csv(output.read_text())
    assert len(rows) == len(x)
    probs = np.array([[float(r[f"p_{n}"]) for n in data.class_names] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert {r["prediction"] for r in rows} <= set(data.class_names)

    # the same as the model's own test predictions, saved by train
    saved = np.load(iris_csv_run / "predictions.npz")
    assert [r["prediction"] for r in rows] == [data.class_names[k] for k in saved["y_pred"]]
    np.testing.assert_allclose(probs, saved["y_prob"], atol=1e-4)


def test_predict_npz_to_json(cli, trained_run, tmp_path):
    config, data, info = run_data(trained_run)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=raw_split(data, "test", info["scaler"]).astype(np.float32))
    output = tmp_path / "preds.json"

    result = cli("predict", trained_run, inputs, "-o", output)
    assert result.rc == 0, str(result)
    rows = json.loads(output.read_text())
    saved = np.load(trained_run / "predictions.npz")
    assert len(rows) == len(saved["y_pred"])
    names = data.class_names  # breast_cancer: malignant, benign
    assert [r["prediction"] for r in rows] == [names[k] for k in saved["y_pred"]]
    probs = np.array([[r[f"p_{n}"] for n in names] for r in rows])
    np.testing.assert_allclose(probs, saved["y_prob"], atol=1e-4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)


def test_predict_prints_csv_to_stdout(cli, trained_run, tmp_path):
    inputs = tmp_path / "two.npz"
    np.savez(inputs, x=np.zeros((2, 30), np.float32))
    result = cli("predict", trained_run, inputs)
    assert result.rc == 0, str(result)
    rows = read_csv(result.stdout)
    assert len(rows) == 2
    assert "prediction" in rows[0]


@pytest.fixture(scope="module")
def regression_run(train_tiny, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("diabetes")
    config = {
        "name": "diabetes",
        "data": {"name": "diabetes", "split": {"val": 0.15, "test": 0.2}},
        "model": {"name": "mlp", "hidden": [16]},
        "task": {"name": "regression"},
        "train": {"precision": "fp32"},
    }
    path = folder / "diabetes.yaml"
    path.write_text(yaml.safe_dump(config))
    run, _ = train_tiny(path, folder / "runs")
    return run


def test_predict_regression_gives_floats(cli, regression_run, tmp_path):
    from sklearn.datasets import load_diabetes

    config, data, info = run_data(regression_run)
    x = raw_split(data, "test", info["scaler"])
    columns = [str(n) for n in load_diabetes().feature_names]  # the training column order
    lines = [",".join(columns)] + [",".join(repr(float(v)) for v in row) for row in x]
    inputs = tmp_path / "input.csv"
    inputs.write_text("\n".join(lines) + "\n")

    result = cli("predict", regression_run, inputs)
    assert result.rc == 0, str(result)
    rows = read_csv(result.stdout)
    assert len(rows) == len(x)
    assert not any(k.startswith("p_") for k in rows[0])
    values = np.array([float(r["prediction"]) for r in rows])  # parses as a float
    saved = np.load(regression_run / "predictions.npz")
    np.testing.assert_allclose(values, saved["y_pred"], rtol=1e-3, atol=1e-3)
    metrics = json.loads((regression_run / "metrics.json").read_text())
    assert np.isfinite(metrics["test/r2"]) and "test/accuracy" not in metrics


# --- crossval ------------------------------------------------------------------------------


def test_crossval_writes_mean_and_std(cli, tiny_config, tmp_path):
    output = tmp_path / "cv.json"
    result = cli("crossval", tiny_config, "--folds", "3", "-o", output)
    assert result.rc == 0, str(result)
    cv = json.loads(output.read_text())
    assert len(cv["folds"]) == 3
    accuracies = [fold["test/accuracy"] for fold in cv["folds"]]
    assert cv["mean"]["test/accuracy"] == pytest.approx(np.mean(accuracies))
    assert cv["std"]["test/accuracy"] == pytest.approx(np.std(accuracies))
    assert 0 <= cv["mean"]["test/accuracy"] <= 1
    assert "test/accuracy" in result.stdout and "±" in result.stdout


# --- run names ----------------------------------------------------------------------------


def test_same_name_gets_a_new_directory(train_tiny, tiny_config, run_copy, snapshot):
    out = run_copy.parent  # holds a finished run named "tiny"
    before = snapshot(run_copy)
    second, result = train_tiny(tiny_config, out, "--set", "model.activation=tanh")
    assert second.name == "tiny-2"
    assert str(second) in result.stdout
    assert yaml.safe_load((second / "config.yaml").read_text())["model"]["activation"] == "tanh"
    assert snapshot(run_copy) == before  # the first run is untouched
    assert sorted(p.name for p in out.iterdir()) == ["tiny", "tiny-2"]
