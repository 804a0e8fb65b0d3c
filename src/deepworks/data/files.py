"""Datasets from the user's files: CSV tables, NPZ arrays and folders of images.

Each loader returns a :class:`RawData`; the pipeline then validates, splits and scales it. A bad
file gives one :class:`DataError` line that starts with the file's path and says how to fix it.
"""

from __future__ import annotations

import csv as csv_lib
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from deepworks.data.bundle import RawData
from deepworks.errors import DataError, close_match
from deepworks.registry import PositiveInt, register_dataset

MAX_AUTO_CLASSES = 20  # task_type "auto": at most this many distinct integers means classes
TASK_TYPES = ("auto", "classification", "regression")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMPUTE = ("mean", "median", "most_frequent", "drop_rows")


def _existing(path: str, want_dir: bool = False) -> Path:
    p = Path(path).expanduser()
    kind = "directory" if want_dir else "file"
    if not p.exists():
        raise DataError(f"{path}: no such {kind}; check the path (relative to {Path.cwd()})")
    if p.is_dir() != want_dir:
        raise DataError(f"{path}: is {'not ' * want_dir}a directory; give the path of a {kind}")
    return p


def _missing(src: str, what: str, name: str, present: list[str], option: str) -> DataError:
    hint = close_match(name, present)
    did_you_mean = f"; did you mean '{hint}'?" if hint else ""
    return DataError(
        f"{src}: no {what} {name!r}{did_you_mean} ({what}s present: {', '.join(present)}); "
        f"set {option} to one of them"
    )


def _encode_targets(
    y: np.ndarray, task_type: str, src: str, integral: bool, lines: list[int] | None = None
):
    """(labels, task_type, class_names): text or few distinct integers become class indices.

    ``integral`` says whether numeric targets count as integers for ``task_type: auto``;
    ``lines`` are the file lines of the samples, for error messages.
    """
    if task_type not in TASK_TYPES:
        raise DataError(f"{src}: task_type {task_type!r} is not one of {', '.join(TASK_TYPES)}")
    if y.dtype.kind in "USO":  # text labels
        if task_type == "regression":
            raise DataError(
                f"{src}: the target holds text (e.g. {str(y[0])!r}) but task_type is regression; "
                "use numeric targets or task_type: classification"
            )
        classes, labels = np.unique(y.astype(str), return_inverse=True)
        return labels.astype(np.int64), "classification", [str(c) for c in classes]
    y = y.astype(np.float64)
    if task_type == "auto":
        few = len(np.unique(y)) <= MAX_AUTO_CLASSES
        task_type = "classification" if integral and few else "regression"
    if task_type == "regression":
        return y.astype(np.float32), task_type, None
    bad = ~np.isfinite(y) | (y != np.round(y))
    if bad.any():
        i = int(np.argmax(bad))
        at = f"line {lines[i]}" if lines is not None else f"sample {i}"
        if not np.isfinite(y[i]):
            raise DataError(f"{src}: the class label at {at} is {y[i]:g}; fix or drop the row")
        raise DataError(
            f"{src}: holds continuous values (e.g. {y[i]:g} at {at}), not class labels; for a "
            "continuous target use task: regression (with data.task_type: regression or auto), "
            "or give integer or text labels"
        )
    classes, labels = np.unique(y, return_inverse=True)  # sorted values -> 0..K-1
    return labels.astype(np.int64), task_type, [str(int(c)) for c in classes]


