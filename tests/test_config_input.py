"""Config input that should say more: an empty file, shorthands, the source of a bad value
(the file or a ``--set``), model argument ranges and tabs — each a one-line error through the
real CLI (exit code 2, no traceback, no run directory), or a config that now loads."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

import deepworks as dw
from deepworks.config import check_required_sections, load_config
from deepworks.errors import ConfigError
from deepworks.registry import MODELS, accepted_kwargs, check_kwargs

TINY = {
    "name": "tiny",
    "data": {"name": "iris"},
    "model": {"name": "mlp", "hidden": [8]},
    "train": {"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu"},
}


def write(path: Path, config: dict | str) -> Path:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return path


def one_line_error(result, *needles: str) -> str:
    """Exit 2, one stderr line ``error: ...`` holding every needle, no traceback."""
    assert result.rc == 2, str(result)
    assert "Traceback" not in result.output, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} is not in: {lines[0]}"
    return lines[0]


@pytest.fixture
def train_fails(cli, tmp_path):
    """``train_fails(config_path, *args, needles=...)``: the error line; no run directory."""

    def run(config: Path, *args: str, needles=()) -> str:
        out = tmp_path / "runs"
        line = one_line_error(cli("train", config, "--out", out, "-q", *args), *needles)
        assert not out.exists(), "a failing train left a run directory"
        return line

    return run


# --- data and model must be written ---------------------------------------------------------


def test_an_empty_config_file_does_not_train_a_default_model(train_fails, tmp_path):
    empty = write(tmp_path / "my.yaml", "")
    train_fails(
        empty, needles=[f"{empty}: the config has no 'data' section", "data: {name: digits}"]
    )


def test_a_config_without_a_model_section(train_fails, tmp_path):
    config = write(tmp_path / "my.yaml", "data: {name: iris}\ntrain: {epochs: 1}\n")
    train_fails(config, needles=[f"{config}: the config has no 'model' section", "model: {name:"])


def test_a_section_without_a_name(train_fails, tmp_path):
    config = write(tmp_path / "my.yaml", "data: {split: {val: 0.2}}\nmodel: mlp\n")
    train_fails(config, needles=[f"{config}: data: the section has no 'name'"])


def test_dict_configs_follow_the_same_rule(tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(ConfigError, match="^config: the config has no 'model' section"):
        dw.train({"data": {"name": "iris"}, "train": {"epochs": 1}}, out=out, progress=False)
    with pytest.raises(ConfigError, match="no 'data' section"):
        load_config({})
    assert not out.exists()
    with pytest.raises(ConfigError, match="^my.yaml: the config has no 'data' section"):
        check_required_sections({"model": {"name": "mlp"}}, "my.yaml")


def test_the_task_and_every_field_still_default():
    cfg = load_config({"data": {"name": "iris"}, "model": {"name": "mlp"}})
    assert cfg.task.name == "classification" and cfg.name == "run" and cfg.train.epochs == 20
    # overrides may supply a section the file leaves out
    cfg = load_config({"model": {"name": "mlp"}}, ["data.name=wine"])
    assert cfg.data.name == "wine"


# --- shorthands: `model: mlp` is `model: {name: mlp}` -----------------------------------------


def test_open_sections_take_a_bare_name(tmp_path):
    path = write(
        tmp_path / "short.yaml",
        "data: iris\nmodel: mlp\ntask: classification\n"
        "train:\n  optimizer: sgd\n  scheduler: cosine\n  loss: cross_entropy\n"
        "  callbacks: [lr_monitor, {name: early_stopping, patience: 2}]\n",
    )
    cfg = load_config(path, ["model.hidden=[8]", "train.optimizer.lr=0.1"])
    assert (cfg.data.name, cfg.model.name, cfg.task.name) == ("iris", "mlp", "classification")
    assert cfg.model.kwargs == {"hidden": [8]}
    assert cfg.train.optimizer.name == "sgd" and cfg.train.optimizer.lr == 0.1
    assert cfg.train.scheduler.name == "cosine" and cfg.train.loss.name == "cross_entropy"
    assert [c.name for c in cfg.train.callbacks] == ["lr_monitor", "early_stopping"]
    assert cfg.train.callbacks[1].kwargs == {"patience": 2}
    augment = load_config({"data": "digits", "model": "mlp", "train": {"augment": ["flip"]}})
    assert augment.train.augment[0].name == "flip"
    assert load_config({"data": "iris", "model": "mlp"}) == load_config(
        {"data": {"name": "iris"}, "model": {"name": "mlp"}}
    )


def test_a_shorthand_config_trains_through_the_cli(cli, tmp_path):
    path = write(tmp_path / "short.yaml", "name: s\ndata: iris\nmodel: mlp\ntask: classification\n")
    out = tmp_path / "runs"
    result = cli(
        "train", path, "--out", out, "-q", "--set", "train.epochs=1", "--set", "model.hidden=[4]"
    )
    assert result.rc == 0, str(result)
    saved = yaml.safe_load((out / "s" / "config.yaml").read_text())
    assert saved["model"]["name"] == "mlp" and saved["model"]["hidden"] == [4]


def test_an_unknown_bare_name_is_still_named(train_fails, tmp_path):
    config = write(tmp_path / "my.yaml", "data: iris\nmodel: mlpp\n")
    train_fails(config, needles=[f"{config}: model.name: 'mlpp' is not a model", "'mlp'"])


# --- the source of a bad value: the file, or the --set that wrote it --------------------------


def test_a_bad_set_value_names_the_set_not_the_file(train_fails, tmp_path):
    config = write(tmp_path / "my.yaml", TINY)
    line = train_fails(
        config, "--set", "train.epochs=abc",
        needles=["error: --set train.epochs=abc: 'abc' is not a valid integer"],
    )  # fmt: skip
    assert "my.yaml" not in line


def test_the_file_stays_the_source_of_its_own_bad_values(train_fails, tmp_path):
    config = write(tmp_path / "my.yaml", TINY | {"train": {"epochs": "abc"}})
    line = train_fails(
        config, "--set", "train.batch_size=8",
        needles=[f"error: {config}: train.epochs: 'abc' is not a valid integer"],
    )  # fmt: skip
    assert "--set" not in line


@pytest.mark.parametrize(
    "override, needle",
    [
        ("model.hiden=[8]", "--set model.hiden=[8]: unknown key 'hiden'; did you mean 'hidden'?"),
        ("data.name=iriss", "--set data.name=iriss: 'iriss' is not a dataset; did you mean"),
        ("train.epochz=2", "--set train.epochz=2: unknown key; did you mean 'epochs'?"),
        ("model.dropout=2", "--set model.dropout=2: 2 is out of range (must be >= 0 and < 1)"),
        ("train.callbacks=[{name: lr_monitor, log_momentun: true}]",
         "train.callbacks.0.log_momentun: unknown key; did you mean 'log_momentum'?"),
    ],
)  # fmt: skip
def test_set_errors_of_every_kind_name_the_set(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(TINY, [override])
    assert needle in str(err.value)
    assert str(err.value).startswith(f"--set {override}")


def test_dict_overrides_are_named_too():
    with pytest.raises(ConfigError, match=r"^overrides\['train.epochs'\]: 'x' is not a valid"):
        load_config(TINY, {"train.epochs": "x"})


# --- model argument ranges, checked where the config is read --------------------------------


def test_dropout_out_of_range_names_the_file_and_key(train_fails, tmp_path):
    config = write(tmp_path / "my.yaml", TINY | {"model": {"name": "mlp", "dropout": 1.5}})
    train_fails(
        config,
        needles=[f"error: {config}: model.dropout: 1.5 is out of range (must be >= 0 and < 1)"],
    )


@pytest.mark.parametrize(
    "model, needle",
    [
        ({"name": "mlp", "hidden": [8, 0]}, "model.hidden: 0 (item 1) is out of range (must be >="),
        ({"name": "cnn", "kernel_size": 0}, "model.kernel_size: 0 is out of range (must be >= 1)"),
        ({"name": "cnn", "spatial_dropout": -0.1}, "model.spatial_dropout: -0.1 is out of range"),
        ({"name": "cnn", "channels": [8, -4]}, "model.channels: -4 (item 1) is out of range"),
        ({"name": "rnn", "num_layers": 0}, "model.num_layers: 0 is out of range (must be >= 1)"),
        ({"name": "vit", "num_heads": 0}, "model.num_heads: 0 is out of range (must be >= 1)"),
        ({"name": "gpt", "mlp_ratio": 0}, "model.mlp_ratio: 0 is out of range (must be > 0)"),
        ({"name": "transformer_encoder", "dim": 0}, "model.dim: 0 is out of range (must be >= 1)"),
        ({"name": "lenet", "padding": -1}, "model.padding: -1 is out of range (must be >= 0)"),
        ({"name": "dbn", "pretrain_momentum": 1.0}, "model.pretrain_momentum: 1.0 is out of range"),
    ],
)  # fmt: skip
def test_model_argument_ranges(model, needle):
    with pytest.raises(ConfigError) as err:
        load_config({"data": {"name": "digits"}, "model": model})
    assert str(err.value) == f"config: {needle}" or str(err.value).startswith(f"config: {needle}")


@pytest.mark.parametrize("name", MODELS.names())
def test_every_models_dropout_and_sizes_have_a_range(name):
    factory = MODELS.get(name)
    accepted, _ = accepted_kwargs(factory)
    defaults = {
        k: p.default
        for k, p in inspect.signature(factory.__init__).parameters.items()
        if k in accepted and p.default is not inspect.Parameter.empty
    }
    check_kwargs(factory, defaults, "model")  # the defaults are inside their own ranges
    for key in ("dropout", "spatial_dropout"):
        if key in accepted:
            with pytest.raises(ConfigError, match=rf"model.{key}: 1.0 is out of range"):
                check_kwargs(factory, {key: 1.0}, "model")
    for key in ("num_classes", "hidden_size", "num_layers", "num_heads", "dim", "depth"):
        if key in accepted and not (name == "gan" and key == "num_classes"):  # 0: unconditional
            with pytest.raises(ConfigError, match=rf"model.{key}: -1 is out of range"):
                check_kwargs(factory, {key: -1}, "model")


# --- YAML written with tabs -----------------------------------------------------------------


def test_a_tab_in_the_yaml_says_yaml_indents_with_spaces(train_fails, tmp_path):
    config = write(tmp_path / "my.yaml", "data: {name: iris}\nmodel:\n\tname: mlp\n")
    train_fails(
        config, needles=[f"{config}: not valid YAML: line 3 has a tab; YAML indents with spaces"]
    )


def test_other_yaml_errors_keep_their_line_and_problem(tmp_path):
    config = write(tmp_path / "my.yaml", "data: {name: iris\nmodel: mlp\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        load_config(config)
