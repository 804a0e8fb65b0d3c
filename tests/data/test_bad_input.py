"""Bad data that should say more: NaN/Inf in a CSV (column and file line, or ``data.impute``
fitted on the training split only), unreadable images (``on_bad_file: skip``) and a continuous
target for a classifier — through the loaders, the pipeline, ``predict`` and the real CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.impute import SimpleImputer

import deepworks as dw
from deepworks.data.files import csv, image_folder
from deepworks.data.inputs import read_inputs
from deepworks.data.pipeline import load_dataset, split_indices
from deepworks.errors import DataError

# 20 rows below the header: file lines 2..21; a NaN at line 5 ('b') and empty cells at 8 ('a')
# and 12 ('b')
HEADER = "a,b,c,label\n"


def table(missing: dict[int, str] | None = None, n: int = 40) -> str:
    """CSV text with ``n`` rows; ``missing`` maps a file line to the column left empty/NaN."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        line = i + 2
        values = {"a": f"{rng.normal(5, 2):.3f}", "b": f"{rng.normal(-3, 1):.3f}"}
        values["c"] = f"{rng.normal():.3f}"
        col = (missing or {}).get(line)
        if col:
            values[col] = "nan" if line % 2 else ""
        rows.append(f"{values['a']},{values['b']},{values['c']},{'xy'[i % 2]}")
    return HEADER + "\n".join(rows) + "\n"


MISSING = {5: "b", 8: "a", 12: "b", 17: "b", 30: "a", 33: "b", 40: "a"}


def error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


# --- NaN / Inf in a CSV ---------------------------------------------------------------------


def test_nan_names_the_columns_and_the_file_lines(write_csv):
    path = write_csv(table(MISSING))
    message = error(csv, path, target="label")
    assert message.startswith(f"{path}: NaN or empty values in columns ")
    assert "'b' (lines 5, 12, 17, 33)" in message and "'a' (lines 8, 30, 40)" in message
    assert "data.impute" in message and "drop_rows" in message


def test_line_numbers_count_the_header_and_blank_lines(write_csv):
    path = write_csv("a,label\n1,x\n\n2,y\n,x\n")  # the empty cell is on line 5
    assert "column 'a' (line 5)" in error(csv, path, target="label")


def test_inf_is_never_imputed(write_csv):
    path = write_csv("a,b,label\n1,inf,x\n2,,y\n3,4,x\n")
    message = error(csv, path, target="label", impute="mean")
    assert "Inf values in column 'b' (line 2)" in message


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent"])
def test_impute_matches_simple_imputer_fitted_on_the_training_split(write_csv, strategy):
    path = write_csv(table(MISSING))
    data = load_dataset("csv", path=path, target="label", impute=strategy, scale="none", seed=3)
    raw = csv(path, target="label", impute=strategy)
    parts = split_indices(raw.y, {"val": 0.1, "test": 0.2}, 3, stratify=True)
    reference = SimpleImputer(strategy=strategy).fit(raw.x[parts["train"]])
    saved = data.extras["imputer"]
    assert saved["strategy"] == strategy and saved["columns"] == ["a", "b", "c"]
    np.testing.assert_allclose(saved["statistics"], reference.statistics_, rtol=1e-6)
    for name in ("train", "val", "test"):
        expected = reference.transform(raw.x[parts[name]]).astype(np.float32)
        np.testing.assert_allclose(getattr(data, name).x.numpy(), expected, rtol=1e-6)
        assert np.isfinite(getattr(data, name).x.numpy()).all()