@register_dataset("csv")
def csv(
    path: str,
    target: str,
    task_type: str = "auto",
    delimiter: str = ",",
    drop: list[str] | None = None,
    impute: Literal["mean", "median", "most_frequent", "drop_rows"] | None = None,
) -> RawData:
    """A CSV table with a header row: numeric input columns and one target column.

    Args:
        path: The CSV file. Its first row names the columns.
        target: The column to predict. Text values or at most 20 distinct integers are classes
            (``task_type: auto``); anything else is a regression target.
        task_type: "auto", "classification" or "regression".
        delimiter: The one-character separator between values (``";"``, ``"\\t"``, ...).
        drop: Columns to leave out, such as an id column.
        impute: What to do with missing inputs (empty cells, NaN): None reports them (column and
            line); "mean", "median" or "most_frequent" fill them with scikit-learn's
            ``SimpleImputer`` fitted on the training split only (its statistics are saved, and
            ``predict`` fills new files the same way); "drop_rows" drops the rows that have
            them (also rows without a target), before the split, and warns how many.
    """
    p = _existing(path)
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise DataError(f"{path}: delimiter must be one character, got {delimiter!r}")
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv_lib.reader(f, delimiter=delimiter)
            header = [name.strip() for name in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from exc
    except csv_lib.Error as exc:
        raise DataError(f"{path}: is not valid CSV ({exc}); check quotes and delimiter") from exc
    if not header:
        raise DataError(f"{path}: the file is empty; a CSV needs a header row naming the columns")
    if dup := next((n for i, n in enumerate(header) if n in header[:i]), None):
        raise DataError(f"{path}: column {dup!r} appears twice in the header; rename one of them")
    if target not in header:
        raise _missing(path, "column", target, header, "target")
    drop = [drop] if isinstance(drop, str) else list(drop or [])
    for name in drop:
        if name not in header:
            raise _missing(path, "column", name, header, "drop")
    if target in drop:
        raise DataError(f"{path}: cannot drop the target column {target!r}; remove it from drop")
    if not rows:
        raise DataError(f"{path}: no data rows below the header; add samples to the file")
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {line} has {len(row)} values but the header has {len(header)} "
                f"columns; check the delimiter ({delimiter!r}) and quoting"
            )

    features = [n for n in header if n != target and n not in drop]
    if not features:
        raise DataError(f"{path}: no input columns besides the target {target!r}")
    cells = np.char.strip(np.array([row for _, row in rows], dtype=str))  # (N, columns)
    cols = [header.index(n) for n in features]
    x = _to_numbers(cells[:, cols], path, [line for line, _ in rows], features)

    lines = [line for line, _ in rows]
    t = cells[:, header.index(target)]
    if impute is not None and impute not in IMPUTE:
        raise DataError(f"{path}: impute {impute!r} is not one of {', '.join(IMPUTE)}")
    extras: dict = {"target_column": target}
    inf = np.isinf(x)
    if inf.any():
        raise DataError(
            f"{path}: Inf values in {_cells(inf, features, lines)}; replace them with numbers "
            "(data.impute fills only missing values)"
        )
    missing = np.isnan(x)
    if impute == "drop_rows":
        drop_rows = missing.any(axis=1) | (t == "")
        if drop_rows.all():
            raise DataError(f"{path}: every row has a missing value; nothing is left to train on")
        if drop_rows.any():
            dropped = [line for line, d in zip(lines, drop_rows, strict=True) if d]
            warnings.warn(
                f"{path}: dropped {len(dropped)} of {len(lines)} rows with missing values "
                f"(data.impute: drop_rows), at lines {_lines(dropped)}",
                stacklevel=2,
            )
            extras["dropped_rows"] = {"count": len(dropped), "lines": dropped[:100]}
            keep = ~drop_rows
            x, t, missing = x[keep], t[keep], missing[keep]
            lines = [line for line, k in zip(lines, keep, strict=True) if k]
    elif impute is None and missing.any():
        raise DataError(
            f"{path}: NaN or empty values in {_cells(missing, features, lines)}; fill them, or "
            f"set data.impute to {', '.join(IMPUTE[:-1])} or {IMPUTE[-1]}"
        )
    if (t == "").any():
        line = lines[int(np.argmax(t == ""))]
        raise DataError(
            f"{path}: line {line}: target {target!r} is empty; fill it or drop the row "
            "(data.impute: drop_rows)"
        )
    try:
        y = t.astype(np.float64)
        integral = bool(np.all(np.isfinite(y) & (y == np.round(y))))
    except ValueError:  # some labels are text
        y, integral = t, False
    src = f"{path}: column {target!r}"
    y, task, class_names = _encode_targets(y, task_type, src, integral, lines)
    return RawData(
        x, y, task, class_names=class_names, feature_names=features, source=path,
        impute=impute if impute != "drop_rows" else None, extras=extras,
    )  # fmt: skip


def _lines(lines: list[int], most: int = 5) -> str:
    """``3, 5, 9`` or ``3, 5, 9, 12, 14, ... (40 in all)``."""
    shown = ", ".join(map(str, lines[:most]))
    return shown + (f", ... ({len(lines)} in all)" if len(lines) > most else "")


def _cells(mask: np.ndarray, names: list[str], lines: list[int]) -> str:
    """Where a (rows, columns) mask is set: ``column 'b' (lines 3, 5)``, for error messages."""
    parts = []
    for c in np.flatnonzero(mask.any(axis=0)):
        rows = [lines[r] for r in np.flatnonzero(mask[:, c])]
        parts.append(f"{names[c]!r} (line{'s' * (len(rows) > 1)} {_lines(rows)})")
    more = f" and {len(parts) - 4} more columns" if len(parts) > 4 else ""
    return f"column{'s' * (len(parts) > 1)} {', '.join(parts[:4])}{more}"


