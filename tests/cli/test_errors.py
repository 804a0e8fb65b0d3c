"""Bad input through the real ``deepworks`` script: one line, exit code 2, nothing damaged.

Every test runs a failing command and checks, as DESIGN.md "Errors" asks: the exit code is 2,
stderr is exactly one non-empty line starting with ``error:`` that names the offending file, key
or value (and a close match where there is one), no traceback is shown, and an existing run
directory (a copy of a trained run, with its checkpoints) is byte-for-byte unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml


def assert_one_line_error(result, *needles: str) -> str:
    """Exit 2, exactly one non-empty stderr line 'error: ...' containing every needle."""
    assert result.rc == 2, str(result)
    assert "Traceback" not in result.output, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr\n{result}"
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} is not named in: {line}"
    return line


@dataclass
class Guard:
    """An existing run (a private copy of the shared trained run) that must survive untouched."""

    run: Path
    out: Path  # the run's parent folder: failing `train` commands write (or not) here
    before: dict
    snapshot: object

    def assert_untouched(self, leaves_nothing: bool = True) -> None:
        if leaves_nothing:  # the run is intact and no (half-written) run directory appeared
            assert self.snapshot(self.out) == self.before
        else:
            prefix = self.run.name + "/"
            mine = {k[len(prefix) :]: v for k, v in self.before.items() if k.startswith(prefix)}
            assert self.snapshot(self.run) == mine


@pytest.fixture
def guard(run_copy, snapshot) -> Guard:
    return Guard(run_copy, run_copy.parent, snapshot(run_copy.parent), snapshot)


@pytest.fixture
def fails(cli, guard):
    """``fails(*args, needles=[...])``: run a failing command, check its error and the guard."""

    def run(*args, needles=(), leaves_nothing: bool = True) -> str:
        result = cli(*args)
        line = assert_one_line_error(result, *needles)
        guard.assert_untouched(leaves_nothing)
        return line

    return run


@pytest.fixture
def train_fails(fails, guard, tiny_config):
    """``train_fails(config, *extra, needles=[...])``: `train` into the guarded run's folder."""

    def run(*extra, config=None, needles=(), leaves_nothing: bool = True) -> str:
        args = ("train", config or tiny_config, "--out", guard.out, "-q", *extra)
        return fails(*args, needles=needles, leaves_nothing=leaves_nothing)

    return run


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the config file -----------------------------------------------------------------------


def test_missing_config_file(train_fails, tmp_path):
    missing = tmp_path / "missing.yaml"
    train_fails(config=missing, needles=[str(missing), "no such config file"])


def test_malformed_yaml_names_the_line(train_fails, tmp_path):
    bad = write(tmp_path / "bad.yaml", "name: x\nseed: 0\ntrain:\n\tepochs: 1\nout: runs\n")
    train_fails(config=bad, needles=[str(bad), "not valid YAML", "line 4"])


def test_config_that_is_a_list(train_fails, tmp_path):
    bad = write(tmp_path / "list.yaml", "- name: x\n- seed: 0\n")
    train_fails(config=bad, needles=[str(bad), "mapping", "list"])


def test_unknown_top_level_key(train_fails, tmp_path):
    bad = write(tmp_path / "typo.yaml", "name: x\ntrian: {epochs: 1}\n")
    train_fails(config=bad, needles=[str(bad), "trian", "unknown key", "did you mean 'train'"])


def test_unknown_key_in_the_file_names_the_file(train_fails, tmp_path, tiny_config):
    config = yaml.safe_load(tiny_config.read_text())
    config["model"]["hiden"] = [8]
    bad = write(tmp_path / "model_typo.yaml", yaml.safe_dump(config))
    train_fails(config=bad, needles=[str(bad), "'hiden'", "did you mean 'hidden'"])


# --- keys and values, through --set --------------------------------------------------------

