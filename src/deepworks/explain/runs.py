"""Explaining a run directory: the Python side of ``deepworks explain RUN``.

Each entry point loads the run's model (``run.load_run``) and rebuilds its identical data split
(``run.build_data``), computes everything, and only then writes into ``RUN/explain/<name>/`` (or
``out``), so a bad option leaves nothing behind:

- :func:`explain_run`: attributions of one method for the first N inputs of a split (or the
  inputs of a file): ``overlay.png`` (image | heatmap | overlay per input) with
  ``attributions.npy``, or ``attributions.csv`` (one row per input x feature) with
  ``features.png`` for tabular data; ``summary.csv`` (one row per input) and ``explain.json``.
  ``permutation`` is global: ``importance.csv`` and ``importance.png``.
- :func:`sanity_run`: the model-parameter randomization test (``sanity.csv``, ``sanity.png``).
- :func:`visualize_run`: activation maximization (``activation_max.png``, ``images.npy``).

Each returns the folder written and one printable line per input, class or stage.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepworks.errors import ConfigError, DataError
from deepworks.explain.attributions import Attribution, Context, attribute
from deepworks.registry import EXPLAINERS, TASKS
from deepworks.rundir import RunDir
from deepworks.utils import atomic_write_bytes, atomic_write_text, csv_text

SIGNED = {"ig", "input_x_gradient", "deeplift", "deeplift_shap", "occlusion", "kernel_shap", "lime"}


def explainable_tasks() -> list[str]:
    """The registered tasks whose models can be explained (``Task.explainable``)."""
    return [name for name in TASKS.names() if getattr(TASKS.get(name), "explainable", False)]


def check_explainable(run_dir: Path, task: Any, command: str = "deepworks explain") -> None:
    """A one-line ConfigError unless the run's task declares its model explainable."""
    if not getattr(task, "explainable", False):
        raise ConfigError(
            f"{run_dir}: {command} works on runs of the {', '.join(explainable_tasks())} tasks "
            f"(one score per class or one value per input), not {task.name}"
        )


@dataclass
class Loaded:
    """A run ready to explain: its model, data, and the facts from ``data.json``."""

    dir: Path
    model: torch.nn.Module
    data: Any
    info: dict[str, Any]
    seed: int

    @property
    def regression(self) -> bool:
        return self.data.task_type == "regression"

    @property
    def num_classes(self) -> int | None:
        return None if self.regression else self.data.num_classes


@dataclass
class Written:
    """Where the files went and what to print."""

    dir: Path
    files: list[str]
    lines: list[str]


def load(run_dir: str | Path, checkpoint: str = "best") -> Loaded:
    """Load a run's model and its data split; one-line errors for what cannot be explained."""
    from deepworks.run import build_data, load_run

    if checkpoint not in ("best", "last"):
        raise ConfigError(f"--checkpoint {checkpoint!r}: choose best or last")
    run = RunDir.open(run_dir)
    cfg, model, task = load_run(run, checkpoint)
    check_explainable(run.path, task)
    data = build_data(cfg)
    info = run.data_info()
    info.setdefault("scaler", data.scaler)
    info.setdefault("input_shape", list(data.input_shape))
    model.eval()
    return Loaded(run.path, model, data, info, cfg.seed)