def test_val_and_test_rows_do_not_move_the_statistics(write_csv, tmp_path):
    path = write_csv(table(MISSING))
    raw = csv(path, target="label", impute="mean")
    parts = split_indices(raw.y, {"val": 0.1, "test": 0.2}, 0, stratify=True)
    held_out = np.concatenate([parts["val"], parts["test"]])
    # the same file with wild values in the held-out rows only
    lines = path and Path(path).read_text().splitlines()
    for i in held_out:
        cells = lines[i + 1].split(",")
        lines[i + 1] = ",".join(["1000", "1000", "1000", cells[3]])
    wild = tmp_path / "wild.csv"
    wild.write_text("\n".join(lines) + "\n")
    a = load_dataset("csv", path=path, target="label", impute="mean", seed=0)
    b = load_dataset("csv", path=str(wild), target="label", impute="mean", seed=0)
    assert np.isnan(csv(str(wild), target="label", impute="mean").x[parts["train"]]).any()
    assert a.extras["imputer"]["statistics"] == b.extras["imputer"]["statistics"]
    assert a.scaler == b.scaler  # and the scaler, fitted after imputing, on train only too


def test_drop_rows_drops_before_the_split_and_says_how_many(write_csv):
    path = write_csv(table(MISSING))
    with pytest.warns(UserWarning, match=r"dropped 7 of 40 rows .* lines 5, 8, 12, 17, 30"):
        data = load_dataset("csv", path=path, target="label", impute="drop_rows")
    assert sum(data.describe()["sizes"].values()) == 33
    assert data.extras["dropped_rows"] == {"count": 7, "lines": [5, 8, 12, 17, 30, 33, 40]}
    assert "imputer" not in data.extras


def test_impute_is_checked_with_the_config():
    from deepworks.config import load_config
    from deepworks.errors import ConfigError

    config = {"data": {"name": "csv", "path": "x.csv", "target": "y", "impute": "meen"}}
    with pytest.raises(ConfigError, match="data.impute: 'meen' is not a valid"):
        load_config(config | {"model": {"name": "mlp"}})


def test_a_run_with_impute_fills_new_files_in_predict(write_csv, tmp_path, cli):
    path = write_csv(table(MISSING))
    config = tmp_path / "impute.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "imp",
                "data": {"name": "csv", "path": path, "target": "label", "impute": "median"},
                "model": {"name": "mlp", "hidden": [4]},
                "train": {"epochs": 1, "progress": False, "device": "cpu"},
            }
        )
    )
    out = tmp_path / "runs"
    result = cli("train", config, "--out", out, "-q")
    assert result.rc == 0, str(result)
    run = out / "imp"
    info = json.loads((run / "data.json").read_text())
    stats = info["extras"]["imputer"]["statistics"]
    new = tmp_path / "new.csv"
    new.write_text("a,b,c\n1,,2\n,4,\n")
    x, _ = read_inputs(new, info, {})
    np.testing.assert_allclose(x, [[1, stats[1], 2], [stats[0], 4, stats[2]]], rtol=1e-6)
    result = cli("predict", run, new)
    assert result.rc == 0, str(result)
    assert len(result.stdout.strip().splitlines()) == 3  # header + two predictions
    assert "imputed" in (run / "report.html").read_text()


def test_predict_without_impute_names_a_missing_cell(tmp_path):
    new = tmp_path / "new.csv"
    new.write_text("a,b\n1,2\n3,nan\n")
    message = error(read_inputs, new, {"feature_names": ["a", "b"]}, {})
    assert "line 3, column 'b' is missing" in message and "data.impute" in message


def test_nan_through_the_cli_is_one_line_naming_lines(cli, write_csv, tmp_path):
    path = write_csv(table({5: "b"}))
    config = tmp_path / "nan.yaml"
    config.write_text(
        f"data: {{name: csv, path: {path}, target: label}}\nmodel: mlp\ntrain: {{epochs: 1}}\n"
    )
    out = tmp_path / "runs"
    result = cli("train", config, "--out", out, "-q")
    assert result.rc == 2 and "Traceback" not in result.output, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: NaN or empty values")
    assert "column 'b' (line 5)" in lines[0]
    assert not out.exists() or not any(out.iterdir())  # no run directory


# --- unreadable images ------------------------------------------------------------------------


