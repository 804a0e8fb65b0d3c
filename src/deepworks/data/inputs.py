"""Reading new inputs for ``predict``: a CSV with the training columns, an NPZ, or images."""

from __future__ import annotations

import csv as csvlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from deepworks.data.files import _read_image
from deepworks.data.pipeline import apply_imputer
from deepworks.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def read_inputs(path: str | Path, info: dict[str, Any], data_options: dict[str, Any]):
    """Inputs for a trained model from ``path``; returns (x (N, ...), sample ids).

    Args:
        path: A .csv (columns named like the training features), .npz (array ``x``), an image, or
            a folder of images.
        info: The run's ``data.json`` (feature names, input shape).
        data_options: The run's ``data`` config options (image size, grayscale).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; pass a .csv, .npz, image or folder")
    tokenizer = (info.get("extras") or {}).get("tokenizer")
    if tokenizer is not None and info.get("task_type") == "classification":
        return _texts(path, info, data_options, tokenizer)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return _images(path, info, data_options)
    if path.suffix.lower() == ".csv":
        return _csv(path, info.get("feature_names"), (info.get("extras") or {}).get("imputer"))
    if path.suffix.lower() == ".npz":
        return _npz(path)
    raise DataError(f"{path}: unknown input type {path.suffix!r}; use .csv, .npz or an image")


def _csv(path: Path, feature_names: list[str] | None, imputer: dict[str, Any] | None = None):
    """The training feature columns of a CSV; missing cells are filled with the training split's
    imputer statistics when the run used ``data.impute``, and are an error otherwise."""
    with open(path, newline="") as f:
        rows = list(csvlib.reader(f))
    if len(rows) < 2:
        raise DataError(f"{path}: no data rows; give a header line and one row per sample")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    columns = feature_names or header
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; the model was trained on "
            f"{', '.join(columns)}"
        )
    index = [header.index(c) for c in columns]
    x = np.empty((len(body), len(index)), np.float32)
    for r, row in enumerate(body):
        for j, i in enumerate(index):
            cell = row[i].strip() if i < len(row) else ""
            if cell == "" and imputer is not None:
                x[r, j] = np.nan  # filled below
                continue
            try:
                x[r, j] = float(cell)
            except ValueError as exc:
                raise DataError(
                    f"{path}: line {r + 2}, column {columns[j]!r}: {cell!r} is not a number"
                ) from exc
    missing = np.isnan(x)
    if missing.any() and imputer is None:
        r, j = (int(i) for i in np.argwhere(missing)[0])
        raise DataError(
            f"{path}: line {r + 2}, column {columns[j]!r} is missing (NaN); the model was trained "
            "without data.impute, so fill the value in"
        )
    return apply_imputer(x, imputer), [str(i) for i in range(len(x))]


def _npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f:
                raise DataError(f"{path}: no array 'x' (found: {', '.join(f.files)})")
            x = f["x"]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    return x.astype(np.float32), [str(i) for i in range(len(x))]


def _images(path: Path, info: dict[str, Any], options: dict[str, Any]):
    shape = info["input_shape"]
    if len(shape) != 3:
        raise DataError(f"{path}: the model takes feature vectors, not images; pass a .csv/.npz")
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    )
    if not files:
        raise DataError(f"{path}: no image files found")
    mode = "L" if shape[0] == 1 else "RGB"
    x = np.stack([_read_image(str(f), mode, (shape[1], shape[2])) for f in files])
    return x, [str(f) for f in files]


def _texts(path: Path, info: dict[str, Any], options: dict[str, Any], tokenizer: dict[str, Any]):
    """Texts for a text classifier: a .csv with the training text column, a .txt file (one text
    per line) or a folder of .txt files (one text each), as token ids padded like training."""
    from deepworks.data.text.tokenizers import tokenizer_from_dict
    from deepworks.data.text.vocab import pad_batch

    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise DataError(f"{path}: no .txt files in the folder; put one text per .txt file")
        texts, ids = [_read_text(f) for f in files], [str(f.relative_to(path)) for f in files]
    elif path.suffix.lower() == ".txt":
        texts = [line for line in _read_text(path).splitlines() if line.strip()]
        ids = [str(i) for i in range(len(texts))]
    elif path.suffix.lower() == ".csv":
        column = options.get("text", "text")
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csvlib.DictReader(f, delimiter=options.get("delimiter", ",")))
        if not rows or column not in rows[0]:
            found = ", ".join(rows[0]) if rows else "none"
            raise DataError(f"{path}: no {column!r} column (columns: {found}); add the texts there")
        texts, ids = [r[column] for r in rows], [str(i) for i in range(len(rows))]
    else:
        raise DataError(f"{path}: a text model takes a .csv, .txt (one text per line) or folder")
    if not texts:
        raise DataError(f"{path}: no texts found; add at least one non-empty text")
    tok = tokenizer_from_dict(tokenizer)
    length = int(info["input_shape"][0])
    x, cut = pad_batch([tok.encode(t) for t in texts], max_len=length)
    if cut:
        warnings.warn(f"{path}: {cut} of {len(texts)} texts cut to {length} tokens", stacklevel=2)
    return x, ids


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: is not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
