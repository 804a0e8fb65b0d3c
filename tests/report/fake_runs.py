"""Fake run directories, written the way the Trainer writes them, for the report tests."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

CLASS_NAMES = [f"digit_{i}" for i in range(10)]
N_EPOCHS = 12


def _write_history(run: Path, metrics: dict[str, Callable], lr_decay: float = 0.8) -> None:
    rows = []
    for epoch in range(1, N_EPOCHS + 1):
        row = {
            "epoch": epoch,
            "step": epoch * 45,
            "time": 1.7 * epoch,
            "lr": 0.01 * lr_decay**epoch,
        }
        row["train/loss"] = 2.3 * np.exp(-0.35 * epoch) + 0.05
        for name, fn in metrics.items():
            row[name] = fn(epoch)
        rows.append(row)
    rows[3]["val/loss"] = ""  # an empty cell must not break the curves
    with open(run / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write_config(run: Path, name: str, task: str, model: str, data: str) -> None:
    config = {
        "name": name,
        "seed": 0,
        "data": {"name": data, "val_fraction": 0.15, "test_fraction": 0.15, "batch_size": 64},
        "model": {"name": model, "hidden": [128, 64], "dropout": 0.1},
        "task": {"name": task},
        "train": {"epochs": N_EPOCHS, "optimizer": {"name": "adamw", "lr": 0.01}},
        "out": f"runs/{name}",
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def make_classification_run(run: Path, images: bool = True) -> Path:
    """A digits classifier run: 10 classes, ~12% test errors; with 8x8 images when ``images``."""
    from sklearn.datasets import load_digits

    run.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.choice(len(digits.target), 270, replace=False)
    y_true = digits.target[idx].astype(np.int64)
    logits = rng.normal(0, 1.0, (len(idx), 10)) + 3.2 * np.eye(10)[y_true]
    y_prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y_pred = y_prob.argmax(1)
    x = digits.images[idx][:, None].astype(np.float32)
    x = (x - x.mean()) / x.std()  # normalized, as the pipeline hands it to the model
    arrays = {"y_true": y_true, "y_pred": y_pred, "y_prob": y_prob.astype(np.float32)}
    if images:
        arrays["x"] = x
    np.savez_compressed(run / "predictions.npz", **arrays)

    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    p, r, f1, s = precision_recall_fscore_support(y_true, y_pred, labels=range(10))
    acc = float((y_true == y_pred).mean())
    evaluation = {
        "split": "test",
        "task_type": "classification",
        "class_names": CLASS_NAMES,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=range(10)).tolist(),
        "per_class": {
            "precision": p.tolist(),
            "recall": r.tolist(),
            "f1": f1.tolist(),
            "support": s.tolist(),
        },
    }
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    metrics = {
        "test/accuracy": acc,
        "test/f1_macro": float(f1.mean()),
        "test/loss": 0.3137,
        "val/loss": 0.2891,
        "val/accuracy": 0.9123,
        "best/val/loss": 0.2713,
        "train/samples_per_s": 48213.7,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    _write_history(
        run,
        {
            "val/loss": lambda e: 2.2 * np.exp(-0.3 * e) + 0.25 + 0.004 * max(e - 8, 0) ** 2,
            "val/accuracy": lambda e: 0.93 - 0.8 * np.exp(-0.45 * e),
            "val/f1_macro": lambda e: 0.92 - 0.85 * np.exp(-0.42 * e),
        },
    )
    _write_config(
        run,
        "digits_cnn" if images else "digits_mlp",
        "classification",
        "cnn" if images else "mlp",
        "digits",
    )
    data = {
        "name": "digits",
        "task_type": "classification",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "sizes": {"train": 1257, "val": 270, "test": 270},
    }
    (run / "data.json").write_text(json.dumps(data))
    (run / "model.txt").write_text(
        "CNN(\n  (features): Sequential(\n    (0): Conv2d(1, 32, kernel_size=(3, 3))\n"
        "    (1): ReLU()\n    (2): AdaptiveAvgPool2d(output_size=1)\n  )\n"
        "  (head): Linear(in_features=32, out_features=10, bias=True)\n)\n"
        "Trainable parameters: 650\n"
    )
    return run


def make_regression_run(run: Path) -> Path:
    """A regression run with 200 noisy test predictions and a constant learning rate."""
    run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    y_true = rng.normal(2.0, 1.5, 200)
    y_pred = y_true + rng.normal(0, 0.4, 200)
    np.savez(
        run / "predictions.npz", y_true=y_true.astype(np.float32), y_pred=y_pred.astype(np.float32)
    )
    metrics = {"test/mse": 0.1587, "test/r2": 0.9312, "test/mae": 0.3174, "test/loss": 0.1587}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "evaluation.json").write_text(json.dumps({"split": "test", "task_type": "regression"}))
    _write_history(
        run,
        {
            "val/loss": lambda e: 1.5 * np.exp(-0.3 * e) + 0.16,
            "val/mse": lambda e: 1.5 * np.exp(-0.3 * e) + 0.16,
            "val/r2": lambda e: 0.93 - 0.7 * np.exp(-0.4 * e),
        },
        lr_decay=1.0,
    )
    _write_config(run, "housing_mlp", "regression", "mlp", "california_housing")
    data = {
        "name": "california_housing",
        "task_type": "regression",
        "input_shape": [8],
        "num_classes": None,
        "sizes": {"train": 14448, "val": 3096, "test": 3096},
    }
    (run / "data.json").write_text(json.dumps(data))
    return run


def make_minimal_run(run: Path) -> Path:
    """Only config.yaml and metrics.json, as after a run that stopped before its first epoch."""
    run.mkdir(parents=True, exist_ok=True)
    _write_config(run, "tiny", "classification", "mlp", "iris")
    (run / "metrics.json").write_text(json.dumps({"test/accuracy": 0.8667, "test/loss": 0.4321}))
    return run
