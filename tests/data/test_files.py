"""The file loaders: CSV, NPZ and image folders, good files and bad ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deepworks.data.bundle import RawData
from deepworks.data.files import csv, image_folder, npz
from deepworks.data.pipeline import load_dataset, load_raw
from deepworks.data.validate import validate_raw
from deepworks.errors import ConfigError, DataError
from deepworks.registry import DATASETS

# --- CSV -------------------------------------------------------------------------------------


def test_loaders_are_registered_with_a_description():
    descriptions = dict(DATASETS.items())
    for name in ("csv", "npz", "image_folder"):
        assert descriptions[name]


def test_csv_string_labels(write_csv):
    path = write_csv("a,b,species\n1,2.5,setosa\n3,-4,virginica\n5,6e1,setosa\n7,8,versicolor\n")
    raw = csv(path, target="species")
    assert raw.task_type == "classification"
    assert raw.class_names == ["setosa", "versicolor", "virginica"]
    assert raw.y.tolist() == [0, 2, 0, 1]
    assert raw.feature_names == ["a", "b"]
    assert raw.x.dtype == np.float32
    np.testing.assert_array_equal(raw.x, [[1, 2.5], [3, -4], [5, 60], [7, 8]])
    assert raw.source == path and not raw.is_image


def test_csv_integer_labels_map_to_sorted_indices(write_csv):
    path = write_csv("x,label\n0.1,7\n0.2,3\n0.3,5\n0.4,7\n")
    raw = csv(path, target="label")
    assert raw.task_type == "classification"
    assert raw.class_names == ["3", "5", "7"]
    assert raw.y.tolist() == [2, 0, 1, 2]
    assert raw.y.dtype == np.int64


def test_csv_target_in_the_middle_with_drop_and_delimiter(write_csv):
    path = write_csv("id;y;f1;f2\n10;1;0.5;1\n11;0;1.5;2\n")
    raw = csv(path, target="y", delimiter=";", drop=["id"])
    assert raw.feature_names == ["f1", "f2"]
    np.testing.assert_array_equal(raw.x, [[0.5, 1], [1.5, 2]])
    assert raw.y.tolist() == [1, 0]


def test_csv_regression_target(write_csv):
    path = write_csv("a,price\n1,10.5\n2,11.25\n3,9\n")
    raw = csv(path, target="price")
    assert raw.task_type == "regression"
    assert raw.class_names is None
    assert raw.y.dtype == np.float32
    np.testing.assert_allclose(raw.y, [10.5, 11.25, 9])


def test_csv_many_distinct_integers_are_regression_unless_told(write_csv):
    rows = "".join(f"{i},{i * 3}\n" for i in range(25))
    path = write_csv("a,count\n" + rows)
    assert csv(path, target="count").task_type == "regression"
    raw = csv(path, target="count", task_type="classification")
    assert raw.task_type == "classification" and len(raw.class_names) == 25


def test_csv_few_integers_can_be_forced_to_regression(write_csv):
    path = write_csv("a,y\n1,0\n2,1\n3,2\n")
    raw = csv(path, target="y", task_type="regression")
    assert raw.task_type == "regression" and raw.y.dtype == np.float32


def test_csv_text_target_cannot_be_regression(write_csv):
    path = write_csv("a,y\n1,cat\n2,dog\n")
    with pytest.raises(DataError, match="holds text.*task_type: classification"):
        csv(path, target="y", task_type="regression")


def test_csv_fractional_target_cannot_be_classes(write_csv):
    path = write_csv("a,y\n1,0.5\n2,1\n")
    with pytest.raises(DataError, match=r"0\.5.*task_type: regression"):
        csv(path, target="y", task_type="classification")


def test_csv_unknown_task_type(write_csv):
    path = write_csv("a,y\n1,0\n")
    with pytest.raises(DataError, match="'clasification' is not one of auto"):
        csv(path, target="y", task_type="clasification")


def test_csv_empty_cell_becomes_nan_and_is_reported_with_its_column_and_line(write_csv):
    path = write_csv("a,b,y\n1,2,0\n3,,1\n5,6,0\n")
    raw = csv(path, target="y", impute="mean")  # kept as NaN for the pipeline's imputer
    assert np.isnan(raw.x[1, 1]) and np.isfinite(raw.x[[0, 2]]).all()
    with pytest.raises(DataError) as info:
        load_raw("csv", {"path": path, "target": "y"})
    message = str(info.value)
    assert message.startswith(path) and "NaN" in message and "column 'b' (line 3)" in message


def test_csv_empty_target_cell(write_csv):
    path = write_csv("a,y\n1,0\n2,\n")
    with pytest.raises(DataError, match=r"line 3: target 'y' is empty"):
        csv(path, target="y")


def test_csv_header_only(write_csv):
    path = write_csv("a,b,y\n")
    with pytest.raises(DataError) as info:
        csv(path, target="y")
    assert str(info.value).startswith(path) and "no data rows" in str(info.value)


def test_csv_empty_file(write_csv):
    path = write_csv("")
    with pytest.raises(DataError, match="the file is empty; a CSV needs a header row"):
        csv(path, target="y")


def test_csv_missing_target_suggests_a_close_match(write_csv):
    path = write_csv("sepal,petal,label\n1,2,a\n")
    with pytest.raises(DataError) as info:
        csv(path, target="lable")
    message = str(info.value)
    assert message.startswith(path)
    assert "'lable'" in message and "did you mean 'label'?" in message
    assert "sepal, petal, label" in message


def test_csv_unknown_drop_column(write_csv):
    path = write_csv("a,b,y\n1,2,0\n")
    with pytest.raises(DataError, match="no column 'c'.*set drop"):
        csv(path, target="y", drop=["c"])


def test_csv_non_numeric_feature_cell(write_csv):
    path = write_csv("age,height,y\n31,1.8,0\n40,tall,1\n")
    with pytest.raises(DataError) as info:
        csv(path, target="y")
    message = str(info.value)
    assert message.startswith(path)
    assert "line 3" in message and "'height'" in message and "'tall'" in message
    assert "not a number" in message


def test_csv_ragged_row(write_csv):
    path = write_csv("a,b,y\n1,2,0\n1,2\n")
    with pytest.raises(DataError, match="line 3 has 2 values but the header has 3 columns"):
        csv(path, target="y")


def test_csv_duplicate_column_name(write_csv):
    path = write_csv("a,a,y\n1,2,0\n")
    with pytest.raises(DataError, match="column 'a' appears twice"):
        csv(path, target="y")


def test_csv_only_a_target_column(write_csv):
    path = write_csv("y\n1\n2\n")
    with pytest.raises(DataError, match="no input columns besides the target"):
        csv(path, target="y")


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.csv")
    with pytest.raises(DataError) as info:
        csv(path, target="y")
    assert str(info.value).startswith(f"{path}: no such file;")
    with pytest.raises(DataError, match="no such file"):
        npz(str(tmp_path / "nope.npz"))
    with pytest.raises(DataError, match="no such directory"):
        image_folder(str(tmp_path / "nope"))


def test_directory_given_for_a_file(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        csv(str(tmp_path), target="y")


def test_unknown_option_is_a_config_error(write_csv):
    path = write_csv("a,y\n1,0\n")
    with pytest.raises(ConfigError, match="did you mean 'target'"):
        load_raw("csv", {"path": path, "targte": "y"})


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"a,y\n1,caf\xe9\n")
    with pytest.raises(DataError, match="not UTF-8"):
        csv(str(path), target="y")


# --- NPZ -------------------------------------------------------------------------------------


def test_npz_flat_classification(write_npz):
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    path = write_npz(x=x, y=np.array([9, 2, 5, 2, 9, 5]))
    raw = npz(path)
    assert raw.task_type == "classification" and not raw.is_image
    assert raw.class_names == ["2", "5", "9"]
    assert raw.y.tolist() == [2, 0, 1, 0, 2, 1]
    np.testing.assert_array_equal(raw.x, x)


def test_npz_float_targets_are_regression(write_npz):
    path = write_npz(x=np.ones((4, 3)), y=np.array([0.0, 1.0, 0.0, 1.0]))
    raw = npz(path)
    assert raw.task_type == "regression" and raw.y.dtype == np.float32
    assert npz(path, task_type="classification").class_names == ["0", "1"]


def test_npz_text_labels_and_column_targets(write_npz):
    path = write_npz(x=np.ones((3, 2)), y=np.array([["b"], ["a"], ["b"]]))
    raw = npz(path)
    assert raw.class_names == ["a", "b"] and raw.y.tolist() == [1, 0, 1]


def test_npz_images(write_npz):
    rng = np.random.default_rng(0)
    path = write_npz(x=rng.random((5, 3, 4, 6)), y=np.arange(5) % 2)
    raw = npz(path)
    assert raw.is_image and raw.x.shape == (5, 3, 4, 6) and raw.input_shape == (3, 4, 6)
    path = write_npz("gray.npz", x=rng.random((5, 4, 6)), y=np.arange(5) % 2)
    raw = npz(path)
    assert raw.is_image and raw.x.shape == (5, 1, 4, 6)


def test_npz_custom_keys(write_npz):
    path = write_npz(features=np.ones((2, 3)), labels=np.array([0, 1]))
    raw = npz(path, x_key="features", y_key="labels")
    assert raw.x.shape == (2, 3) and raw.y.tolist() == [0, 1]


def test_npz_missing_key_lists_the_keys(write_npz):
    path = write_npz(inputs=np.ones((2, 3)), y=np.array([0, 1]))
    with pytest.raises(DataError) as info:
        npz(path)
    message = str(info.value)
    assert message.startswith(path) and "no array 'x'" in message
    assert "inputs, y" in message and "x_key" in message


def test_npz_object_array_is_refused_without_unpickling(write_npz, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:  # unpickling would call open(marker, "w") and create the file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    x = np.empty(2, dtype=object)
    x[0], x[1] = Payload(), Payload()
    path = write_npz(x=x, y=np.array([0, 1]))
    with pytest.raises(DataError) as info:
        npz(path)
    message = str(info.value)
    assert message.startswith(path) and "holds Python objects" in message and "\n" not in message
    assert not marker.exists()


def test_npz_inf_is_reported(write_npz):
    x = np.ones((4, 2))
    x[2, 1] = np.inf
    path = write_npz(x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError) as info:
        load_raw("npz", {"path": path})
    message = str(info.value)
    assert message.startswith(path) and "NaN/Inf" in message and "sample 2" in message


def test_npz_length_mismatch(write_npz):
    path = write_npz(x=np.ones((10, 2)), y=np.arange(9) % 2)
    with pytest.raises(DataError) as info:
        load_raw("npz", {"path": path})
    message = str(info.value)
    assert message.startswith(path) and "x has 10 samples but y has 9" in message


def test_npz_bad_shapes_and_dtypes(write_npz):
    path = write_npz(x=np.ones((3, 2)), y=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"'y' has shape \(3, 2\)"):
        npz(path)
    path = write_npz("text.npz", x=np.array([["a"], ["b"]]), y=np.array([0, 1]))
    with pytest.raises(DataError, match="'x' must be numeric"):
        npz(path)


def test_npz_corrupt_file_and_plain_npy(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError) as info:
        npz(str(bad))
    assert str(info.value).startswith(str(bad)) and "cannot be read as .npz" in str(info.value)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(DataError, match="holds one array, not an .npz archive"):
        npz(str(single))


def test_label_out_of_range_is_reported():
    raw = RawData(
        np.ones((3, 2), np.float32), np.array([0, 1, 3]), "classification",
        class_names=["a", "b", "c"], source="labels.npz",
    )  # fmt: skip
    with pytest.raises(DataError, match=r"^labels.npz: labels must be in 0\.\.2, found 3"):
        validate_raw(raw)
    raw.y = np.array([0, -1, 1])
    with pytest.raises(DataError, match="found -1"):
        validate_raw(raw)


# --- image folders ---------------------------------------------------------------------------

EXPECTED_RGB = [(255, 0, 51), (0, 0, 0), (255, 255, 255), (128, 128, 128), (10, 200, 90)]


def test_image_folder_rgb(image_dir):
    raw = image_folder(str(image_dir), image_size=[6, 8])
    assert raw.is_image and raw.task_type == "classification"
    assert raw.class_names == ["cat", "dog"]
    assert raw.y.tolist() == [0, 0, 0, 1, 1]
    assert raw.x.shape == (5, 3, 6, 8) and raw.x.dtype == np.float32
    assert raw.x.min() >= 0 and raw.x.max() <= 1
    for image, color in zip(raw.x, EXPECTED_RGB, strict=True):
        expected = np.asarray(color, np.float32)[:, None, None] / 255
        np.testing.assert_allclose(image, np.broadcast_to(expected, image.shape), atol=2 / 255)


def test_image_folder_grayscale(image_dir):
    raw = image_folder(str(image_dir), image_size=5, grayscale=True)
    assert raw.x.shape == (5, 1, 5, 5)
    assert raw.input_shape == (1, 5, 5)
    for image, color in zip(raw.x, EXPECTED_RGB, strict=True):
        gray = Image.new("RGB", (1, 1), color).convert("L").getpixel((0, 0)) / 255
        np.testing.assert_allclose(image, gray, atol=2 / 255)


def test_image_folder_lazy_matches_eager(random_image_dir):
    eager = image_folder(str(random_image_dir), image_size=[7, 9])
    lazy = image_folder(str(random_image_dir), image_size=[7, 9], lazy=True)
    assert lazy.dataset is not None and len(lazy.dataset) == 12
    assert lazy.x.shape == (12, 0) and lazy.sample_shape == (3, 7, 9)
    assert lazy.input_shape == eager.input_shape == (3, 7, 9)
    assert lazy.class_names == eager.class_names == ["ant", "bee", "cow"]
    np.testing.assert_array_equal(lazy.y, eager.y)
    assert np.bincount(eager.y).tolist() == [5, 4, 3]
    for i in range(len(eager.y)):
        x, y = lazy.dataset[i]
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (3, 7, 9)
        assert torch.equal(x, torch.from_numpy(eager.x[i])) and int(y) == eager.y[i]


def test_image_folder_lazy_through_the_pipeline(random_image_dir):
    data = load_dataset(
        "image_folder", path=str(random_image_dir), lazy=True, grayscale=True, image_size=4,
        split={"val": 0.25, "test": 0.25},
    )  # fmt: skip
    assert data.is_image and data.input_shape == (1, 4, 4) and data.num_classes == 3
    assert sum(len(s) for s in (data.train, data.val, data.test)) == 12
    loader = torch.utils.data.DataLoader(data.train.dataset, batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 1, 4, 4) and y.dtype == torch.int64
    assert torch.equal(y, data.train.y[:4])


def test_image_folder_custom_extensions(image_dir):
    raw = image_folder(str(image_dir), extensions=["png"])
    assert raw.y.tolist() == [0, 1]  # cat/a.png and dog/sub/e.PNG


def test_image_folder_corrupt_image(image_dir):
    bad = image_dir / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError) as info:
        image_folder(str(image_dir))
    message = str(info.value)
    assert message.startswith(str(bad)) and "cannot be read as an image" in message
    assert "\n" not in message
    lazy = image_folder(str(image_dir), lazy=True)  # found only when the item is read
    with pytest.raises(DataError, match="broken.png: cannot be read"):
        lazy.dataset[3]


def test_image_folder_without_class_folders(tmp_path):
    (tmp_path / "flat.png").write_bytes(b"")
    with pytest.raises(DataError) as info:
        image_folder(str(tmp_path))
    assert str(info.value).startswith(str(tmp_path)) and "no class subfolders" in str(info.value)


def test_image_folder_without_images(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no image files .* in the class folders cat, dog"):
        image_folder(str(tmp_path))


def test_image_folder_with_an_empty_class(image_dir):
    (image_dir / "eel").mkdir()
    with pytest.raises(DataError, match="class folder.* eel hold no images"):
        image_folder(str(image_dir))


def test_image_folder_bad_size_and_file_path(image_dir):
    with pytest.raises(DataError, match="image_size must be"):
        image_folder(str(image_dir), image_size=[0, 4])
    with pytest.raises(DataError, match="is not a directory"):
        image_folder(str(image_dir / "cat" / "a.png"))