SET_CASES = [
    pytest.param(
        ["train.epochz=1"],
        ["--set train.epochz=1", "unknown key", "did you mean 'epochs'"],
        id="unknown-nested-key",
    ),
    pytest.param(
        ["train.precision=fp8"],
        ["--set train.precision=fp8", "'fp8'", "choices", "fp32", "bf16"],
        id="bad-literal",
    ),
    pytest.param(["train.epochs=-1"], ["train.epochs", "-1", "greater than"], id="negative-epochs"),
    pytest.param(["train.batch_size=0"], ["train.batch_size", "0"], id="zero-batch-size"),
    pytest.param(
        ["train.optimizer.lr=fast"], ["train.optimizer.lr", "'fast'", "number"], id="lr-not-number"
    ),
    pytest.param(["seed=abc"], ["seed", "'abc'", "integer"], id="seed-not-integer"),
    pytest.param(["data.split.test=1.5"], ["data.split.test", "1.5"], id="split-fraction"),
    pytest.param(
        ["train.optimizer.name=adamm"],
        ["train.optimizer.name", "'adamm'", "not an optimizer", "did you mean 'adam'", "sgd"],
        id="unknown-optimizer",
    ),
    pytest.param(
        ["train.optimizer.momentum=0.9"],  # adam has betas, not momentum
        ["train.optimizer", "'momentum'", "betas"],
        id="optimizer-kwarg",
    ),
    pytest.param(
        ["model.name=mlpp"],
        ["model.name", "'mlpp'", "not a model", "did you mean 'mlp'"],
        id="unknown-model",
    ),
    pytest.param(
        ["model.hiden=[8]"], ["model", "'hiden'", "did you mean 'hidden'"], id="model-kwarg"
    ),
    pytest.param(
        ["data.name=digitz"],
        ["data.name", "'digitz'", "not a dataset", "did you mean 'digits'"],
        id="unknown-dataset",
    ),
    pytest.param(
        ["data.as_imgae=true", "data.name=digits"],
        ["data", "'as_imgae'", "did you mean 'as_image'"],
        id="unknown-dataset-option",
    ),
    pytest.param(
        ["data.sacle=minmax"],
        ["data", "'sacle'", "did you mean 'scale'"],
        id="typo-of-a-data-section-key",
    ),
    pytest.param(
        ["task.name=classifcation"],
        ["task.name", "'classifcation'", "did you mean 'classification'"],
        id="unknown-task",
    ),
    pytest.param(
        ["train.loss.name=crossentropy"],
        ["train.loss.name", "'crossentropy'", "not a loss", "did you mean 'cross_entropy'"],
        id="unknown-loss",
    ),
    pytest.param(
        ["train.loss.name=mse"],
        ["train.loss.name", "'mse'", "classification", "cross_entropy"],
        id="loss-does-not-fit-task",
    ),
    pytest.param(
        ["data.name=digits", "train.loss.name=bce"],
        ["train.loss.name", "'bce'", "digits", "10", "cross_entropy"],
        id="bce-on-10-classes",
    ),
    pytest.param(
        ["task.name=regression"],
        ["task.name", "'regression'", "breast_cancer", "classification"],
        id="regression-task-on-classes",
    ),
    pytest.param(
        ["train.scheduler.name=cosin"],
        ["train.scheduler.name", "'cosin'", "did you mean 'cosine'"],
        id="unknown-scheduler",
    ),
    pytest.param(
        ["train.callbacks=[{name: early_stop}]"],
        ["train.callbacks.0.name", "'early_stop'", "did you mean 'early_stopping'"],
        id="unknown-callback",
    ),
    pytest.param(["train.epochs"], ["--set", "train.epochs", "KEY=VALUE"], id="set-without-equals"),
    pytest.param(["=3"], ["--set", "'=3'", "KEY=VALUE"], id="set-without-key"),
    pytest.param(
        ["train.epochs.x=1"], ["train.epochs.x", "'epochs' is a value"], id="set-into-a-value"
    ),
    pytest.param(
        ["train.epochs=[1"], ["--set", "train.epochs=[1", "not valid YAML"], id="set-bad-yaml"
    ),
]


