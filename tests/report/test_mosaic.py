"""The fixed-range image mosaic of deepworks.report.plots, its shape helpers, and read_npz."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps

from deepworks.report import plots
from deepworks.report.run_files import read_npz


def _drawn(fig) -> np.ndarray:
    """The RGB mosaic the figure's single axes shows."""
    (ax,) = fig.axes
    (image,) = ax.images
    return np.asarray(image.get_array())


def test_mosaic_maps_values_through_one_fixed_range_with_white_gaps():
    # 2 x 2 tiles of 8 x 8: lo, hi, midway, and a value beyond hi (clipped)
    images = np.stack([np.full((8, 8), v, np.float32) for v in (-1.0, 3.0, 1.0, 9.0)])
    fig = plots.image_mosaic(images.reshape(2, 2, 8, 8), vrange=(-1.0, 3.0))
    mosaic = _drawn(fig)
    assert mosaic.shape == (2 * 9 - 1, 2 * 9 - 1, 3)  # one white pixel between tiles
    np.testing.assert_allclose(mosaic[0, 0], 0.0)  # lo: black
    np.testing.assert_allclose(mosaic[0, 9], 1.0)  # hi: white
    np.testing.assert_allclose(mosaic[9, 0], colormaps["gray"](0.5)[:3], atol=1e-6)
    np.testing.assert_allclose(mosaic[9, 9], 1.0)  # clipped to hi
    np.testing.assert_allclose(mosaic[8, :], 1.0)  # the gap row
    np.testing.assert_allclose(mosaic[:, 8], 1.0)  # the gap column
    plots.fig_to_data_uri(fig)  # renders


def test_mosaic_colour_map_for_signed_filters_and_nan_tiles_drawn_white():
    filters = np.array([np.full((4, 4), -1.0), np.full((4, 4), 1.0), np.full((4, 4), 0.0)])
    grid = plots.grid_rows(filters, 2)  # 3 filters in rows of 2: the last tile is NaN
    mosaic = _drawn(plots.image_mosaic(grid, vrange=(-1.0, 1.0), cmap="RdBu_r"))
    cmap = colormaps["RdBu_r"]
    np.testing.assert_allclose(mosaic[0, 0], cmap(0.0)[:3], atol=1e-6)  # blue: negative
    np.testing.assert_allclose(mosaic[0, 5], cmap(1.0)[:3], atol=1e-6)  # red: positive
    np.testing.assert_allclose(mosaic[5, 0], cmap(0.5)[:3], atol=1e-6)  # zero: the middle
    np.testing.assert_allclose(mosaic[5:, 5:], 1.0)  # the padding tile is white
    assert mosaic[0, 0, 2] > mosaic[0, 0, 0] and mosaic[0, 5, 0] > mosaic[0, 5, 2]


def test_mosaic_colour_images_labels_and_size():
    rgb = np.zeros((1, 3, 6, 6, 3), np.float32)
    rgb[0, 1, ..., 0] = 0.5  # half red on a [0, 0.5] range: full red
    rgb[0, 2, 0, 0] = np.nan
    fig = plots.image_mosaic(
        rgb, row_labels=["row"], col_labels=["a", "b", "c"], vrange=(0.0, 0.5), cell=0.6
    )
    mosaic = _drawn(fig)
    np.testing.assert_allclose(mosaic[0, 7], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(mosaic[0, 14], 1.0)  # a NaN pixel is white
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["row"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    small = plots.image_mosaic(rgb, vrange=(0.0, 0.5), cell=0.3)
    assert fig.get_figwidth() > small.get_figwidth() + 3 * 0.25  # wider tiles and a label margin
    with pytest.raises(ValueError, match="R, K, H, W"):
        plots.image_mosaic(np.zeros((4, 8, 8)))


def test_as_images_reads_channels_first_grey_colour_and_flat_square_images():
    grey = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
    np.testing.assert_array_equal(plots.as_images(grey), grey[:, 0])
    colour = np.random.default_rng(0).random((2, 3, 4, 5))
    out = plots.as_images(colour)
    assert out.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(out[1, 2, 3], colour[1, :, 2, 3], rtol=1e-6)
    flat = np.arange(2 * 64, dtype=np.float32).reshape(2, 64)
    np.testing.assert_array_equal(plots.as_images(flat)[1, 2], flat[1, 16:24])
    frames = np.zeros((6, 8, 64))  # P pairs x T frames of flat images
    assert plots.as_images(frames, lead=2).shape == (6, 8, 8, 8)
    assert plots.as_images(np.zeros((4, 8, 8))).shape == (4, 8, 8)  # already (N, H, W)
    assert plots.as_images(np.zeros((4, 5))) is None  # 5 values: not a square image
    assert plots.as_images(np.zeros((4, 1))) is None


def test_grid_rows_pads_the_last_row_with_nan():
    images = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 2, 2)
    grid = plots.grid_rows(images, 3)
    assert grid.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(grid[1, 1], images[4])
    assert np.isnan(grid[1, 2]).all() and not np.isnan(grid[:1]).any()


def test_read_npz_returns_the_arrays_or_nothing_for_a_missing_or_damaged_file(tmp_path):
    good = tmp_path / "pictures.npz"
    np.savez_compressed(good, a=np.arange(3), b=np.ones((2, 2)))
    arrays = read_npz(good)
    assert sorted(arrays) == ["a", "b"]
    np.testing.assert_array_equal(arrays["a"], [0, 1, 2])
    assert read_npz(tmp_path / "missing.npz") == {}
    (tmp_path / "damaged.npz").write_bytes(good.read_bytes()[:40])
    assert read_npz(tmp_path / "damaged.npz") == {}
    (tmp_path / "text.npz").write_text("not an archive")
    assert read_npz(tmp_path / "text.npz") == {}
    with open(tmp_path / "bare.npz", "wb") as f:  # a single .npy array under an .npz name
        np.save(f, np.arange(3))
    assert read_npz(tmp_path / "bare.npz") == {}
