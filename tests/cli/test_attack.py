"""``deepworks attack``: clean vs robust accuracy of a run, its files, and one-line errors."""

from __future__ import annotations

import json

import pytest

import deepworks as dw
from deepworks.robust import InputSpaceModel, robust_accuracy
from deepworks.run import build_data, load_run


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A small CNN on digits, trained with standardized inputs (the attack is in pixel space)."""
    config = {
        "name": "digits_attack",
        "data": {"name": "digits", "as_image": True, "scale": "standard"},
        "model": {"name": "cnn", "channels": [8, 16]},
        "task": {"name": "classification"},
        "train": {"epochs": 3, "batch_size": 64, "progress": False, "device": "cpu",
                  "optimizer": {"name": "adam", "lr": 0.01}},
    }  # fmt: skip
    return dw.train(config, out=tmp_path_factory.mktemp("attack")).dir


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    config = {
        "name": "diabetes",
        "data": {"name": "diabetes"},
        "model": {"name": "mlp", "hidden": [8]},
        "task": {"name": "regression"},
        "train": {"epochs": 1, "batch_size": 256, "progress": False, "device": "cpu"},
    }
    return dw.train(config, out=tmp_path_factory.mktemp("regression")).dir


def test_attack_prints_and_writes_the_figures(cli, digits_run):
    rc, out, err = cli(
        "attack", digits_run, "--method", "pgd", "--eps", "0.05,0.2", "--steps", "5", "--n", "120"
    )
    assert rc == 0, err
    folder = digits_run / "attacks" / "pgd"
    report = json.loads((folder / "results.json").read_text())
    assert report["clip"] == pytest.approx([0.0, 1.0])  # digits pixels, not standardized units
    rows = {r["eps"]: r for r in report["results"]}
    assert set(rows) == {0.05, 0.2} and report["samples"] == 120
    clean = rows[0.05]["clean_accuracy"]
    assert clean > 0.8
    assert clean >= rows[0.05]["robust_accuracy"] >= rows[0.2]["robust_accuracy"]
    assert rows[0.2]["mean_linf"] == pytest.approx(0.2, abs=1e-4)
    for r in rows.values():
        assert f"{r['eps']:g}" in out and f"{r['robust_accuracy']:.4f}" in out
    lines = (folder / "results.csv").read_text().splitlines()
    assert lines[0].startswith("eps,clean_accuracy,robust_accuracy") and len(lines) == 3
    assert (folder / "examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report_html = (digits_run / "report.html").read_text()  # rewritten with the new section
    assert "Adversarial robustness" in report_html and "PGD-5, deepworks attack" in report_html
    # the same figure from the Python API, on the same split and in the same input space
    cfg, model, _ = load_run(digits_run)
    data = build_data(cfg)
    info = json.loads((digits_run / "data.json").read_text())
    scale, shift = (torch_tensor(info["scaler"][k]) for k in ("scale", "shift"))
    x, y = data.test.x[:120] * scale + shift, data.test.y[:120]
    space = InputSpaceModel(model, info["scaler"])
    expected = robust_accuracy(space, x, y, "pgd", 0.2, steps=5, seed=0)
    assert rows[0.2]["robust_accuracy"] == pytest.approx(expected, abs=1e-9)


def torch_tensor(values):
    import torch

    return torch.tensor(values, dtype=torch.float32)


def test_fgsm_on_a_few_samples_into_another_folder(cli, digits_run, tmp_path):
    out_dir = tmp_path / "fgsm"
    rc, out, err = cli(
        "attack", digits_run, "-m", "fgsm", "--eps", "0.1", "--n", "50", "--out", out_dir
    )
    assert rc == 0, err
    report = json.loads((out_dir / "results.json").read_text())
    assert report["samples"] == 50 and report["method"] == "fgsm"
    assert not (digits_run / "attacks" / "fgsm").exists()
    assert "eps 0.1" in err  # the progress bar


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "pgdd"], "'pgdd' is not an attack; did you mean 'pgd'?"),
        (["--eps", "1.5"], "eps 1.5 is outside the input range [0, 1]"),
        (["--eps", "-0.1"], "eps -0.1 is outside the input range [0, 1]"),
        (["--eps", "0.1,big"], "--eps '0.1,big': give numbers separated by commas"),
        (["--split", "dev"], "--split 'dev': choose test, val or train"),
        (["--method", "pgd", "--norm", "l3"], "'l3' is not a norm PGD takes"),
        (["--method", "fgsm", "--steps", "5"], "--steps: the fgsm attack has no steps option"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(cli, digits_run, snapshot, args, message):
    before = snapshot(digits_run)
    rc, out, err = cli("attack", digits_run, *args, "-q")
    assert rc == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(digits_run) == before


def test_a_regression_run_is_refused_with_the_fix(cli, regression_run, snapshot):
    before = snapshot(regression_run)
    rc, _, err = cli("attack", regression_run, "--eps", "0.1", "-q")
    assert rc == 2
    assert "need a classification run" in err and "task: {name: classification}" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(regression_run) == before


def test_not_a_run_directory(cli, tmp_path):
    rc, _, err = cli("attack", tmp_path, "-q")
    assert rc == 2 and "not a run directory" in err
    assert list(tmp_path.iterdir()) == []