@pytest.mark.parametrize(("sets", "needles"), SET_CASES)
def test_bad_config_value(train_fails, sets, needles):
    extra = [arg for item in sets for arg in ("--set", item)]
    train_fails(*extra, needles=needles)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda(train_fails):
    # found before the run folder is made: no half-made run is left behind
    train_fails("--set", "train.device=cuda", needles=["train.device", "'cuda'", "cpu"])


# Errors in arguments that only the loss, optimizer or scheduler itself can check: they are found
# when training starts.
AT_FIT_START = [
    pytest.param(
        ["train.loss.class_weights=[1, 2, 3]"],
        ["train.loss.class_weights", "3 weights", "2 classes"],
        id="class-weights-count",
    ),
    pytest.param(
        ["train.scheduler={name: warmup, after: cosin}"],
        ["train.scheduler", "'cosin'", "cosine"],
        id="scheduler-argument",
    ),
]


@pytest.mark.parametrize(("sets", "needles"), AT_FIT_START)
def test_error_found_when_training_starts(train_fails, sets, needles):
    extra = [arg for item in sets for arg in ("--set", item)]
    train_fails(*extra, needles=needles, leaves_nothing=False)


@pytest.mark.parametrize(("sets", "needles"), AT_FIT_START)
def test_error_found_when_training_starts_leaves_no_half_made_run(train_fails, sets, needles):
    extra = [arg for item in sets for arg in ("--set", item)]
    train_fails(*extra, needles=needles)


def test_optimizer_betas_of_wrong_length(train_fails):
    train_fails(
        "--set", "train.optimizer.betas=[0.9]",
        needles=["train.optimizer", "betas"], leaves_nothing=False,
    )  # fmt: skip


def test_loss_argument_of_wrong_type(train_fails):
    train_fails(
        "--set", "train.loss={name: focal, gamma: abc}",
        needles=["train.loss", "gamma", "'abc'"], leaves_nothing=False,
    )  # fmt: skip


def test_run_name_cannot_escape_the_output_folder(train_fails, guard):
    try:
        train_fails("--set", "name=../escape", needles=["name", "'../escape'"])
    finally:
        assert not (guard.out.parent / "escape").exists()


def test_early_stopping_monitor_not_logged(train_fails):
    train_fails(
        "--set",
        "train.early_stopping={monitor: val/acc}",
        needles=["train.early_stopping.monitor", "'val/acc'", "val/accuracy"],
        leaves_nothing=False,  # found after the first epoch
    )


# --- the command line itself ---------------------------------------------------------------


def test_unknown_cli_option(train_fails):
    train_fails("--bogus", needles=["--bogus", "train"])


def test_unknown_command(fails, tiny_config):
    fails("trian", tiny_config, needles=["'trian'", "did you mean 'train'"])


def test_list_unknown_registry(fails):
    fails("list", "nonsense", needles=["'nonsense'", "not a registry", "models", "optimizers"])


def test_crossval_one_fold(fails, tiny_config):
    fails("crossval", tiny_config, "--folds", "1", needles=["--folds 1", "at least 2"])


def test_crossval_more_folds_than_samples(fails, tiny_config):
    fails("crossval", tiny_config, "--folds", "1000", needles=["--folds 1000", "569"])


# --- data files ----------------------------------------------------------------------------


def test_csv_with_nan(train_fails, tmp_path):
    csv = write(tmp_path / "nan.csv", "a,b,label\n1,2,x\n3,,y\n5,6,x\n7,nan,y\n9,1,x\n")
    train_fails(
        "--set", "data={name: csv, path: " + str(csv) + ", target: label}",
        needles=[str(csv), "NaN"],
    )  # fmt: skip


