"""Reading a supervised run back: its data, task and model, the checkpoint it is graded on.

``deepworks train`` (the ``supervised`` recipe, ``deepworks.recipes``) makes the run directory;
``evaluate``, ``predict``, ``sample``, ``explain``, ``attack``, ``audit`` and ``embed`` rebuild
its identical data split and its model from it with the functions here, and a later run takes
its backbone from it (:func:`load_backbone`, ``model.pretrained``).

``runs/<name>/`` holds ``config.yaml`` (resolved, including the model's inferred sizes),
``data.json``, ``model.txt``, ``history.csv``/``.json``, ``metrics.json`` (flat keys such as
``test/accuracy``), ``evaluation.json`` (confusion matrix, per-class metrics),
``predictions.npz``, ``checkpoints/{best,last}/`` and ``report.html``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepworks.config import RunConfig
from deepworks.data.bundle import DataBundle
from deepworks.data.pipeline import load_dataset
from deepworks.data.text.tokenizers import tokenizer_from_dict
from deepworks.errors import CheckpointError, DeepworksError
from deepworks.generate import sample_text
from deepworks.models.base import Model
from deepworks.registry import MODELS, TASKS, accepted_kwargs
from deepworks.rundir import CHECKPOINTS, EVALUATION, PREDICTIONS, RunDir
from deepworks.tasks.base import Task
from deepworks.train.checkpoint import (
    checkpoint_info,
    load_checkpoint,
    load_weights,
)
from deepworks.train.trainer import EvalResult, Trainer
from deepworks.utils import atomic_write_text


def build_data(config: RunConfig) -> DataBundle:
    d = config.data
    return load_dataset(
        d.name,
        split=d.split.model_dump(),
        seed=config.seed,
        scale=d.scale,
        imbalance=d.imbalance,
        stratify=d.stratify,
        classes=d.classes,
        train_per_class=d.train_per_class,
        train_classes=d.train_classes,
        **d.kwargs,
    )


def build_task(config: RunConfig) -> Task:
    return TASKS.build(config.task.name, config.task.kwargs, where="task")


def data_kwargs(data: DataBundle, num_outputs: int) -> dict[str, Any]:
    """Sizes a model can take from its data: flat width, channels, image size, outputs, and the
    data's own ``model_sizes`` (vocabulary size, padding id, forecast horizon, ...)."""
    sizes: dict[str, Any] = {"in_features": data.num_features, "num_classes": num_outputs}
    sizes |= data.model_sizes
    if len(data.input_shape) == 3:
        sizes["in_channels"] = data.input_shape[0]
        sizes["image_size"] = list(data.input_shape[1:])
    return sizes


def build_model(config: RunConfig, data: DataBundle, task: Task) -> Model:
    """The configured model, its sizes (``in_features``, ``in_channels``, ``image_size``,
    ``num_classes``) filled in from the data where it takes them and the config leaves them out.
    (``model.pretrained`` is applied later, by :func:`apply_pretrained`.)"""
    kwargs = dict(config.model.kwargs)
    factory = MODELS.get(config.model.name, where="model.name")
    accepted, _ = accepted_kwargs(factory)
    for key, value in data_kwargs(data, task.num_outputs(data, config.train.loss)).items():
        if key in accepted:
            kwargs.setdefault(key, value)
    model = MODELS.build(config.model.name, kwargs, where="model")
    resolved = {"name": config.model.name, "pretrained": config.model.pretrained}
    config.model = config.model.model_validate(resolved | _plain(model))
    return model


