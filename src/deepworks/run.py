"""A run is a directory: ``train`` makes one, every later command reads one.

``runs/<name>/`` holds ``config.yaml`` (resolved, including the model's inferred sizes),
``data.json``, ``model.txt``, ``history.csv``/``.json``, ``metrics.json`` (flat keys such as
``test/accuracy``), ``evaluation.json`` (confusion matrix, per-class metrics),
``predictions.npz``, ``checkpoints/{best,last}/`` and ``report.html``.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepworks.config import RunConfig, dump_config, load_config, read_yaml, validate
from deepworks.data.bundle import DataBundle, Split
from deepworks.data.pipeline import load_dataset
from deepworks.errors import CheckpointError, ConfigError, DeepworksError
from deepworks.models.base import Model
from deepworks.registry import MODELS, TASKS, accepted_kwargs
from deepworks.tasks.base import Task
from deepworks.train.checkpoint import CheckpointDir, load_checkpoint
from deepworks.train.trainer import EvalResult, FitResult, Trainer
from deepworks.utils import atomic_write_bytes, atomic_write_text, new_run_dir, seed_everything


@dataclass
class Run:
    """A finished (or loaded) run: its directory, config, metrics, model and history."""

    dir: Path
    config: RunConfig
    metrics: dict[str, float]
    model: torch.nn.Module | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    fit: FitResult | None = None


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


def apply_pretrained(
    source: str, model: Model, run_dir: Path, warn: Any = None, info: Any = None
) -> Path:
    """Initialize ``model``'s backbone from ``source``: a run directory, or a YAML config that is
    first trained into ``<run_dir>/pretrained`` (so one command runs both stages); ``info`` is
    called with a line saying so."""
    from deepworks.transfer import load_backbone

    path = Path(source)
    if path.suffix in (".yaml", ".yml"):
        if info is not None:
            info(f"pretraining {path} into {run_dir / 'pretrained'}")
        path = train(path, out=run_dir / "pretrained", progress=False, warn=warn, info=info).dir
    elif not path.is_dir():
        raise ConfigError(
            f"model.pretrained: {source} is neither a run directory nor a YAML config"
        )
    load_backbone(model, path)
    return path


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


def train(
    config: str | Path | dict[str, Any] | RunConfig | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool | None = None,
    resume: str | Path | None = None,
    warn: Any = None,
    callbacks: list[Any] | None = None,
    info: Any = None,
) -> Run:
    """Train from a config: data → model → Trainer.fit → test metrics → run directory + report.

    Args:
        config: A YAML path, a dict or a RunConfig (not needed with ``resume``).
        overrides: ``["train.epochs=5"]`` or ``{"train.epochs": 5}``.
        out: Parent folder of the run directory (default: the config's ``out``).
        progress: Show the progress bar (default: the config's ``train.progress``).
        resume: A run directory to continue from its newest valid checkpoint.
        warn: Called with a line for each checkpoint skipped on resume (default: ignore).
        callbacks: Callback objects added to the configured ones (e.g. a ``Profiler``).
        info: Called with a line for each expected step worth telling (e.g. pretraining the
            ``model.pretrained`` config first; default: ignore).

    Example:
        >>> run = train("examples/digits_mlp.yaml", overrides={"train.epochs": 5})
        >>> run.metrics["test/accuracy"], run.dir
    """
    checkpoint = None
    if resume is not None:
        if config is not None:
            raise ConfigError("give a config or --resume RUN, not both (a run keeps its config)")
        run_dir = Path(resume)
        cfg = load_config(load_run_config(run_dir), overrides)
        try:
            checkpoint = CheckpointDir(run_dir / "checkpoints").newest_valid(warn)
        except CheckpointError:
            if not (run_dir / "pretrain").is_dir():
                raise
            # stopped during unsupervised pretraining: its finished stages are picked up again
            if warn is not None:
                warn(f"no checkpoint yet: continuing the pretraining in {run_dir / 'pretrain'}")
    else:
        if config is None:
            raise ConfigError("no config given: pass a YAML run config, or --resume RUN")
        cfg = load_config(config, overrides)
    if progress is not None:
        cfg.train.progress = progress
    if out is not None and resume is None:
        cfg.out = str(out)
    seed_everything(cfg.seed)
    data = build_data(cfg)
    task = build_task(cfg)
    model = build_model(cfg, data, task)
    # the Trainer checks the device before anything is written
    trainer = Trainer(cfg.train, seed=cfg.seed, callbacks=callbacks)
    if resume is None:
        run_dir = new_run_dir(cfg.out, cfg.name)
    trainer.run_dir = run_dir
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    info = data.describe() | {"scaler": data.scaler, "class_names": data.class_names}
    info |= {"feature_names": data.feature_names, "extras": json_extras(data.extras)}
    _write_json(run_dir / "data.json", info)
    n_params = sum(p.numel() for p in model.parameters())
    atomic_write_text(run_dir / "model.txt", f"{model}\n\nparameters: {n_params:,}\n")

    try:
        if cfg.model.pretrained and checkpoint is None:
            apply_pretrained(cfg.model.pretrained, model, run_dir, warn, info=info)
        if hasattr(model, "unsupervised_pretrain") and checkpoint is None:
            # e.g. a deep belief network's greedy layer-wise RBM pretraining
            model.unsupervised_pretrain(data, run_dir=run_dir, seed=cfg.seed, config=cfg.train)
        fit = trainer.fit(model, data, task, resume=checkpoint)
    except DeepworksError:
        if resume is None and trainer.global_step == 0:  # failed while setting up: no run
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    metrics = {k: v for k, v in fit.metrics.items() if k.startswith("train/")}
    metrics["train/samples_per_s"] = fit.samples_per_s
    metrics["train/epochs"] = fit.epochs_run
    if fit.stop_reason:
        metrics["train/stopped_early"] = 1.0
    if fit.best:
        metrics[f"best/{fit.best['monitor']}"] = fit.best["value"]
        metrics["best/epoch"] = fit.best["epoch"]
    if data.val is not None:
        metrics |= trainer.validate(model, data).metrics
    if data.test is not None:
        result = trainer.test(model, data)
        metrics |= result.metrics
        write_evaluation(run_dir, result, data)
    _write_json(run_dir / "metrics.json", metrics)
    save_pictures(model, data, run_dir)
    task.save_pictures(model, data, run_dir)
    _write_json(run_dir / "task.json", task.state())
    write_report_safely(run_dir)
    return Run(run_dir, cfg, metrics, model, fit.history, fit)


def write_evaluation(run_dir: Path, result: EvalResult, data: DataBundle, split: str = "test"):
    """``evaluation.json`` (details) and ``predictions.npz`` (and inputs, for images)."""
    if result.details is not None:
        _write_json(run_dir / "evaluation.json", {"split": split} | result.details)
    arrays = dict(result.predictions)
    if data.is_image:
        arrays["x"] = getattr(data, split).x.numpy()
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(run_dir / "predictions.npz", buf.getvalue())


def save_pictures(model: torch.nn.Module, data: DataBundle, run_dir: Path) -> None:
    """Feature maps of the first conv layer for one held-out image, and the attention maps of
    attention models for two held-out inputs, for the report."""
    split = data.test or data.val or data.train
    conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if data.is_image and conv and hasattr(model, "first_conv") and isinstance(split, Split):
        from deepworks.report.vision import save_feature_maps

        save_feature_maps(model, split.x[:1], run_dir)
    if hasattr(model, "attention_maps"):  # transformers: heatmaps per layer and head
        from deepworks.report.attention import save_attention_maps

        save_attention_maps(model, data, run_dir)


def write_report_safely(run_dir: Path) -> Path | None:
    from deepworks.report import write_report

    return write_report(run_dir)


# --- reading runs back ---------------------------------------------------------------------


def load_run_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory; pass a folder made by train")
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.yaml)")
    return validate(RunConfig, read_yaml(path), str(path))


def checkpoint_dir(run_dir: Path, which: str = "best") -> Path:
    for name in (which, "last"):
        path = run_dir / "checkpoints" / name
        if path.is_dir():
            return path
    raise CheckpointError(f"{run_dir}: the run has no checkpoints; it did not finish an epoch")


def load_run(run_dir: str | Path, which: str = "best") -> tuple[RunConfig, Model, Task]:
    """Rebuild a run's model (weights from ``checkpoints/<which>``) and task."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    model = MODELS.build(cfg.model.name, cfg.model.kwargs, where=f"{run_dir}/config.yaml: model")
    tensors, _ = load_checkpoint(checkpoint_dir(run_dir, which))
    try:
        model.load_state_dict(tensors["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{run_dir}: the checkpoint does not fit the model config") from exc
    task = build_task(cfg)
    task_state = run_dir / "task.json"
    if task_state.is_file():
        task.load_state(json.loads(task_state.read_text()))
    return cfg, model, task


def evaluate(run_dir: str | Path, split: str = "test", which: str = "best") -> dict[str, float]:
    """Re-evaluate a run's saved model on its (re-created, identical) data split."""
    cfg, model, task = load_run(run_dir, which)
    data = build_data(cfg)
    trainer = Trainer(cfg.train.model_copy(update={"progress": False}), seed=cfg.seed)
    trainer.task = task
    task.setup(data, cfg.train.loss, trainer.device, model)
    result = trainer._eval_split(model, data, split, None)
    return result.metrics


def predict(run_dir: str | Path, x: np.ndarray | torch.Tensor, which: str = "best"):
    """Predictions of a run's model for raw inputs (scaled with the run's training scaler)."""
    from deepworks.data.bundle import apply_scaler

    run_dir = Path(run_dir)
    cfg, model, task = load_run(run_dir, which)
    info = json.loads((run_dir / "data.json").read_text())
    expected = tuple(info["input_shape"])
    shape = tuple(np.shape(x)[1:])
    if shape != expected:
        raise DeepworksError(f"input has samples of shape {shape}, the model expects {expected}")
    if not (isinstance(x, torch.Tensor) and not x.is_floating_point()):  # token ids stay ids
        x = apply_scaler(x, info.get("scaler"))
    trainer = Trainer(cfg.train.model_copy(update={"progress": False}), seed=cfg.seed)
    trainer.task = task
    return trainer.predict(model, x), info
