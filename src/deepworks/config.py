"""The schema of a run, loaded from YAML and overridable with ``--set key.path=value``.

A run config has seven top-level keys::

    name: digits_mlp
    seed: 0
    data:  {name: digits, split: {val: 0.1, test: 0.2}, scale: standard}
    model: {name: mlp, hidden: [128, 64], dropout: 0.1}
    task:  {name: classification}
    train: {epochs: 30, batch_size: 64, optimizer: {name: adam, lr: 0.001}}
    out: runs

Fixed keys are validated by pydantic; the open sections (``data``, ``model``, ``task``, the
optimizer, scheduler, loss and callbacks) take the keyword arguments of the component they name,
checked against its signature. Every problem becomes one :class:`ConfigError` line that names the
file, the key, the value, the choices and a close match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deepworks.errors import ConfigError, close_match


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Open(BaseModel):
    """A section naming a registered component; extra keys are that component's arguments."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="The registered name of the component.")

    @model_validator(mode="before")
    @classmethod
    def _name_shorthand(cls, value: Any) -> Any:
        """``model: mlp`` is short for ``model: {name: mlp}``."""
        return {"name": value} if isinstance(value, str) else value

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SplitConfig(Strict):
    val: float = Field(0.1, ge=0, lt=1, description="Fraction held out for validation.")
    test: float = Field(0.2, ge=0, lt=1, description="Fraction held out for the final test.")


class DataConfig(Open):
    name: str = Field("digits", description="A registered dataset (deepworks list datasets).")
    split: SplitConfig = Field(SplitConfig(), description="Fractions held out: val, test.")
    scale: Literal["standard", "minmax", "none"] = Field(
        "standard", description="Input scaling, fitted on the training split only."
    )
    imbalance: Literal["none", "oversample", "undersample"] = Field(
        "none", description="Resample the training split to balance the classes."
    )
    stratify: bool = Field(True, description="Keep class proportions equal across splits.")
    classes: list[int] | None = None  # keep only these classes (relabelled 0..k-1)
    train_per_class: int | None = Field(None, ge=1)  # few-label training: n samples per class
    # keep only these classes in the training split (normal data for anomaly detection);
    # validation and test keep every class
    train_classes: list[int] | None = None


class ModelConfig(Open):
    name: str = Field("mlp", description="A registered model (deepworks list models).")
    pretrained: str | None = None  # a run directory whose backbone weights initialize this model


class TaskConfig(Open):
    name: str = Field("classification", description="A registered task (deepworks list tasks).")


class OptimizerConfig(Open):
    name: str = Field("adam", description="A registered optimizer (deepworks list optimizers).")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay of weights (not biases).")


class SchedulerConfig(Open):
    pass


class LossConfig(Open):
    name: str | None = None  # None: the task's default (cross_entropy / mse)
    class_weights: Literal["balanced"] | list[float] | None = Field(
        None, description="Per-class loss weights: 'balanced' or one weight per class."
    )


class CallbackConfig(Open):
    pass


class AugmentConfig(Open):
    pass


class EarlyStoppingConfig(Strict):
    monitor: str = Field("val/loss", description="A declared metric, e.g. val/accuracy.")
    patience: int = Field(10, ge=1, description="Epochs without improvement before stopping.")
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="min, max, or auto: the metric's declared direction."
    )
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as better.")
    restore_best: bool = Field(True, description="Put the best epoch's weights back at the end.")


class CheckpointConfig(Strict):
    monitor: str = Field("val/loss", description="The metric that decides the best checkpoint.")
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="min, max, or auto: the metric's declared direction."
    )
    save_best: bool = Field(True, description="Keep the best checkpoint (the best link).")
    every_n_epochs: int | None = Field(
        1, ge=1, description="Save after every n-th epoch (null: never at epoch ends)."
    )
    every_n_steps: int | None = Field(
        None, ge=1, description="Also save every n optimizer steps, mid-epoch included."
    )
    keep_last: int = Field(2, ge=1, description="Newest checkpoints kept (best kept besides).")