def _split_tensors(split: Any, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` (all if None) inputs and labels of a split, lazy or not."""
    if hasattr(split, "x"):
        return split.x[:n], split.y[:n]
    count = len(split) if n is None else min(n, len(split))
    items = [split.dataset[i] for i in range(count)]
    return torch.stack([a for a, _ in items]), split.y[:count]


def select_inputs(run: Loaded, inputs: str | int | None, split: str, default: int | None):
    """(x in the model's input space, labels or None, sample ids) to explain.

    ``inputs``: a count (the first N of ``split``), a file of new inputs (.csv, .npz, images,
    read like ``deepworks predict`` and scaled with the run's scaler), or None for ``default``
    inputs (None: the whole split).
    """
    from deepworks.data.bundle import apply_scaler
    from deepworks.data.inputs import read_inputs

    if split not in ("test", "val", "train"):
        raise ConfigError(f"--split {split!r}: choose test, val or train")
    count = default if inputs is None else inputs
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if count is None or isinstance(count, int):
        if count is not None and count < 1:
            raise ConfigError(f"--inputs {count}: explain at least 1 input")
        part = getattr(run.data, split)
        if part is None or len(part) == 0:
            raise ConfigError(f"--split {split}: this run has no {split} split")
        x, y = _split_tensors(part, count)
        return x, y, [f"{split}[{i}]" for i in range(len(x))]
    x, ids = read_inputs(count, run.info, {})
    expected = tuple(run.info["input_shape"])
    if tuple(np.shape(x)[1:]) != expected:
        raise DataError(
            f"{count}: inputs of shape {tuple(np.shape(x)[1:])}, the model expects {expected}"
        )
    if not (isinstance(x, torch.Tensor) and not x.is_floating_point()):  # token ids stay ids
        x = apply_scaler(x, run.info.get("scaler"))
    return x, None, [str(i) for i in ids]


def resolve_target(run: Loaded, target: str, labels: torch.Tensor | None) -> torch.Tensor | None:
    """(N,) classes to explain for ``--target pred|true|<class>``; None means predicted."""
    if target == "pred":
        return None
    if run.regression:
        raise ConfigError(
            f"--target {target}: a regression run has one output and no classes; use --target pred"
        )
    if target == "true":
        if labels is None:
            raise ConfigError("--target true needs labels: inputs from a file have none")
        return labels.long()
    if not target.lstrip("-").isdigit():
        raise ConfigError(f"--target {target!r}: use pred, true or a class number")
    k = int(target)
    if not 0 <= k < run.num_classes:
        raise ConfigError(f"--target {k}: the classes are 0..{run.num_classes - 1}")
    return torch.tensor(k)


def context_for(run: Loaded, labels: torch.Tensor | None, seed: int) -> Context:
    """Background (up to 512 training inputs, seeded), labels, output kind and seed."""
    train = run.data.train
    x, _ = _split_tensors(train, None if hasattr(train, "x") else 512)  # lazy: read 512 files
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:512]
    return Context(background=x[pick], labels=labels, regression=run.regression, seed=seed)


def _outputs(run: Loaded, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """(predicted class or value, probability of that class or None) per input."""
    with torch.no_grad():
        out = run.model(x)
    if run.regression:
        return out.reshape(len(x), -1)[:, 0].numpy(), None
    probs = out if getattr(run.model, "output_kind", "logits") == "probs" else out.softmax(-1)
    pred = probs.argmax(-1)
    return pred.numpy(), probs[torch.arange(len(x)), pred].numpy()


def _out_dir(run: Loaded, name: str, out: str | Path | None) -> Path:
    return Path(out) if out is not None else RunDir(run.dir).explain_dir(name)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


def _feature_names(run: Loaded, width: int) -> list[str]:
    names = run.info.get("feature_names") or run.data.feature_names
    return list(names) if names and len(names) == width else [f"x{j}" for j in range(width)]


def _name(run: Loaded, k: Any) -> str:
    """A class as "1 (benign)" when the run has class names; values and bare numbers as is."""
    names = run.info.get("class_names") or run.data.class_names
    if run.regression or not names or not isinstance(k, int) or str(k) == str(names[k]):
        return str(k)
    return f"{k} ({names[k]})"


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def explain_run(
    run_dir: str | Path,
    method: str = "ig",
    inputs: str | int | None = None,
    split: str = "test",
    target: str = "pred",
    out: str | Path | None = None,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    checkpoint: str = "best",
) -> Written:
    """Attributions of ``method`` for a run's inputs, written as pictures, arrays and tables."""
    EXPLAINERS.get(method, where="--method")  # an unknown name fails before loading anything
    run = load(run_dir, checkpoint)
    is_global = method == "permutation"
    x, labels, ids = select_inputs(run, inputs, split, None if is_global else 8)
    wanted = resolve_target(run, target, labels)
    context = context_for(run, labels, seed)
    result = attribute(method, run.model, x, wanted, context, **(options or {}))
    pred, prob = _outputs(run, x)
    folder = _out_dir(run, method, out)
    files: dict[str, bytes | str] = {}
    if is_global:
        lines = _global_files(run, result, x, files)
    else:
        lines = _per_input_files(run, result, x, labels, ids, pred, prob, files)
    meta = {"method": method, "options": options or {}, "split": split, "target": target}
    meta |= {"checkpoint": checkpoint, "inputs": len(x), "seed": seed}
    from deepworks.run import graded_info

    meta["graded"] = graded_info(run.dir, checkpoint)  # the step and epoch of those weights
    meta["info"] = {k: v for k, v in result.info.items() if not isinstance(v, torch.Tensor)}
    files["explain.json"] = json.dumps(meta, indent=1, default=str)
    return _write(run, folder, files, lines)


def _per_input_files(run, result: Attribution, x, labels, ids, pred, prob, files) -> list[str]:
    from deepworks.explain import overlay

    values = result.values.cpu().numpy()
    sums = values.reshape(len(x), -1).sum(1)
    rows, lines, titles = [], [], []
    for i in range(len(x)):
        row: dict[str, Any] = {"input": i, "sample": ids[i]}
        if labels is not None:
            row["true"] = _fmt(float(labels[i])) if run.regression else int(labels[i])
        row["pred"] = _fmt(float(pred[i])) if run.regression else int(pred[i])
        if prob is not None:
            row["prob"] = round(float(prob[i]), 4)
        row["target"] = int(result.target[i])
        row["attribution_sum"] = _fmt(float(sums[i]))
        if result.delta is not None:
            row["completeness_gap"] = f"{float(result.delta[i]):.3g}"
        rows.append(row)
        true = f"true {_name(run, row['true'])}, " if "true" in row else ""
        p = f" (p {row['prob']:.2f})" if "prob" in row else ""
        gap = f", completeness gap {row['completeness_gap']}" if "completeness_gap" in row else ""
        lines.append(
            f"{ids[i]}: {true}predicted {_name(run, row['pred'])}{p}, "
            f"target {_name(run, row['target'])}, "
            f"sum of attributions {row['attribution_sum']}{gap}"
        )
        titles.append(f"{true}pred {_name(run, row['pred'])}".replace(", ", "\n"))
    files["summary.csv"] = csv_text(rows)
    if x.ndim == 4:
        images = overlay.unscale(x.cpu().numpy(), run.info.get("scaler"))
        fig = overlay.attribution_figure(
            images, overlay.pixel_map(values), titles, signed=result.method in SIGNED
        )
        files["overlay.png"] = overlay.png_bytes(fig)
        files["attributions.npy"] = _npy(values)
        files["inputs.npy"] = _npy(images)
        return lines
    flat_x = x.reshape(len(x), -1).cpu().numpy()
    raw = flat_x if not x.is_floating_point() else overlay.unscale(flat_x, run.info.get("scaler"))
    flat = values.reshape(len(x), -1)
    names = _feature_names(run, flat.shape[1])
    table = [
        {"input": i, "feature": names[j], "value": _fmt(float(raw[i, j])),
         "attribution": _fmt(float(flat[i, j]))}
        for i in range(len(x))
        for j in range(flat.shape[1])
    ]  # fmt: skip
    files["attributions.csv"] = csv_text(table)
    files["features.png"] = overlay.png_bytes(
        overlay.feature_figure(flat, names, [t.replace("\n", ", ") for t in titles])
    )
    return lines


def _global_files(run: Loaded, result: Attribution, x: torch.Tensor, files) -> list[str]:
    from deepworks.explain import overlay

    mean = result.values.reshape(-1).cpu().numpy()
    std = result.info["std"].reshape(-1).cpu().numpy()
    if x.ndim == 4:
        names = [
            f"c{c}_y{i}_x{j}" for c in range(x.shape[1]) for i in range(x.shape[2])
            for j in range(x.shape[3])
        ]  # fmt: skip
    else:
        names = _feature_names(run, len(mean))
    order = np.argsort(-mean)
    rows = [{"feature": names[j], "importance": _fmt(mean[j]), "std": _fmt(std[j])} for j in order]
    files["importance.csv"] = csv_text(rows)
    score = result.info["score"]
    if x.ndim == 4:
        pixel = overlay.pixel_map(result.values.cpu().numpy())
        fig = overlay.map_grid([[pixel[0]]], [f"{score} lost when shuffled"], ["importance"])
    else:
        fig = overlay.feature_figure(
            mean[None], names, [f"{score} lost when a feature is shuffled"]
        )
    files["importance.png"] = overlay.png_bytes(fig)
    lines = [f"{score} of the {len(x)} inputs: {result.info['baseline_score']:.4f}"]
    lines += [f"{names[j]}: {mean[j]:.4f} ± {std[j]:.4f}" for j in order[:10]]
    return lines


def sanity_run(
    run_dir: str | Path,
    method: str = "saliency",
    mode: str = "cascading",
    inputs: str | int | None = None,
    split: str = "test",
    target: str = "pred",
    out: str | Path | None = None,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    checkpoint: str = "best",
) -> Written:
    """The model-parameter randomization test of ``method`` on a run's inputs."""
    from deepworks.explain import overlay
    from deepworks.explain.sanity import randomization_test

    EXPLAINERS.get(method, where="--method")
    run = load(run_dir, checkpoint)
    x, labels, _ids = select_inputs(run, inputs, split, 8)
    wanted = resolve_target(run, target, labels)
    context = context_for(run, labels, seed)
    result = randomization_test(
        run.model, x, method, wanted, mode, context, seed=seed, **(options or {})
    )
    rows = [{"stage": 0, "randomized": "none (trained vs itself)", "spearman": _fmt(result.same)}]
    lines = [f"trained vs itself: Spearman rho {result.same:.3f}"]
    for k, (label, rho, rhos) in enumerate(result.stages, 1):
        what = "every weight layer" if label == "all" else f"from the top down to {label}"
        rows.append({"stage": k, "randomized": what, "spearman": _fmt(rho)})
        rows[-1] |= {"min": _fmt(min(rhos)), "max": _fmt(max(rhos))}
        lines.append(f"randomized {what}: Spearman rho {rho:.3f}")
    rows[0] |= {"min": rows[0]["spearman"], "max": rows[0]["spearman"]}
    show = min(4, len(x))
    maps = [m[:show].cpu().numpy() for m in result.maps]
    grids = [
        [overlay.pixel_map(m)[i] if x.ndim == 4 else m[i].reshape(1, -1) for m in maps]
        for i in range(show)
    ]
    cols = ["trained"] + [f"{label}\nρ {rho:.2f}" for label, rho, _ in result.stages]
    picture = overlay.map_grid(grids, cols, [f"input {i}" for i in range(show)])
    files = {
        "sanity.csv": csv_text(rows),
        "sanity.png": overlay.png_bytes(picture),
        "explain.json": json.dumps(
            {"method": method, "mode": mode, "same": result.same, "inputs": len(x),
             "stages": [{"layer": s[0], "spearman": s[1]} for s in result.stages]},
            indent=1,
        ),
    }  # fmt: skip
    name = f"sanity_{method}" if mode == "cascading" else f"sanity_{method}_{mode}"
    return _write(run, _out_dir(run, name, out), files, lines)


def visualize_run(
    run_dir: str | Path,
    classes: list[int] | None = None,
    layer: str | None = None,
    out: str | Path | None = None,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    checkpoint: str = "best",
) -> Written:
    """Activation maximization of classes (or of channels of ``layer``) of a run's model."""
    from deepworks.explain import overlay
    from deepworks.explain.visualize import activation_maximization
    from deepworks.registry import check_kwargs

    run = load(run_dir, checkpoint)
    if layer is None and classes and run.regression:
        raise ConfigError(
            "--class: a regression run has no classes; leave --class out to maximize its output"
        )
    if layer is None:
        k = run.num_classes or 1
        bad = [c for c in classes or [] if not 0 <= c < k]
        if bad:
            raise ConfigError(f"--class {bad[0]}: the classes are 0..{k - 1}")
        targets = list(classes) if classes else list(range(k))
    else:
        targets = list(classes) if classes else list(range(8))
    options = dict(options or {})
    check_kwargs(activation_maximization, options, "--option", fixed={"model": 0, "input_shape": 0,
                 "targets": 0, "layer": 0, "bounds": 0, "seed": 0})  # fmt: skip
    shape = tuple(run.info["input_shape"])
    x, _ = _split_tensors(run.data.train, 2048)
    if not x.is_floating_point():
        raise ConfigError("activation maximization needs real-valued inputs, not token ids")
    bounds = (x.min(0).values, x.max(0).values)  # each value within its training range
    try:
        vis = activation_maximization(
            run.model, shape, targets, layer, bounds=bounds, seed=seed, **options
        )
    except IndexError as exc:
        raise ConfigError(f"--class: {layer} has fewer channels than asked for ({exc})") from exc
    what = "class" if layer is None else f"{layer} channel"
    images = overlay.unscale(vis.images.cpu().numpy(), run.info.get("scaler"))
    lines, rows = [], []
    for t, a, b in zip(vis.targets, vis.start.tolist(), vis.end.tolist(), strict=True):
        lines.append(f"{what} {t}: activation {a:.3f} -> {b:.3f}")
        rows.append({"target": t, "start": _fmt(a), "end": _fmt(b)})
    files: dict[str, bytes | str] = {"summary.csv": csv_text(rows), "images.npy": _npy(images)}
    if len(shape) == 3:
        from deepworks.report.plots import image_grid

        titles = [
            f"{what} {t}\n{b:.2f}" for t, b in zip(vis.targets, vis.end.tolist(), strict=True)
        ]
        files["activation_max.png"] = overlay.png_bytes(
            image_grid(list(images), titles, title_color="#1f2937")
        )
    name = "activation_max" if layer is None else f"activation_max_{layer}"
    return _write(run, _out_dir(run, name, out), files, lines)


def _write(run: Loaded, folder: Path, files: dict[str, bytes | str], lines: list[str]) -> Written:
    """Write every file (all computed already), then record them in the run's manifest."""
    for name, content in files.items():
        if isinstance(content, str):
            atomic_write_text(folder / name, content)
        else:
            atomic_write_bytes(folder / name, content)
    RunDir(run.dir).record("explain", [folder / name for name in files])
    return Written(folder, sorted(files), lines)