@pytest.fixture
def folder_with_bad_files(random_image_dir) -> Path:
    (random_image_dir / "ant" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (random_image_dir / "bee" / "empty.jpg").write_bytes(b"")
    return random_image_dir


def test_a_bad_image_is_an_error_by_default_and_says_how_to_skip(folder_with_bad_files):
    message = error(image_folder, str(folder_with_bad_files), image_size=8)
    assert "cannot be read as an image" in message and "on_bad_file: skip" in message


@pytest.mark.parametrize("lazy", [False, True])
def test_skip_leaves_bad_images_out_warns_once_and_lists_them(folder_with_bad_files, lazy):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        raw = image_folder(str(folder_with_bad_files), image_size=8, lazy=lazy, on_bad_file="skip")
    ours = [w for w in seen if "skipped" in str(w.message)]
    assert len(ours) == 1 and "skipped 2 of 14 image files" in str(ours[0].message)
    assert raw.extras["skipped_files"] == [str(Path("ant/broken.png")), str(Path("bee/empty.jpg"))]
    assert len(raw.y) == 12 and np.bincount(raw.y).tolist() == [5, 4, 3]
    if not lazy:
        assert raw.x.shape == (12, 3, 8, 8)
    else:
        assert len(raw.dataset) == 12 and raw.dataset[11][0].shape == (3, 8, 8)


def test_skip_with_a_class_left_empty_is_an_error(tmp_path):
    (tmp_path / "img" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "img" / "a" / "1.png")
    (tmp_path / "img" / "b").mkdir()
    (tmp_path / "img" / "b" / "bad.png").write_bytes(b"nope")
    message = error(image_folder, str(tmp_path / "img"), on_bad_file="skip")
    assert "no readable image is left in class folder(s) b" in message


def test_skipped_files_reach_data_json_and_the_report(folder_with_bad_files, tmp_path):
    config = {
        "name": "imgs",
        "data": {
            "name": "image_folder", "path": str(folder_with_bad_files), "image_size": 8,
            "on_bad_file": "skip", "split": {"val": 0.0, "test": 0.25},
        },
        "model": {"name": "cnn", "channels": [4]},
        "train": {"epochs": 1, "progress": False, "device": "cpu"},
    }  # fmt: skip
    with pytest.warns(UserWarning, match="skipped 2 of 14"):
        run = dw.train(config, out=tmp_path / "runs")
    info = json.loads((run.dir / "data.json").read_text())
    assert info["extras"]["skipped_files"] == [str(Path("ant/broken.png")), "bee/empty.jpg"]
    html = (run.dir / "report.html").read_text()
    assert "skipped files" in html and "broken.png" in html


# --- a continuous target for a classifier ----------------------------------------------------


@pytest.fixture
def float_target(write_csv) -> str:
    rows = [f"{i % 7},{(i * 3) % 5},{v}" for i, v in enumerate([0.37, 1.25, 2.5, 0.8] * 6)]
    return write_csv("x1,x2,price\n" + "\n".join(rows) + "\n", name="prices.csv")


def test_a_continuous_target_as_classes_names_the_column_and_suggests_regression(float_target):
    message = error(csv, float_target, target="price", task_type="classification")
    assert message.startswith(f"{float_target}: column 'price': holds continuous values")
    assert "0.37 at line 2" in message and "task: regression" in message


def test_classification_task_on_a_continuous_csv_target_through_the_cli(
    cli, float_target, tmp_path
):
    config = tmp_path / "cls.yaml"
    config.write_text(
        f"data: {{name: csv, path: {float_target}, target: price}}\nmodel: mlp\n"
        "task: classification\n"
    )
    for extra in ([], ["--set", "data.task_type=classification"]):
        result = cli("train", config, "--out", tmp_path / "runs", "-q", *extra)
        assert result.rc == 2 and "Traceback" not in result.output, str(result)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "'price'" in lines[0] and "regression" in lines[0], lines
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