def _to_numbers(cells: np.ndarray, path: str, lines: list[int], names: list[str]) -> np.ndarray:
    """Parse a (rows, cols) array of text cells to float32; empty cells become NaN."""
    cells = np.where(cells == "", "nan", cells)
    try:
        return cells.astype(np.float64).astype(np.float32)
    except ValueError:  # find the offending cell to name it
        pass
    for r, row in enumerate(cells):
        for c, value in enumerate(row):
            try:
                float(value)
            except ValueError:
                raise DataError(
                    f"{path}: line {lines[r]}, column {names[c]!r}: {value!r} is not a number; "
                    "input columns must be numeric (encode text columns, or drop them)"
                ) from None
    raise DataError(f"{path}: input columns must be numeric")  # unreachable in practice


@register_dataset("npz")
def npz(path: str, task_type: str = "auto", x_key: str = "x", y_key: str = "y") -> RawData:
    """Arrays in a NumPy .npz archive: inputs x (N, ...) and targets y (N,).

    Args:
        path: The .npz file, as written by ``np.savez(path, x=x, y=y)``.
        task_type: "auto", "classification" or "regression". Auto: integer targets with at most
            20 distinct values (or text) are classes, anything else is regression.
        x_key: Name of the input array. (N, C, H, W) or (N, H, W) arrays are images.
        y_key: Name of the target array.
    """
    p = _existing(path)
    errors = (OSError, ValueError, EOFError, zipfile.BadZipFile)
    try:
        archive = np.load(p, allow_pickle=False)
    except errors as exc:
        raise DataError(f"{path}: cannot be read as .npz ({exc}); write it with np.savez") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds one array, not an .npz archive; use np.savez(path, x=, y=)")
    with archive:
        arrays = {}
        for key, option in ((x_key, "x_key"), (y_key, "y_key")):
            if key not in archive.files:
                raise _missing(path, "array", key, archive.files, option)
            try:
                arrays[key] = archive[key]
            except ValueError as exc:  # object arrays need pickle, which can run code
                raise DataError(
                    f"{path}: array {key!r} holds Python objects, refused (loading would "
                    "unpickle); save numeric arrays"
                ) from exc
            except errors as exc:
                raise DataError(f"{path}: array {key!r} cannot be read ({exc})") from exc
    x, y = arrays[x_key], arrays[y_key]
    if x.dtype.kind not in "biuf" or x.ndim == 0:
        raise DataError(f"{path}: {x_key!r} must be numeric (N, ...), got {x.dtype} {x.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{path}: {y_key!r} has shape {y.shape}; give one target per sample (N,)")
    if x.ndim in (1, 3):
        x = x[:, None]  # (N,) -> (N, 1) one feature; (N, H, W) -> (N, 1, H, W) one channel
    integral = y.dtype.kind in "biu"
    y, task, class_names = _encode_targets(y, task_type, f"{path}: {y_key!r}", integral)
    return RawData(x, y, task, class_names=class_names, is_image=x.ndim == 4, source=path)


IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _read_image(file: str, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image file as float32 (C, H, W) in [0, 1]."""
    try:
        with Image.open(file) as img:
            img = img.convert(mode).resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32) / 255.0
    except IMAGE_ERRORS as exc:
        raise DataError(
            f"{file}: cannot be read as an image ({exc}); replace or delete it, or set "
            "data.on_bad_file: skip"
        ) from exc
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


class ImageFiles(torch.utils.data.Dataset):
    """Image files read on demand, yielding (x float32 (C, H, W) in [0, 1], y int64)."""

    def __init__(self, files: list[str], labels: np.ndarray, mode: str, size: tuple[int, int]):
        self.files, self.labels, self.mode, self.size = files, labels, mode, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(_read_image(self.files[i], self.mode, self.size))
        return x, torch.tensor(int(self.labels[i]), dtype=torch.int64)


@register_dataset("image_folder")
def image_folder(
    path: str,
    image_size: list[PositiveInt] | PositiveInt = 32,
    grayscale: bool = False,
    lazy: bool = False,
    extensions: list[str] | None = None,
    on_bad_file: Literal["error", "skip"] = "error",
) -> RawData:
    """Images sorted into one subfolder per class (path/cat/1.png, path/dog/2.jpg, ...).

    Args:
        path: The folder. Its subfolders, in sorted order, are the classes; images may sit in
            nested folders below them.
        image_size: Height and width every image is resized to: one int or [H, W].
        grayscale: Convert to one channel; otherwise three (RGB).
        lazy: Read each image when a batch needs it instead of all up front (large folders).
        extensions: File endings counted as images (default .png .jpg .jpeg .bmp .gif).
        on_bad_file: A file that cannot be read as an image is an "error" (the default), or is
            left out ("skip"): one warning gives the count, and ``data.json`` and the report
            list the files.
    """
    root = _existing(path, want_dir=True)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise DataError(f"{path}: image_size must be a positive int or [H, W], got {image_size!r}")
    exts = {("." + e.lower().lstrip(".")) for e in (extensions or IMAGE_EXTENSIONS)}
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(
            f"{path}: no class subfolders; put each class's images in its own folder "
            f"({path}/cat/1.png, {path}/dog/2.png, ...)"
        )
    files, labels, empty = [], [], []
    for k, name in enumerate(classes):
        found = [f for f in sorted((root / name).rglob("*")) if f.suffix.lower() in exts]
        found = [str(f) for f in found if f.is_file() and not f.name.startswith(".")]
        files += found
        labels += [k] * len(found)
        if not found:
            empty.append(name)
    if not files:
        raise DataError(
            f"{path}: no image files ({' '.join(sorted(exts))}) in the class folders "
            f"{', '.join(classes)}; add images or set extensions"
        )
    if empty:
        raise DataError(f"{path}: class folder(s) {', '.join(empty)} hold no images; add or remove")
    if on_bad_file not in ("error", "skip"):
        raise DataError(f"{path}: on_bad_file must be error or skip, got {on_bad_file!r}")

    y = np.asarray(labels, dtype=np.int64)
    mode = "L" if grayscale else "RGB"
    shape = (1 if grayscale else 3, *size)  # (C, H, W)
    skip = on_bad_file == "skip"
    if lazy:
        if skip:  # find the unreadable files now, not in the middle of an epoch
            with ThreadPoolExecutor(max_workers=8) as pool:
                readable = list(pool.map(_is_image, files))
            files, y, extras = _drop_bad(path, files, y, readable, classes)
        else:
            extras = {}
        x = np.empty((len(y), 0), np.float32)  # placeholder: pixels are read per item
        dataset = ImageFiles(files, y, mode, size)
        return RawData(
            x, y, "classification", classes, is_image=True, source=path,
            dataset=dataset, sample_shape=shape, extras=extras,
        )  # fmt: skip
    x = np.empty((len(y), *shape), np.float32)  # (N, C, H, W)
    read = _read_or_none if skip else _read_image
    readable = []
    with ThreadPoolExecutor(max_workers=8) as pool:  # PIL decodes outside the GIL
        for i, pixels in enumerate(pool.map(lambda f: read(f, mode, size), files)):
            readable.append(pixels is not None)
            if pixels is not None:
                x[i] = pixels
    extras = {}
    if skip:
        keep = np.asarray(readable)
        files, y, extras = _drop_bad(path, files, y, readable, classes)
        x = x[keep]
    return RawData(x, y, "classification", classes, is_image=True, source=path, extras=extras)


def _read_or_none(file: str, mode: str, size: tuple[int, int]) -> np.ndarray | None:
    try:
        return _read_image(file, mode, size)
    except DataError:
        return None


def _is_image(file: str) -> bool:
    """Whether PIL can decode ``file`` (read in full, as training will)."""
    try:
        with Image.open(file) as img:
            img.load()
    except IMAGE_ERRORS:
        return False
    return True


def _drop_bad(path: str, files: list[str], y: np.ndarray, readable: list[bool], classes):
    """Leave out the unreadable files (``on_bad_file: skip``): warn once with the count, and
    list them in the extras that ``data.json`` and the report show."""
    bad = [f for f, ok in zip(files, readable, strict=True) if not ok]
    if not bad:
        return files, y, {}
    keep = np.asarray(readable)
    if not keep.any():
        raise DataError(f"{path}: none of the {len(files)} image files can be read")
    gone = [c for k, c in enumerate(classes) if not (y[keep] == k).any()]
    if gone:
        raise DataError(
            f"{path}: no readable image is left in class folder(s) {', '.join(gone)}; replace "
            "the unreadable files"
        )
    warnings.warn(
        f"{path}: skipped {len(bad)} of {len(files)} image files that cannot be read "
        f"(on_bad_file: skip), e.g. {bad[0]}; data.json lists them",
        stacklevel=3,
    )
    root = Path(path)
    names = [str(Path(f).relative_to(root)) if Path(f).is_relative_to(root) else f for f in bad]
    kept = [f for f, ok in zip(files, readable, strict=True) if ok]
    return kept, y[keep], {"skipped_files": names}