def json_extras(extras: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``DataBundle.extras`` that JSON can hold."""
    kept = {}
    for key, value in extras.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        kept[key] = value
    return kept


def _plain(model: torch.nn.Module) -> dict[str, Any]:
    return model.get_config() if hasattr(model, "get_config") else {}


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=float))


def grade_checkpoint(run_dir: Path, model: torch.nn.Module) -> dict[str, Any] | None:
    """Load the checkpoint a run is graded on into ``model`` and say which it is.

    The rule, the same for ``train``, ``evaluate``, ``predict``, ``explain``, ``attack`` and
    ``audit``: a run is graded on ``checkpoints/best`` (the best epoch by
    ``train.checkpoint.monitor``), or on ``checkpoints/last`` when it saved no best. A run that
    wrote no checkpoint (``train.checkpoint: null``) is graded on its final weights (None).
    """
    try:
        path = checkpoint_dir(run_dir, "best")
    except CheckpointError:
        return None
    load_weights(path, model)
    return checkpoint_info(path) | {"link": path.name}


def write_evaluation(
    run_dir: Path,
    result: EvalResult,
    data: DataBundle,
    split: str = "test",
    graded: dict[str, Any] | None = None,
):
    """``evaluation.json`` (details, and the checkpoint graded) and ``predictions.npz`` (and
    inputs, for images)."""
    if result.details is not None:
        head = {"split": split, "checkpoint": graded or "final weights"}
        _write_json(run_dir / EVALUATION, head | result.details)
    arrays = dict(result.predictions)
    if data.is_image:
        arrays["x"] = getattr(data, split).x.numpy()
    RunDir(run_dir).write_npz(PREDICTIONS, arrays)


# --- reading runs back ---------------------------------------------------------------------


def load_run_config(run_dir: str | Path | RunDir) -> RunConfig:
    """The validated ``config.yaml`` of a run directory (see :meth:`RunDir.open`)."""
    return RunDir.open(run_dir).config()


def checkpoint_dir(run_dir: str | Path | RunDir, which: str = "best") -> Path:
    """``checkpoints/<which>`` of a run (``best`` falls back to ``last``)."""
    return RunDir(run_dir).checkpoint(which)


def graded_info(run_dir: str | Path, which: str = "best") -> dict[str, Any]:
    """Which checkpoint ``load_run(run_dir, which)`` loads: ``{"link": "best", "checkpoint":
    "step-00000120", "step": 120, "epoch": 5, "epoch_done": True}`` (``best`` falls back to
    ``last`` when the run saved no best)."""
    path = checkpoint_dir(Path(run_dir), which)
    return checkpoint_info(path) | {"link": path.name}


def load_run(run_dir: str | Path | RunDir, which: str = "best") -> tuple[RunConfig, Model, Task]:
    """Rebuild a run's model (weights from ``checkpoints/<which>``) and task."""
    run = RunDir.open(run_dir)
    cfg = run.config()
    model = MODELS.build(cfg.model.name, cfg.model.kwargs, where=f"{run.config_path}: model")
    tensors, _ = load_checkpoint(run.checkpoint(which))
    try:
        model.load_state_dict(tensors["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{run.path}: the checkpoint does not fit the model config") from exc
    task = build_task(cfg)
    task.load_state(run.task_state())
    return cfg, model, task


def load_backbone(model: torch.nn.Module, source: str | Path) -> list[str]:
    """Load every backbone tensor of ``source`` (a run directory or checkpoint folder) whose
    name and shape match ``model``; returns the names loaded. The head stays as it is."""
    source = Path(source)
    ckpt = source
    for candidate in (source / CHECKPOINTS / "best", source / CHECKPOINTS / "last"):
        if candidate.exists():
            ckpt = candidate
            break
    tensors, _ = load_checkpoint(ckpt)
    if "model" not in tensors:
        raise CheckpointError(f"{ckpt}: no model.safetensors to take a backbone from")
    own = model.state_dict()
    loaded = {
        k: v
        for k, v in tensors["model"].items()
        if not k.startswith("head.") and k in own and own[k].shape == v.shape
    }
    backbone_keys = [k for k in own if not k.startswith("head.")]
    if not loaded or len(loaded) < len(backbone_keys):
        missing = [k for k in backbone_keys if k not in loaded]
        raise CheckpointError(
            f"{source}: its weights do not fit this model's backbone (first mismatch: "
            f"{missing[0] if missing else 'none'}); use the same architecture and input size"
        )
    with torch.no_grad():
        for k, v in loaded.items():
            own[k].copy_(v)
    return sorted(loaded)


def evaluate(run_dir: str | Path, split: str = "test", which: str = "best") -> dict[str, float]:
    """Re-evaluate a run's saved model on its (re-created, identical) data split."""
    cfg, model, task = load_run(run_dir, which)
    data = build_data(cfg)
    trainer = Trainer(cfg.train.model_copy(update={"progress": False}), seed=cfg.seed)
    trainer.task = task
    task.setup(data, cfg.train.loss, trainer.device, model)
    result = trainer.evaluate_split(model, data, split)
    graded = graded_info(run_dir, which)
    return result.metrics | {"graded/step": graded["step"], "graded/epoch": graded.get("epoch", -1)}


def predict(run_dir: str | Path, x: np.ndarray | torch.Tensor, which: str = "best"):
    """Predictions of a run's model for raw inputs (scaled with the run's training scaler)."""
    from deepworks.data.bundle import apply_scaler

    run = RunDir.open(run_dir)
    cfg, model, task = load_run(run, which)
    info = run.data_info()
    expected = tuple(info["input_shape"])
    shape = tuple(np.shape(x)[1:])
    if shape != expected:
        raise DeepworksError(f"input has samples of shape {shape}, the model expects {expected}")
    if not (isinstance(x, torch.Tensor) and not x.is_floating_point()):  # token ids stay ids
        x = apply_scaler(x, info.get("scaler"))
    trainer = Trainer(cfg.train.model_copy(update={"progress": False}), seed=cfg.seed)
    trainer.task = task
    return trainer.predict(model, x), info


def sample_run(
    run_dir: str | Path,
    prompt: str,
    max_new_tokens: int = 300,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = 0,
    which: str = "best",
) -> str:
    """Sample from the language model of a finished run (``deepworks sample RUN --prompt``).

    The tokenizer is the one the run was trained with (saved in its ``task.json``).
    """
    _, model, task = load_run(run_dir, which)
    saved = getattr(task, "tokenizer", None)
    if not saved:
        raise CheckpointError(f"{run_dir}: not a language-model run (no tokenizer saved)")
    tokenizer = tokenizer_from_dict(saved)
    return sample_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p, seed)
