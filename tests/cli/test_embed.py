"""``deepworks embed``: latent codes of a run's encoder to CSV + PNG; bad inputs are one line,
exit code 2, and write nothing."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import deepworks as dw
from deepworks.run import build_data, load_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    config = {
        "name": "tiny_ae",
        "data": {"name": "digits", "as_image": True, "scale": "none"},
        "model": {"name": "autoencoder", "hidden": [16], "latent_dim": 3, "output": "sigmoid"},
        "task": {"name": "autoencoder"},
        "train": {"epochs": 1, "batch_size": 128, "progress": False, "device": "cpu"},
    }  # fmt: skip
    return dw.train(config, out=tmp_path_factory.mktemp("ae")).dir


@pytest.fixture(scope="module")
def cancer_run(tmp_path_factory):
    config = {
        "name": "tiny_anomaly",
        "data": {"name": "breast_cancer", "train_classes": [1]},
        "model": {"name": "autoencoder", "hidden": [8], "latent_dim": 2},
        "task": {"name": "anomaly_detection", "normal": [1]},
        "train": {"epochs": 1, "batch_size": 128, "progress": False, "device": "cpu"},
    }  # fmt: skip
    return dw.train(config, out=tmp_path_factory.mktemp("anomaly")).dir


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_embed_split_writes_the_codes_of_the_encoder_and_a_plot(cli, digits_run, tmp_path):
    out = tmp_path / "codes.csv"
    rc, stdout, err = cli("embed", digits_run, "--split", "test", "--out", out)
    assert rc == 0, err
    cfg, model, _ = load_run(digits_run)
    test = build_data(cfg).test
    assert f"wrote {len(test)} codes of 3 values" in stdout
    header, rows = read_csv(out)
    assert header == ["id", "z0", "z1", "z2", "label"]
    with torch.no_grad():
        want = model.eval().encode(test.x).numpy()
    got = np.array([[float(v) for v in r[1:4]] for r in rows])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert [r[4] for r in rows] == [str(int(v)) for v in test.y]  # digit names are "0".."9"
    assert out.with_suffix(".png").read_bytes().startswith(PNG)


def test_embed_reads_npz_and_csv_inputs_with_labels(cli, digits_run, cancer_run, tmp_path):
    x = np.random.default_rng(0).random((7, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "new.npz", x=x, y=np.arange(7) % 2)
    rc, _, err = cli("embed", digits_run, tmp_path / "new.npz", "-o", tmp_path / "npz.csv")
    assert rc == 0, err
    header, rows = read_csv(tmp_path / "npz.csv")
    assert header[-1] == "label" and len(rows) == 7 and [r[-1] for r in rows[:3]] == ["0", "1", "0"]
    _, model, _ = load_run(digits_run)
    with torch.no_grad():
        want = model.eval().encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose([[float(v) for v in r[1:4]] for r in rows], want, rtol=1e-4)

    # a CSV with the training columns (raw units: the run's scaler applies) and a label column
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    with open(tmp_path / "cells.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*raw.feature_names, "label"])
        for row, y in zip(raw.data[:5], raw.target[:5], strict=True):
            w.writerow([*row, raw.target_names[y]])
    out = tmp_path / "sub" / "cells_codes.csv"
    rc, _, err = cli("embed", cancer_run, tmp_path / "cells.csv", "-o", out)
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header == ["id", "z0", "z1", "label"]
    assert [r[-1] for r in rows] == [raw.target_names[y] for y in raw.target[:5]]
    assert out.with_suffix(".png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (("{run}",), "nothing to embed: give DATA"),
        (("{run}", "{bad}", "--split", "test"), "give DATA or --split, not both"),
        (("{run}", "--split", "holdout"), "--split 'holdout': choose train, val or test"),
        (("{run}", "--split", "test", "-o", "{tmp}/codes.txt"), "give a .csv file name"),
        (("{tmp}", "--split", "test"), "not a run directory (no config.yaml)"),
        (("{run}", "{bad}"), "samples of shape (5,), but the model was trained on (1, 8, 8)"),
        (("{run}", "{tmp}/missing.npz"), "no such file or folder"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(cli, digits_run, tmp_path, args, message):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 5), np.float32))
    fields = {"run": digits_run, "bad": bad, "tmp": tmp_path}
    argv = [a.format(**fields) for a in args]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "codes.csv")]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, out, err = cli("embed", *argv)
    assert rc == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_run_without_an_encoder_is_refused(cli, trained_run, tmp_path):
    rc, _, err = cli("embed", trained_run, "--split", "test", "-o", tmp_path / "c.csv")
    assert rc == 2
    assert "the run's model (mlp) has no encoder" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())