def test_csv_target_column_missing(train_fails, tmp_path):
    csv = write(tmp_path / "ok.csv", "a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n")
    train_fails(
        "--set", "data={name: csv, path: " + str(csv) + ", target: lable}",
        needles=[str(csv), "'lable'", "did you mean 'label'"],
    )  # fmt: skip


def test_npz_with_mismatched_lengths(train_fails, tmp_path):
    npz = tmp_path / "mismatch.npz"
    np.savez(npz, x=np.zeros((10, 3), np.float32), y=np.zeros(9, np.int64))
    train_fails(
        "--set", "data={name: npz, path: " + str(npz) + "}",
        needles=[str(npz), "10", "9", "same length"],
    )  # fmt: skip


# --- evaluate and predict on runs ----------------------------------------------------------


def test_evaluate_not_a_run_directory(fails, tmp_path):
    fails("evaluate", tmp_path, needles=[str(tmp_path), "not a run directory"])


def test_evaluate_missing_directory(fails, tmp_path):
    fails("evaluate", tmp_path / "nope", needles=[str(tmp_path / "nope"), "no such run directory"])


def test_evaluate_bad_split_option(fails, guard):
    fails("evaluate", guard.run, "--split", "train", needles=["--split", "'train'", "test", "val"])


def test_evaluate_corrupted_checkpoint(cli, guard, snapshot):
    weights = (guard.run / "checkpoints" / "best" / "model.safetensors").resolve()
    data = bytearray(weights.read_bytes())
    for i in range(len(data) - 16, len(data)):  # the last bytes: tensor data, not the header
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    guard.before = snapshot(guard.out)  # the corruption is the new "existing" state
    result = cli("evaluate", guard.run)
    assert_one_line_error(result, "model.safetensors", "SHA-256")
    guard.assert_untouched()
    assert weights.read_bytes() == bytes(data)


def test_predict_csv_missing_a_column(fails, guard, tmp_path):
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = [str(n) for n in bunch.feature_names]
    keep = names[1:]  # without 'mean radius'
    rows = [",".join(keep)] + [",".join(str(v) for v in row[1:]) for row in bunch.data[:3]]
    csv = write(tmp_path / "inputs.csv", "\n".join(rows) + "\n")
    fails("predict", guard.run, csv, needles=[str(csv), "missing", "mean radius"])


def test_predict_npz_of_the_wrong_width(fails, guard, tmp_path):
    npz = tmp_path / "narrow.npz"
    np.savez(npz, x=np.zeros((4, 5), np.float32))
    fails("predict", guard.run, npz, needles=["(5,)", "(30,)"])


def test_predict_txt_input(fails, guard, tmp_path):
    txt = write(tmp_path / "inputs.txt", "1,2,3\n")
    fails("predict", guard.run, txt, needles=[str(txt), "'.txt'", ".csv", ".npz"])


def test_predict_missing_input(fails, guard, tmp_path):
    fails("predict", guard.run, tmp_path / "nope.csv", needles=[str(tmp_path / "nope.csv")])


def test_predict_bad_output_suffix(fails, guard, tmp_path):
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.zeros((2, 30), np.float32))
    out = tmp_path / "preds.txt"
    fails("predict", guard.run, npz, "-o", out, needles=["--output", str(out), ".csv", ".json"])
    assert not out.exists()


# --- the real start-up path and --debug ----------------------------------------------------


def test_error_from_a_cold_start(cli, guard, tmp_path):
    # the script started as a plain process (the other tests fork a pre-imported one)
    missing = tmp_path / "missing.yaml"
    result = cli.cold("train", missing, "--out", guard.out)
    assert_one_line_error(result, str(missing), "no such config file")
    guard.assert_untouched()


def test_debug_shows_the_traceback(cli, tmp_path):
    missing = tmp_path / "missing.yaml"
    result = cli("--debug", "train", missing)
    assert result.rc != 0
    assert "Traceback" in result.stderr
    assert "ConfigError" in result.stderr
    assert "no such config file" in result.stderr
