"""Run configs: YAML + ``--set`` overrides, dump round-trip, one-line errors with choices and a
close match, and component checks before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import deepworks as dw
from deepworks.config import (
    EarlyStoppingConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    dump_config,
    load_config,
    parse_overrides,
    read_yaml,
)
from deepworks.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

BASE = {
    "name": "t",
    "seed": 1,
    "data": {"name": "iris", "split": {"val": 0.1, "test": 0.2}},
    "model": {"name": "mlp", "hidden": [16]},
    "task": {"name": "classification"},
    "train": {"epochs": 2, "batch_size": 8},
}


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False))
    return path


def error(source, overrides=None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(source, overrides)
    message = str(err.value)
    assert "\n" not in message
    return message


# --- loading and overrides -------------------------------------------------------------------


def test_load_yaml_with_overrides(config_file):
    before = config_file.read_text()
    cfg = load_config(config_file, ["train.epochs=3", "model.hidden=[8,4]"])
    assert isinstance(cfg, RunConfig)
    assert cfg.train.epochs == 3 and cfg.model.kwargs == {"hidden": [8, 4]}
    assert cfg.train.batch_size == 8 and cfg.data.name == "iris" and cfg.seed == 1
    assert config_file.read_text() == before  # the file is never modified
    same = load_config(config_file, {"train.epochs": 3, "model.hidden": [8, 4]})
    assert same == cfg


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    path = tmp_path / "min.yaml"
    path.write_text("data: {name: wine}\nmodel: {name: mlp}\n")
    cfg = load_config(path)
    assert cfg.data.name == "wine"
    assert cfg.train == TrainConfig() and cfg.model.name == "mlp" and cfg.name == "run"
    assert cfg.train.optimizer.name == "adam" and cfg.train.optimizer.lr == 1e-3


def test_override_values_are_parsed_as_yaml():
    cfg = load_config(
        BASE,
        [
            "train.optimizer.lr=0.05",
            "train.checkpoint=null",
            "data.stratify=false",
            "name=my run",
            "model.dropout=0.25",
        ],
    )
    assert cfg.train.optimizer.lr == 0.05 and cfg.train.checkpoint is None
    assert cfg.data.stratify is False and cfg.name == "my run"
    assert cfg.model.kwargs["dropout"] == 0.25


def test_nested_overrides_create_sections():
    cfg = load_config(
        BASE,
        [
            "train.early_stopping.patience=3",
            "train.scheduler.name=cosine",
            "train.loss.label_smoothing=0.1",
            "data.split.val=0.3",
        ],
    )
    assert cfg.train.early_stopping == EarlyStoppingConfig(patience=3)
    assert cfg.train.scheduler.name == "cosine"
    assert cfg.train.loss.kwargs == {"label_smoothing": 0.1}
    assert cfg.data.split.val == 0.3 and cfg.data.split.test == 0.2  # merged, not replaced
    assert BASE["data"]["split"] == {"val": 0.1, "test": 0.2}  # the source dict is untouched
    assert "early_stopping" not in BASE["train"]


def test_apply_overrides_on_plain_dicts():
    raw = {"a": {"b": 1}, "c": None}
    assert apply_overrides(raw, {"a.d.e": 2, "c.f": 3}) == {
        "a": {"b": 1, "d": {"e": 2}},
        "c": {"f": 3},
    }
    assert parse_overrides(["x.y=[1, 2]", "z= 0.5", "w="]) == {"x.y": [1, 2], "z": 0.5, "w": None}


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.epochs", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("model.hidden=[8,", "not valid YAML"),
        ("train.epochs.max=3", "'epochs' is a value"),
    ],
)
def test_bad_overrides(override, match):
    assert match in error(BASE, [override])


# --- dump round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_dump_round_trip_of_every_example(example, tmp_path):
    from deepworks.recipes.launch import load_config as load_any  # any recipe's schema

    _, cfg = load_any(EXAMPLES / example)
    text = dump_config(cfg)
    (tmp_path / "resolved.yaml").write_text(text)
    _, again = load_any(tmp_path / "resolved.yaml")
    assert again == cfg and again.model_dump() == cfg.model_dump()
    assert dump_config(again) == text
    assert list(yaml.safe_load(text)) == list(type(cfg).model_fields)  # schema order


def test_dump_keeps_component_arguments():
    cfg = load_config(BASE, ["train.scheduler.name=one_cycle", "train.scheduler.pct_start=0.2"])
    raw = yaml.safe_load(dump_config(cfg))
    assert raw["model"] == {"name": "mlp", "pretrained": None, "hidden": [16]}
    assert raw["train"]["scheduler"] == {"name": "one_cycle", "pct_start": 0.2}


def test_a_runs_resolved_config_loads_again(tmp_path):
    """config.yaml of a run holds the inferred in_features / num_classes; it must load again."""
    from deepworks.run import build_data, build_model, build_task

    cfg = load_config(BASE)
    data = build_data(cfg)
    build_model(cfg, data, build_task(cfg))  # what train() does before writing config.yaml
    resolved = tmp_path / "config.yaml"
    resolved.write_text(dump_config(cfg))
    again = load_config(resolved)
    assert again.model.kwargs["in_features"] == 4 and again.model.kwargs["num_classes"] == 3
    assert again == cfg


# --- one-line errors -------------------------------------------------------------------------


def test_unknown_key_suggests_the_close_one(config_file):
    message = error(BASE | {"train": {"epoch": 3}})
    assert message.startswith("config: train.epoch: unknown key; did you mean 'epochs'?")
    assert "(choices: epochs, max_steps, batch_size" in message
    message = error(config_file, ["data.split.vall=0.2"])
    assert message.startswith("--set data.split.vall=0.2: unknown key; did you mean 'val'?")
    assert "(choices: val, test)" in message
    assert "did you mean 'seed'" in error(BASE | {"sed": 3})
    assert "did you mean 'patience'" in error(BASE, ["train.early_stopping.patiense=2"])


def test_literal_choices_are_listed():
    message = error(BASE, ["train.precision=bf61"])
    assert "--set train.precision=bf61: 'bf61' is not allowed; did you mean 'bf16'?" in message
    assert "(choices: auto, fp32, bf16, fp16)" in message
    message = error(BASE, ["data.scale=standart"])
    assert "did you mean 'standard'?" in message and "minmax" in message


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.epochs=0", "train.epochs=0: 0 is invalid: input should be greater than or equal"),
        ("train.optimizer.lr=-0.1", "lr=-0.1: -0.1 is invalid: input should be greater"),
        ("data.split.val=1.5", "data.split.val=1.5: 1.5 is invalid: input should be less than 1"),
        ("train.batch_size=many", "train.batch_size=many: 'many' is not a valid integer"),
        ("train.accumulate=0", "train.accumulate=0: 0 is invalid"),
    ],
)
def test_out_of_range_and_wrong_type_values(override, match):
    assert match in error(BASE, [override])


def test_several_problems_are_counted_in_one_line():
    message = error(BASE, ["train.epochs=0", "train.batch_size=0"])
    assert "(and 1 more problem(s))" in message


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["model.hiden=[8]"], "--set model.hiden=[8]: unknown key 'hiden'; did you mean 'hidden'?"),
        (["model.name=mpl"], "--set model.name=mpl: 'mpl' is not a model; did you mean 'mlp'?"),
        (["data.name=iriss"], "did you mean 'iris'?"),
        (["train.optimizer.name=adamm"], "'adamm' is not an optimizer; did you mean 'adam'?"),
        (
            ["train.optimizer.name=sgd", "train.optimizer.momentun=0.9"],
            "--set train.optimizer.momentun=0.9: unknown key 'momentun'; did you mean 'momentum'?",
        ),
        (
            ["train.loss.name=cross_entropy", "train.loss.label_smothing=0.1"],
            "train.loss.label_smothing=0.1: unknown key 'label_smothing'; did you mean 'label_smoo",
        ),
        (["train.scheduler.name=cosin"], "did you mean 'cosine'?"),
        (["train.scheduler.name=cosine", "train.scheduler.eta_mim=0"], "did you mean 'eta_min'?"),
        (["task.top_kk=[2]"], "did you mean 'top_k'?"),
        (["train.callbacks=[{name: early_stoping}]"], "did you mean 'early_stopping'?"),
        (
            ["train.callbacks=[{name: lr_monitor, log_momentun: true}]"],
            "train.callbacks.0.log_momentun: unknown key; did you mean 'log_momentum'?",
        ),
    ],
)
def test_check_components_catches_bad_names_and_arguments(overrides, match):
    assert match in error(BASE, overrides)


def test_loss_arguments_are_checked_with_the_default_loss_too(tmp_path):
    assert "label_smothing" in error(BASE, ["train.loss.label_smothing=0.1"])


def test_bad_model_argument_fails_before_anything_runs(tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(ConfigError, match="hiden"):
        dw.train(BASE | {"model": {"name": "mlp", "hiden": [8]}}, out=out, progress=False)
    assert not out.exists()  # no run directory, no data loaded into it


@pytest.mark.parametrize(
    "text, match",
    [
        ("train: {epochs: 3\n", "not valid YAML at line"),
        ("- a\n- b\n", "must be a YAML mapping, got list"),
    ],
)
def test_bad_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    message = error(path)
    assert message.startswith(str(path)) and match in message
    assert "no such config file" in error(tmp_path / "missing.yaml")


def test_an_empty_file_is_not_the_default_config(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert read_yaml(path) == {}
    assert "no 'data' section; add e.g. data: {name: digits}" in error(path)


def test_relative_paths_in_a_config_file_resolve_from_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "pre.yaml").write_text("name: pre\n")
    (folder / "main.yaml").write_text(
        "name: main\ndata: {name: iris}\nmodel: {name: mlp, pretrained: pre.yaml}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(folder / "main.yaml")
    assert cfg.model.pretrained == str(folder / "pre.yaml")
    # a path that exists from the working directory keeps its meaning
    (elsewhere / "pre.yaml").write_text("name: other\n")
    assert load_config(folder / "main.yaml").model.pretrained == "pre.yaml"
