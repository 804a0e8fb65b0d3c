"""``deepworks predict RUN INPUT``: predictions of a trained model for new inputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import typer

from deepworks.cli import app, err, out


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run directory made by deepworks train"),
    inputs: Path = typer.Argument(..., help="A .csv, .npz, image file or folder of images"),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this .csv or .json file"),
    checkpoint: str = typer.Option("best", help="Checkpoint to load: best or last"),
) -> None:
    """Predict classes (with probabilities) or values for new inputs."""
    from deepworks.cli.train import graded_line
    from deepworks.data.inputs import read_inputs
    from deepworks.errors import ConfigError
    from deepworks.run import predict as predict_run
    from deepworks.rundir import RunDir
    from deepworks.utils import atomic_write_bytes, atomic_write_text

    if output is not None and output.suffix not in (".csv", ".json", ".npz"):
        raise ConfigError(f"--output {output}: use a .csv, .json or (masks) .npz file name")
    run_dir = RunDir.open(run)
    cfg = run_dir.config()
    if run_dir.task == "segmentation" and (output is None or output.suffix != ".npz"):
        raise ConfigError("segmentation predictions are masks: pass -o masks.npz")
    x, ids = read_inputs(inputs, run_dir.data_info(), cfg.data.kwargs)
    preds, info = predict_run(run_dir, x, which=checkpoint)
    err.print(f"graded: {graded_line(run_dir, checkpoint)}", markup=False)
    class_names = info.get("class_names")
    if output is not None and output.suffix == ".npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, ids=np.asarray(ids), **preds)
        atomic_write_bytes(output, buf.getvalue())
        _wrote(len(ids), output, run_dir)
        return
    rows = []
    for i, sample in enumerate(ids):
        row = {"id": sample}
        pred = preds["y_pred"][i]
        if np.ndim(pred) == 2:  # detections: one row per box [class, score, x1, y1, x2, y2]
            rows += [_box_row(sample, det, class_names) for det in pred if det[0] >= 0]
            continue
        if "y_prob" in preds:
            names = class_names or [str(k) for k in range(preds["y_prob"].shape[1])]
            row["prediction"] = names[int(pred)]
            row |= {
                f"p_{n}": round(float(p), 6) for n, p in zip(names, preds["y_prob"][i], strict=True)
            }
        else:
            row["prediction"] = float(pred)
        rows.append(row)
    if not rows:
        rows = [{"id": "", "prediction": ""}]  # a header, nothing detected
    if output is not None and output.suffix == ".json":
        atomic_write_text(output, json.dumps(rows, indent=1))
        _wrote(len(ids), output, run_dir)
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if output is not None:
        atomic_write_text(output, buf.getvalue())
        _wrote(len(ids), output, run_dir)
    else:
        out.print(buf.getvalue(), end="", markup=False)


def _box_row(sample: str, det, class_names: list[str] | None) -> dict:
    cls, score, x1, y1, x2, y2 = (float(v) for v in det)
    name = class_names[int(cls)] if class_names else str(int(cls))
    box = {"x1": round(x1, 2), "y1": round(y1, 2), "x2": round(x2, 2), "y2": round(y2, 2)}
    return {"id": sample, "prediction": name, "score": round(score, 4)} | box


def _wrote(n: int, output: Path, run_dir) -> None:
    """Say what was written; a file inside the run directory is recorded in its run.json."""
    run_dir.record("predict", [output])
    out.print(f"wrote {n} prediction{'' if n == 1 else 's'} to {output}", markup=False)
