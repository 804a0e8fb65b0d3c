"""Small data files written into tmp_path: CSV text, NPZ arrays and folders of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def write_csv(tmp_path):
    """Write CSV text to a file and return its path as a string."""

    def write(text: str, name: str = "data.csv") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


@pytest.fixture
def write_npz(tmp_path):
    """Save arrays with np.savez and return the path as a string."""

    def write(name: str = "data.npz", **arrays) -> str:
        path = tmp_path / name
        np.savez(path, **arrays)
        return str(path)

    return write


def save_image(path: Path, color, size=(12, 10), mode="RGB", fmt=None) -> None:
    """A solid-colour image of ``size`` (W, H), so resized pixels keep the colour exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """cat/ (3 RGB images in several formats), dog/ (2 images, one nested), plus a stray file."""
    root = tmp_path / "images"
    save_image(root / "cat" / "a.png", (255, 0, 51))
    save_image(root / "cat" / "b.jpg", (0, 0, 0), size=(20, 7))
    save_image(root / "cat" / "c.bmp", (255, 255, 255), size=(5, 5))
    save_image(root / "dog" / "d.gif", 128, mode="L")
    save_image(root / "dog" / "sub" / "e.PNG", (10, 200, 90, 255), mode="RGBA", fmt="PNG")
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def random_image_dir(tmp_path) -> Path:
    """Three classes of noisy RGB images of different sizes: 5, 4 and 3 images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "noise"
    for name, count in (("ant", 5), ("bee", 4), ("cow", 3)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            h, w = rng.integers(6, 20, size=2)
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root
