"""The ``supervised`` recipe (the default): data → model → the Trainer over a task → test metrics.

The outer loop of every run whose config has ``data``, ``model``, ``task`` and ``train``:

1. build the data splits, the task and the model (sizes inferred from the data);
2. write ``config.yaml`` (resolved), ``data.json`` and ``model.txt``;
3. initialize the backbone from ``model.pretrained`` and run a model's layer-wise pretraining
   stages (a deep belief network's RBMs), on a fresh run only;
4. ``Trainer.fit`` (resumed from the newest valid checkpoint with ``--resume``);
5. grade the run on its ``best`` checkpoint (see :func:`deepworks.run.grade_checkpoint`):
   validation and test metrics, ``evaluation.json``, ``predictions.npz``, the report's pictures.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from deepworks.config import RunConfig, check_components, check_required_sections, dump_config
from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import CheckpointError, ConfigError, DeepworksError
from deepworks.models.base import Model
from deepworks.recipes.base import Recipe, RunContext, RunResult
from deepworks.recipes.launch import train
from deepworks.recipes.pretrain import layerwise_pretrain
from deepworks.registry import register_recipe
from deepworks.run import (
    build_data,
    build_model,
    build_task,
    grade_checkpoint,
    json_extras,
    write_evaluation,
)
from deepworks.rundir import CONFIG, DATA, METRICS, MODEL_TEXT, TASK_STATE, RunDir
from deepworks.train.checkpoint import CheckpointDir, checkpoint_info
from deepworks.train.trainer import Trainer, check_run_length
from deepworks.utils import seed_everything


@register_recipe("supervised")
class Supervised(Recipe):
    """Train a model on a task with the Trainer, then grade it on held-out data (default)."""

    config_class = RunConfig

    def __init__(self):
        self.checkpoint: Path | None = None  # where a resumed run continues from

    def check(self, config: RunConfig, raw: dict[str, Any], where: str, sources) -> None:
        check_required_sections(raw, where)
        check_components(config, where, sources)

    def check_resume(self, config: RunConfig, run_dir: Path, context: RunContext) -> None:
        try:
            self.checkpoint = CheckpointDir(RunDir(run_dir).checkpoints).newest_valid(context.warn)
        except CheckpointError:
            if not (run_dir / "pretrain").is_dir():
                raise
            # stopped during layer-wise pretraining: its finished stages are picked up again
            line = f"no checkpoint yet: continuing the pretraining in {run_dir / 'pretrain'}"
            context.tell(line, warning=True)
            return
        info = checkpoint_info(self.checkpoint)
        done = info.get("epoch", 0) + (1 if info.get("epoch_done") else 0)
        check_run_length(config.train, done, info["step"] or 0)  # before anything is written

    def run(self, config: RunConfig, run_dir: Path, context: RunContext) -> RunResult:
        cfg, rundir = config, RunDir(run_dir)
        if context.progress is not None:
            cfg.train.progress = context.progress
        seed_everything(cfg.seed)
        try:
            data = build_data(cfg)
            task = build_task(cfg)
            model = build_model(cfg, data, task)
            # the Trainer checks the device before training starts
            trainer = Trainer(cfg.train, seed=cfg.seed, callbacks=context.callbacks)
        except DeepworksError:
            if not context.resume:  # nothing was trained: no run
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        trainer.run_dir = run_dir
        rundir.write_text(CONFIG, dump_config(cfg))
        described = data.describe() | {"scaler": data.scaler, "class_names": data.class_names}
        described |= {"feature_names": data.feature_names, "extras": json_extras(data.extras)}
        rundir.write_json(DATA, described)
        n_params = sum(p.numel() for p in model.parameters())
        rundir.write_text(MODEL_TEXT, f"{model}\n\nparameters: {n_params:,}\n")

        try:
            if not context.resume or self.checkpoint is None:
                self._pretrain(cfg, model, data, run_dir, context)
            fit = trainer.fit(model, data, task, resume=self.checkpoint)
        except DeepworksError:
            if not context.resume and trainer.global_step == 0:  # failed while setting up
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
        graded = grade_checkpoint(run_dir, model)
        if graded is not None:
            metrics["graded/step"] = graded["step"]
            metrics["graded/epoch"] = graded.get("epoch", -1)
        if data.val is not None:
            metrics |= trainer.validate(model, data).metrics
        if data.test is not None:
            result = trainer.test(model, data)
            metrics |= result.metrics
            write_evaluation(run_dir, result, data, graded=graded)
        rundir.write_json(METRICS, metrics)
        save_pictures(model, data, run_dir)
        task.save_pictures(model, data, run_dir)
        rundir.write_json(TASK_STATE, task.state())
        return RunResult(run_dir, cfg, metrics, model, fit.history, fit, fit.stop_reason)

    def _pretrain(self, cfg: RunConfig, model: Model, data: DataBundle, run_dir, context) -> None:
        """``model.pretrained`` (a run directory, or a config trained first into
        ``<run>/pretrained``), then the model's own layer-wise pretraining stages, if any."""
        if cfg.model.pretrained:
            apply_pretrained(cfg.model.pretrained, model, run_dir, context)
        if isinstance(model, Model) and model.pretraining_layers():
            layerwise_pretrain(model, data, run_dir=run_dir, seed=cfg.seed, config=cfg.train)


def apply_pretrained(source: str, model: Model, run_dir: Path, context: RunContext) -> Path:
    """Initialize ``model``'s backbone from ``source``: a run directory, or a YAML config that is
    first trained into ``<run_dir>/pretrained`` (so one command runs both stages)."""
    from deepworks.run import load_backbone

    path = Path(source)
    if path.suffix in (".yaml", ".yml"):
        context.tell(f"pretraining {path} into {run_dir / 'pretrained'}")
        path = train(
            path,
            out=run_dir / "pretrained",
            progress=False,
            warn=context.warn,
            info=context.info,
        ).dir
    elif not path.is_dir():
        raise ConfigError(
            f"model.pretrained: {source} is neither a run directory nor a YAML config"
        )
    load_backbone(model, path)
    return path


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
