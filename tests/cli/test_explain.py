"""``deepworks explain``: heatmaps, feature tables, the sanity check, activation maximization;
bad inputs are one line, exit code 2, and write nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("captum")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def digits_run(train_tiny, tmp_path_factory) -> Path:
    """The digits CNN example, smaller and for one epoch."""
    out = tmp_path_factory.mktemp("digits")
    return train_tiny(EXAMPLES / "digits_cnn.yaml", out, "--set", "model.channels=[8,16]")[0]


@pytest.fixture(scope="module")
def regression_run(train_tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("diabetes")
    return train_tiny(EXAMPLES / "diabetes_regression.yaml", out, "--set", "model.hidden=[8]")[0]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_ig_on_images_writes_overlays_arrays_and_a_summary(cli, digits_run, tmp_path):
    from deepworks.explain import Context, attribute
    from deepworks.explain.runs import load

    rc, out, err = cli("explain", digits_run, "--method", "ig", "--inputs", "3", "--out", tmp_path)
    assert rc == 0, err
    lines = [line for line in out.splitlines() if line.startswith("test[")]
    assert len(lines) == 3 and all("completeness gap" in line for line in lines)
    assert (tmp_path / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    values = np.load(tmp_path / "attributions.npy")
    images = np.load(tmp_path / "inputs.npy")
    assert values.shape == images.shape == (3, 1, 8, 8)
    assert images.min() >= 0 and images.max() <= 16.0001  # digits in their own units (0..16)
    rows = read_csv(tmp_path / "summary.csv")
    assert [r["sample"] for r in rows] == ["test[0]", "test[1]", "test[2]"]
    assert all(float(r["completeness_gap"]) < 0.05 for r in rows)
    # the same numbers as the Python API on the run's own model and test split
    run = load(digits_run)
    x = run.data.test.x[:3]
    expected = attribute("ig", run.model, x, context=Context(background=run.data.train.x))
    assert np.allclose(values, expected.values.numpy(), atol=1e-5)
    assert [int(r["target"]) for r in rows] == expected.target.tolist()


def test_grad_cam_default_folder_and_true_target(cli, digits_run):
    rc, out, err = cli("explain", digits_run, "-m", "grad_cam", "-n", "2", "--target", "true")
    assert rc == 0, err
    folder = digits_run / "explain" / "grad_cam"
    assert {"overlay.png", "attributions.npy", "summary.csv", "explain.json"} <= {
        p.name for p in folder.iterdir()
    }
    rows = read_csv(folder / "summary.csv")
    assert [r["target"] for r in rows] == [r["true"] for r in rows]


def test_tabular_attributions_are_a_table(cli, trained_run, tmp_path):
    rc, out, err = cli(
        "explain", trained_run, "-m", "occlusion", "-n", "2", "--out", tmp_path, "--target", "0"
    )
    assert rc == 0, err
    rows = read_csv(tmp_path / "attributions.csv")
    assert len(rows) == 2 * 30  # one row per input x feature
    assert rows[0]["feature"] == "mean radius" and {r["input"] for r in rows} == {"0", "1"}
    assert float(rows[0]["value"]) > 1  # the raw (unscaled) feature value
    assert (tmp_path / "features.png").is_file()
    assert {r["target"] for r in read_csv(tmp_path / "summary.csv")} == {"0"}


def test_permutation_importance_table(cli, trained_run, tmp_path):
    rc, out, err = cli("explain", trained_run, "-m", "permutation", "--out", tmp_path)
    assert rc == 0, err
    rows = read_csv(tmp_path / "importance.csv")
    assert len(rows) == 30
    importance = [float(r["importance"]) for r in rows]
    assert importance == sorted(importance, reverse=True) and importance[0] > 0
    assert "accuracy of the" in out


def test_sanity_check_and_activation_maximization(cli, digits_run, tmp_path):
    rc, out, err = cli(
        "explain", digits_run, "-m", "saliency", "--sanity", "-n", "4", "--out", tmp_path / "s"
    )
    assert rc == 0, err
    rows = read_csv(tmp_path / "s" / "sanity.csv")
    assert float(rows[0]["spearman"]) == pytest.approx(1.0)
    assert len(rows) == 1 + 3  # itself, then head, conv 2, conv 1 randomized in turn
    assert "trained vs itself: Spearman rho 1.000" in out
    assert (tmp_path / "s" / "sanity.png").is_file()
    rc, out, err = cli(
        "explain", digits_run, "--visualize", "--class", "3", "--out", tmp_path / "v",
        "-o", "steps=40",
    )  # fmt: skip
    assert rc == 0, err
    (row,) = read_csv(tmp_path / "v" / "summary.csv")
    assert row["target"] == "3" and float(row["end"]) > float(row["start"])
    assert np.load(tmp_path / "v" / "images.npy").shape == (1, 1, 8, 8)
    assert (tmp_path / "v" / "activation_max.png").is_file()


def test_regression_runs_explain_their_one_output(cli, regression_run, tmp_path):
    rc, out, err = cli("explain", regression_run, "-m", "saliency", "-n", "2", "--out", tmp_path)
    assert rc == 0, err
    assert len(read_csv(tmp_path / "attributions.csv")) == 2 * 10


def bad_inputs(tmp_path: Path) -> Path:
    path = tmp_path / "wrong.npz"
    np.savez(path, x=np.zeros((2, 5), np.float32))
    return path


@pytest.mark.parametrize(
    "run_name, args, message",
    [
        (
            "tabular",
            ["-m", "grad_cam"],
            "grad_cam needs a convolutional layer; MLP has none: use ig",
        ),
        ("tabular", ["-m", "saliancy"], "did you mean 'saliency'?"),
        ("tabular", ["-m", "ig", "--inputs", "FILE"], "the model expects (30,)"),
        ("tabular", ["-m", "ig", "--inputs", "0"], "--inputs 0: explain at least 1 input"),
        ("tabular", ["-m", "ig", "--target", "7"], "--target 7: the classes are 0..1"),
        ("tabular", ["-m", "ig", "--baseline", "blur"], "baseline 'blur' needs images"),
        ("tabular", ["-m", "ig", "-o", "stesp=3"], "did you mean 'steps'?"),
        ("regression", ["-m", "ig", "--target", "3"], "a regression run has one output and no"),
        ("regression", ["--visualize", "--class", "1"], "a regression run has no classes"),
        ("none", ["-m", "ig"], "not a run directory"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(
    cli, trained_run, regression_run, snapshot, tmp_path, run_name, args, message
):
    run = {"tabular": trained_run, "regression": regression_run, "none": tmp_path}[run_name]
    args = [str(bad_inputs(tmp_path)) if a == "FILE" else a for a in args]
    before = snapshot(run)
    rc, out, err = cli("explain", run, *args)
    assert rc == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert snapshot(run) == before