class TrainConfig(Strict):
    epochs: int = Field(20, ge=1, description="Passes over the training split.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps.")
    batch_size: int = Field(64, ge=1, description="Samples per training step.")
    eval_batch_size: int | None = Field(
        None, ge=1, description="Samples per evaluation batch (null: max(batch_size, 256))."
    )
    loader: Literal["auto", "tensor", "dataloader"] = Field(
        "auto", description="Batching: tensor slicing (in-memory data) or a DataLoader."
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (lazy data).")
    optimizer: OptimizerConfig = Field(OptimizerConfig(), description="The optimizer.")
    scheduler: SchedulerConfig | None = Field(None, description="A learning-rate schedule.")
    loss: LossConfig = Field(LossConfig(), description="The loss (default: the task's).")
    # None: the model's default (recurrent models clip at 1.0, others not); 0: never clip
    grad_clip_norm: float | None = Field(None, ge=0)
    grad_clip_value: float | None = Field(
        None, gt=0, description="Clip each gradient element to [-value, value]."
    )
    accumulate: int = Field(1, ge=1, description="Batches of gradients per optimizer step.")
    l1: float = Field(0.0, ge=0, description="L1 penalty on the weights, added to the loss.")
    l2: float = Field(0.0, ge=0, description="L2 penalty on the weights, added to the loss.")
    augment: list[AugmentConfig] = []  # batched transforms of training batches, on the device
    tta: Literal["none", "flip"] = "none"  # test-time augmentation at evaluation / predict
    freeze_backbone: bool = False  # feature extraction: train the head only
    backbone_lr: float | None = Field(None, gt=0)  # discriminative LR for the backbone
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 elsewhere."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="auto: CUDA, then MPS, then the CPU."
    )
    compile: bool = Field(False, description="Compile the model with torch.compile.")
    channels_last: bool | None = None  # None: on for models with a Conv2d (CPU and CUDA)
    deterministic: bool = Field(False, description="Deterministic kernels (slower).")
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="Stop when a metric stops improving."
    )
    ema: float | None = Field(None, gt=0, lt=1)  # EMA of the weights with this decay, e.g. 0.999
    checkpoint: CheckpointConfig | None = Field(
        CheckpointConfig(), description="When to checkpoint (null: never)."
    )
    callbacks: list[CallbackConfig] = Field([], description="More callbacks, by name.")
    on_nonfinite: Literal["stop", "skip_batch", "raise"] = Field(
        "stop", description="What a NaN/Inf loss or gradient does."
    )
    # steps between host reads of the NaN/Inf check; None: 1 on the CPU, log_every_n_steps else
    check_finite_every: int | None = Field(None, ge=1)
    val_metrics: Literal["quick", "full"] = "quick"  # per-epoch validation: headline metrics
    log_every_n_steps: int = Field(50, ge=1, description="Steps between progress updates.")
    progress: bool = Field(True, description="Show the progress bar.")


class RecipeConfig(Strict):
    """The keys every run config has, whatever its recipe; a recipe's schema adds its sections."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")  # a plain folder name
    seed: int = Field(0, description="Seed of the split, the weights and every random stream.")
    recipe: str = Field("supervised", description="The kind of run (deepworks list recipes).")
    out: str = Field("runs", description="Parent folder of the run directory.")


class RunConfig(RecipeConfig):
    """The ``supervised`` recipe's run: data → model → Trainer over a task."""

    data: DataConfig = Field(DataConfig(), description="The dataset and its splits.")
    model: ModelConfig = Field(ModelConfig(), description="The model and its options.")
    task: TaskConfig = Field(TaskConfig(), description="What a training step means.")
    train: TrainConfig = Field(TrainConfig(), description="The training loop.")


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) pydantic model reached by ``loc``, for 'did you mean'."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return list(model.model_fields)
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return list(model.model_fields)
        model = nested[0]
    return list(model.model_fields)


class Sources:
    """Where each key of a config came from: the file, or a ``--set`` override as typed, so that
    an error blames what the user wrote (``--set train.epochs=abc: ...``, ``my.yaml: model: ...``).

    Args:
        where: The config file (or "config" for a dict).
        overrides: {dotted key: how the override was written, e.g. "--set train.epochs=abc"}.
    """

    def __init__(self, where: str, overrides: dict[str, str] | None = None):
        self.where, self.overrides = where, dict(overrides or {})

    def override(self, key: str) -> str | None:
        """The override that set ``key`` or a section above it; None when the file did."""
        if key in self.overrides:
            return self.overrides[key]
        parents = [k for k in self.overrides if key.startswith(k + ".")]
        return f"{self.overrides[max(parents, key=len)]}: {key}" if parents else None

    def __call__(self, key: str) -> str:
        """The start of an error line about ``key``."""
        return self.override(key) or (f"{self.where}: {key}" if self.where else key)


