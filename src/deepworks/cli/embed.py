"""``deepworks embed RUN DATA``: the latent codes of a trained autoencoder, as CSV and a plot.

The run's encoder maps each sample to its code z (k values); the CSV has one row per sample
(``id``, ``z0`` ... ``z{k-1}`` and ``label`` when the labels are known) and a PNG next to it
shows the codes in 2-D (the first two principal components when k > 2), coloured by label.
``DATA`` is read like ``deepworks predict`` reads it (a .csv with the training columns, an .npz
with an array ``x``, images); ``--split test`` embeds the run's own test split instead.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import typer

from deepworks.cli import app, out

LABEL_COLUMNS = ("label", "target", "y", "class")


@app.command()
def embed(
    run: Path = typer.Argument(..., help="Run directory of an autoencoder run"),
    inputs: Path = typer.Argument(None, help="A .csv, .npz, image or folder of images"),
    split: str = typer.Option(None, "--split", help="Embed the run's own split: train, val, test"),
    output: Path = typer.Option(
        Path("codes.csv"), "--out", "-o", help="CSV to write; the plot goes next to it (.png)"
    ),
    label: str = typer.Option(
        None, "--label", help="Column (.csv) or array (.npz) of DATA holding the labels"
    ),
    checkpoint: str = typer.Option("best", help="Checkpoint to load: best or last"),
) -> None:
    """Write the latent codes of a run's encoder for DATA to a CSV and a 2-D scatter PNG."""
    from deepworks.cli.train import graded_line
    from deepworks.errors import ConfigError
    from deepworks.run import load_run
    from deepworks.rundir import RunDir

    if inputs is not None and split is not None:
        raise ConfigError(f"give DATA or --split, not both (got {inputs} and --split {split})")
    if inputs is None and split is None:
        raise ConfigError("nothing to embed: give DATA (a .csv, .npz or images) or --split test")
    if split is not None and split not in ("train", "val", "test"):
        raise ConfigError(f"--split {split!r}: choose train, val or test")
    if output.suffix.lower() != ".csv":
        raise ConfigError(f"--out {output}: give a .csv file name (the plot goes next to it)")
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"--checkpoint {checkpoint!r}: choose best or last")
    run_dir = RunDir.open(run)
    cfg, model, _ = load_run(run_dir, checkpoint)
    if not callable(getattr(model, "encode", None)):
        raise ConfigError(
            f"{run}: the run's model ({cfg.model.name}) has no encoder; deepworks embed needs "
            "a model with encode(), e.g. model: {name: autoencoder}"
        )
    info = run_dir.data_info()
    names = info.get("class_names")
    if split is not None:
        x, labels, ids = _split_inputs(cfg, split)
    else:
        x, labels, ids = _file_inputs(inputs, info, cfg, label)
    codes = encode(model, x)
    _write(output, codes, labels, names, ids)
    run_dir.record("embed", [output, output.with_suffix(".png")])
    where = f"{split} split" if split is not None else str(inputs)
    out.print(
        f"wrote {len(codes):,} codes of {codes.shape[1]} values ({where}) to {output} and the "
        f"scatter to {output.with_suffix('.png')}",
        markup=False,
    )
    out.print(f"graded: {graded_line(run, checkpoint)}", markup=False)


def _split_inputs(cfg, split: str):
    """(scaled inputs, labels, ids) of one split of the run's data, re-created from its config."""
    import torch

    from deepworks.errors import DataError
    from deepworks.run import build_data

    data = build_data(cfg)
    part = getattr(data, split)
    if part is None or not len(part):
        raise DataError(f"--split {split}: the run's data has no {split} split")
    if not hasattr(part, "x"):
        raise DataError(f"--split {split}: the data is read lazily; export it to an .npz first")
    labels = part.y.numpy() if part.y.ndim == 1 and not torch.is_floating_point(part.y) else None
    return part.x, labels, [str(i) for i in range(len(part))]


def _file_inputs(path: Path, info: dict, cfg, label: str | None):
    """(scaled inputs, labels or None, ids) read from a file like ``deepworks predict`` does."""
    from deepworks.data.bundle import apply_scaler
    from deepworks.data.inputs import read_inputs
    from deepworks.errors import DataError

    x, ids = read_inputs(path, info, cfg.data.kwargs)
    expected = tuple(info.get("input_shape") or ())
    shape = tuple(np.shape(x)[1:])
    if expected and shape != expected:
        raise DataError(
            f"{path}: samples of shape {shape}, but the model was trained on {expected}; "
            "give inputs shaped like the training data"
        )
    labels = _labels(path, len(x), label or cfg.data.kwargs.get("target"), label is not None)
    return apply_scaler(x, info.get("scaler")), labels, ids


def _labels(path: Path, n: int, name: str | None, required: bool) -> np.ndarray | None:
    """Labels stored with the inputs: an .npz array or a .csv column (``name``, else one of
    LABEL_COLUMNS); None when there are none. A named one that is missing is an error."""
    from deepworks.errors import DataError

    suffix = path.suffix.lower()
    found = None
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            key = name or next((k for k in LABEL_COLUMNS if k in f.files), None)
            if key in f.files:
                found = f[key]
    elif suffix == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        header = [h.strip() for h in rows[0]] if rows else []
        key = name or next((k for k in LABEL_COLUMNS if k in header), None)
        if key in header:
            j = header.index(key)
            found = np.array([r[j].strip() if j < len(r) else "" for r in rows[1:]])
    if found is None and required:
        raise DataError(f"{path}: no labels named {name!r}; check --label")
    if found is not None and (found.ndim != 1 or len(found) != n):
        raise DataError(f"{path}: the labels have shape {found.shape}, expected ({n},)")
    return found


def encode(model, x, batch_size: int = 1024) -> np.ndarray:
    """Codes (N, k) of ``x`` (already scaled like the training data), on the CPU."""
    import torch

    model = model.cpu().eval()
    x = torch.as_tensor(x, dtype=torch.float32)
    with torch.inference_mode():
        parts = [model.encode(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(parts).reshape(len(x), -1).float().numpy()


def _write(
    path: Path,
    codes: np.ndarray,
    labels: np.ndarray | None,
    names: list[str] | None,
    ids: list[str],
) -> None:
    """Write the CSV and the PNG; both are rendered before either file is written."""
    from deepworks.report.autoencoder import latent_figure
    from deepworks.utils import atomic_write_bytes, atomic_write_text

    k = codes.shape[1]
    shown = labels
    if labels is not None and names and np.issubdtype(labels.dtype, np.integer):
        shown = np.array([names[int(v)] if 0 <= int(v) < len(names) else str(v) for v in labels])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["id", *(f"z{j}" for j in range(k)), *(["label"] if labels is not None else [])]
    )
    for i, row in enumerate(codes):
        cells = [ids[i], *(f"{v:.6g}" for v in row)]
        writer.writerow(cells + ([str(shown[i])] if shown is not None else []))
    plot_labels = labels if labels is None or np.issubdtype(labels.dtype, np.integer) else shown
    fig = latent_figure(codes, plot_labels, names if plot_labels is labels else None)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, facecolor="white", bbox_inches="tight")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())
    atomic_write_bytes(path.with_suffix(".png"), png.getvalue())