def override_sources(overrides: list[str] | dict[str, Any] | None) -> dict[str, str]:
    """{dotted key: the override as the user wrote it} for :class:`Sources`."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return {k: f"overrides[{k!r}]" for k in overrides}
    return {item.partition("=")[0].strip(): f"--set {item}" for item in overrides}


# pydantic error types of a value of the wrong kind, and the word a user knows for the kind
TYPE_WORDS = {
    "int_parsing": "integer",
    "int_type": "integer",
    "int_from_float": "integer",
    "float_parsing": "number",
    "float_type": "number",
    "bool_parsing": "boolean (true or false)",
    "bool_type": "boolean (true or false)",
    "string_type": "string",
}


def format_validation_error(
    exc: ValidationError, schema: type[BaseModel], where: str, sources: Sources | None = None
) -> str:
    """The first pydantic error as one line: file (or override), dotted key, value, problem,
    choices, hint."""
    errors = exc.errors()
    err = errors[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc)
    prefix = sources(key) if sources is not None else (f"{where}: {key}" if where else key)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if err["type"] == "extra_forbidden":
        choices = _fields_at(schema, loc[:-1])
        hint = close_match(str(loc[-1]), choices)
        did_you_mean = f"; did you mean '{hint}'?" if hint else ""
        return f"{prefix}: unknown key{did_you_mean} (choices: {', '.join(choices)}){more}"
    value = err.get("input")
    shown = f" {value!r}" if not isinstance(value, dict | list) else ""
    msg = err["msg"]
    if err["type"] in TYPE_WORDS:  # 'abc' is not a valid integer (unable to parse string ...)
        _, _, detail = msg.partition(", ")
        what = shown or f" a {type(value).__name__}"
        detail = f" ({detail})" if detail else ""
        return f"{prefix}:{what} is not a valid {TYPE_WORDS[err['type']]}{detail}{more}"
    if err["type"] == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        options = [o.strip(" '") for o in expected.replace(" or ", ", ").split(",")]
        hint = close_match(str(value), options)
        did_you_mean = f"; did you mean '{hint}'?" if hint else ""
        return (
            f"{prefix}:{shown} is not allowed{did_you_mean} (choices: {', '.join(options)}){more}"
        )
    return f"{prefix}:{shown} is invalid: {msg[0].lower() + msg[1:]}{more}"


def parse_overrides(overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``["train.epochs=5", "model.hidden=[32]"]`` or a dict → {dotted key: parsed value}."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
        try:
            parsed[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--set {item!r}: the value is not valid YAML ({exc.problem})"
            ) from exc
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set each dotted key in a nested dict, creating sections as needed."""
    for dotted, value in overrides.items():
        node = raw
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: '{part}' is a value ({child!r}), not a section")
            node = child
        node[parts[-1]] = value
    return raw


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors for a missing, unreadable or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; pass the path of a YAML run config")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        tab = _tab_line(text, mark, problem)
        if tab is not None:
            raise ConfigError(
                f"{path}: not valid YAML: line {tab} has a tab; YAML indents with spaces, not tabs"
            ) from exc
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a run config must be a YAML mapping, got {type(raw).__name__}")
    return raw


def _tab_line(text: str, mark: Any, problem: str) -> int | None:
    """The first line up to the YAML error that is indented with a tab, if the tab is the cause."""
    lines = text.splitlines()
    last = mark.line + 1 if mark is not None else len(lines)
    for number, line in enumerate(lines[:last], 1):
        if "\t" in line[: len(line) - len(line.lstrip(" \t"))]:
            return number
    if mark is not None and "'\\t'" in problem:  # PyYAML: "found character '\\t' that cannot ..."
        return mark.line + 1
    return None


def validate(
    schema: type[BaseModel], raw: dict[str, Any], where: str = "", sources: Sources | None = None
) -> Any:
    """Validate ``raw`` against ``schema``, turning pydantic errors into one ConfigError line."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, schema, where, sources)) from exc


# A supervised run must say what it learns from and with what: defaults fill in fields, never a
# whole section the user did not write. (section, the smallest example of it)
REQUIRED_SECTIONS = (("data", "data: {name: digits}"), ("model", "model: {name: mlp}"))


def check_required_sections(raw: dict[str, Any], where: str = "") -> None:
    """Raise a :class:`ConfigError` when ``raw`` has no ``data`` or ``model`` section, or one
    without a ``name``: an empty file must not train a default model on default data."""
    pre = f"{where}: " if where else ""
    for key, example in REQUIRED_SECTIONS:
        section = raw.get(key)
        if section is None:
            raise ConfigError(f"{pre}the config has no {key!r} section; add e.g. {example}")
        if isinstance(section, dict) and not section.get("name"):
            raise ConfigError(f"{pre}{key}: the section has no 'name'; add e.g. {example}")


def load_config(
    source: str | Path | dict[str, Any] | RunConfig,
    overrides: list[str] | dict[str, Any] | None = None,
) -> RunConfig:
    """Load a run config from a YAML path or dict, apply overrides, validate and check names.

    Example:
        >>> cfg = load_config("examples/digits_mlp.yaml", ["train.epochs=5"])
    """
    raw, where, sources = read_config(source, overrides)
    config = validate(RunConfig, raw, where, sources)
    if raw.get("recipe") in (None, "supervised"):
        check_required_sections(raw, where)
    check_components(config, where, sources)
    return config


def read_config(
    source: str | Path | dict[str, Any] | BaseModel,
    overrides: list[str] | dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str, Sources]:
    """A config as a plain dict with the overrides applied, before any schema: (raw, where the
    file is, which keys came from ``--set``). A recipe validates it against its own schema."""
    if isinstance(source, BaseModel):
        source = source.model_dump()
    if isinstance(source, dict):
        raw, where = _expand_shorthands(_deep_copy(source)), "config"
    else:
        raw, where = _expand_shorthands(read_yaml(source)), str(source)
        _resolve_paths(raw, Path(source).parent)
    sources = Sources(where, override_sources(overrides))
    raw = apply_overrides(raw, parse_overrides(overrides))
    return raw, where, sources


# sections that may be written as a bare name (``model: mlp`` for ``model: {name: mlp}``), so that
# ``--set model.hidden=[8]`` can add to them
SHORTHAND_SECTIONS = (
    ("data",),
    ("model",),
    ("task",),
    ("train", "optimizer"),
    ("train", "scheduler"),
    ("train", "loss"),
)


def _expand_shorthands(raw: dict[str, Any]) -> dict[str, Any]:
    for *parents, key in SHORTHAND_SECTIONS:
        node: Any = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(key), str):
            node[key] = {"name": node[key]}
    return raw


PATH_KEYS = (("model", "pretrained"), ("data", "path"))


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """A relative path in a config file that does not exist from the working directory but does
    from the file's own folder is taken from there (so example configs run from anywhere)."""
    for section, key in PATH_KEYS:
        part = raw.get(section)
        value = part.get(key) if isinstance(part, dict) else None
        if not isinstance(value, str) or not value or Path(value).is_absolute():
            continue
        if not Path(value).exists() and (base / value).exists():
            part[key] = str(base / value)


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


SCHED_FIXED = ("optimizer", "steps_per_epoch", "epochs")


def check_components(config: RunConfig, where: str = "", sources: Sources | None = None) -> None:
    """Check every registered name and its arguments before anything runs.

    ``sources`` says which keys came from ``--set`` overrides, so that their errors name them.
    """
    from deepworks.registry import (
        AUGMENTATIONS,
        CALLBACKS,
        DATASETS,
        LOSSES,
        MODELS,
        OPTIMIZERS,
        SCHEDULERS,
        TASKS,
        check_kwargs,
    )

    pre = f"{where}: " if where else ""
    sources = sources if sources is not None else Sources(where)
    t = config.train
    task = TASKS.get(config.task.name, where=sources("task.name"))
    loss_name = t.loss.name or (getattr(task, "losses", None) or (None,))[0]
    sections = [
        (DATASETS, config.data.name, config.data, "data", ()),
        (MODELS, config.model.name, config.model, "model", ()),
        (TASKS, config.task.name, config.task, "task", ()),
        (OPTIMIZERS, t.optimizer.name, t.optimizer, "train.optimizer", ("params", "lr")),
    ]
    if t.scheduler is not None:
        sections.append((SCHEDULERS, t.scheduler.name, t.scheduler, "train.scheduler", SCHED_FIXED))
    if loss_name is not None:
        sections.append((LOSSES, loss_name, t.loss, "train.loss", ("weight",)))
    for i, cb in enumerate(t.callbacks):
        sections.append((CALLBACKS, cb.name, cb, f"train.callbacks.{i}", ()))
    for i, aug in enumerate(t.augment):
        sections.append((AUGMENTATIONS, aug.name, aug, f"train.augment.{i}", ("num_classes",)))
    for registry, name, section, key, fixed in sections:
        factory = registry.get(name, where=sources(f"{key}.name"))
        own = tuple(type(section).model_fields)

        def blame(kwarg: str, key: str = key) -> str | None:
            return sources.override(f"{key}.{kwarg}")

        fixed_kwargs = dict.fromkeys(fixed)
        check_kwargs(factory, section.kwargs, f"{pre}{key}", fixed_kwargs, also=own, blame=blame)
    check_monitors = getattr(task, "check_monitors", None)
    if check_monitors is not None:  # monitors the task declares no metric for (Task.metrics)
        check_monitors(t, sources)


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, in schema order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
