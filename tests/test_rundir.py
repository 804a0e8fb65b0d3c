"""The run-directory contract: one module owns the file names, one loader checks and reads a run,
and run.json records what made the run and which command wrote which file."""

from __future__ import annotations

import ast
import json
import os
import sys
import threading
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from deepworks import rundir
from deepworks.errors import CheckpointError, ConfigError, DeepworksError
from deepworks.rundir import RunDir

SRC = Path(rundir.__file__).resolve().parent

#: The names no module but rundir.py may spell (folders like "audit" or "samples" are common
#: words elsewhere, so only names with an extension, and the checkpoints folder, are checked).
OWNED = [
    name for name in rundir.FILES if "." in name or name == rundir.CHECKPOINTS
]  # fmt: skip


def literals(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string constant of a module (docstrings and f-string parts
    included: a part is a whole name only when it is nothing else)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_the_file_names_of_a_run_are_spelled_in_rundir_only():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "rundir.py" and path.parent == SRC:
            continue
        for line, value in literals(path):
            if value in OWNED:
                found.append(f"{path.relative_to(SRC.parent)}:{line}: {value!r}")
    assert not found, "use the deepworks.rundir constants:\n" + "\n".join(found)


def test_rundir_imports_no_torch():
    tree = ast.parse(Path(rundir.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] == "torch" or n == "deepworks.utils"]


# --- the loader ----------------------------------------------------------------------------


def make_run(path: Path, task: str = "regression") -> RunDir:
    path.mkdir(parents=True)
    (path / rundir.CONFIG).write_text(yaml.safe_dump({"name": "r", "task": {"name": task}}))
    return RunDir(path)


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and isinstance(exc, DeepworksError)
    return message


def test_a_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError) as info:
        RunDir.open(tmp_path / "nope")
    assert one_line(info.value) == (
        f"{tmp_path / 'nope'}: no such run directory; pass a folder made by deepworks train"
    )


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError) as info:
        RunDir.open(tmp_path)
    assert one_line(info.value) == f"{tmp_path}: not a run directory (no config.yaml)"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("name: [unclosed\n", "not valid YAML"),
        ("- a list\n", "must be a YAML mapping"),
        ("train: {epochs: -1}\n", "train.epochs"),
    ],
)
def test_a_damaged_config_yaml_is_a_one_line_error(tmp_path, text, needle):
    (tmp_path / rundir.CONFIG).write_text(text)
    with pytest.raises(ConfigError) as info:
        RunDir.open(tmp_path).config()
    message = one_line(info.value)
    assert str(tmp_path / rundir.CONFIG) in message and needle in message


def test_damaged_json_files_name_the_file(tmp_path):
    run = make_run(tmp_path / "run")
    (run / rundir.METRICS).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"metrics.json: not valid JSON"):
        run.metrics()
    (run / rundir.MANIFEST).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"run.json: expected a JSON object, got list"):
        run.manifest()


def test_paths_and_checkpoints(tmp_path):
    run = make_run(tmp_path / "run")
    assert run.metrics_path == run.path / "metrics.json"
    assert run.explain_dir("ig") == run.path / "explain" / "ig"
    assert run.attacks_dir("pgd") == run.path / "attacks" / "pgd"
    with pytest.raises(CheckpointError, match="the run has no checkpoints"):
        run.checkpoint("best")
    (run.checkpoints / "last").mkdir(parents=True)
    assert run.checkpoint("best") == run.checkpoints / "last"  # best falls back to last
    assert Path(run) == run.path and str(run) == str(run.path)


def test_the_task_comes_from_the_manifest_then_the_config(tmp_path):
    run = make_run(tmp_path / "run", task="forecasting")
    assert run.task == "forecasting"  # a run older than run.json
    run.write_manifest(task="regression", argv=["deepworks", "train"])
    assert run.task == "regression"


# --- the manifest --------------------------------------------------------------------------


def test_write_manifest_records_versions_command_times_and_status(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    monkeypatch.setattr(sys, "argv", ["deepworks", "train", "my.yaml"])
    manifest = run.write_manifest(task="regression")
    on_disk = json.loads(run.manifest_path.read_text())
    assert on_disk == manifest
    assert manifest["format"] == 1 and manifest["recipe"] == "supervised"
    assert manifest["task"] == "regression" and manifest["command"] == "train"
    assert manifest["argv"] == ["deepworks", "train", "my.yaml"]
    assert manifest["status"] == "running" and manifest["ended"] is None
    assert manifest["versions"]["torch"] == metadata.version("torch")
    assert manifest["versions"]["deepworks"] == metadata.version("deepworks")
    assert manifest["started"].endswith("+00:00") and manifest["files"] == {}

    run.write_text(rundir.METRICS, "{}", command="train")
    done = run.update_manifest(status="finished", files={rundir.REPORT: "train"})
    assert done["status"] == "finished" and done["ended"] >= done["started"]
    assert done["files"] == {"metrics.json": "train", "report.html": "train"}
    with pytest.raises(ValueError, match="choose running, finished, failed, interrupted"):
        run.update_manifest(status="done")


def test_a_resumed_run_keeps_its_files_and_first_start(tmp_path):
    run = make_run(tmp_path / "run")
    first = run.write_manifest(task="regression", argv=["deepworks", "train", "x.yaml"])
    run.update_manifest(status="interrupted", files={"metrics.json": "train"})
    again = run.write_manifest(task="regression", argv=["deepworks", "train", "--resume", "r"])
    assert again["status"] == "running" and again["files"] == {"metrics.json": "train"}
    assert again["first_started"] == first["started"]


def test_record_keeps_files_inside_the_run_and_the_command_line(tmp_path):
    run = make_run(tmp_path / "run")
    inside = run.explain_dir("ig") / "overlay.png"
    outside = tmp_path / "elsewhere.csv"
    manifest = run.record("explain", [inside, outside], argv=["deepworks", "explain", "run"])
    assert manifest["files"] == {"explain/ig/overlay.png": "explain"}
    assert manifest["commands"][-1]["command"] == "explain"
    assert manifest["commands"][-1]["argv"] == ["deepworks", "explain", "run"]
    assert manifest["task"] == "regression"  # a manifest made for an older run: from config.yaml
    assert run.record("predict", [outside]) is None  # nothing inside: run.json unchanged
    assert json.loads(run.manifest_path.read_text()) == manifest


def test_a_damaged_manifest_is_left_alone_by_record(tmp_path):
    run = make_run(tmp_path / "run")
    run.manifest_path.write_text("{broken")
    with pytest.warns(UserWarning, match="not valid JSON"):
        assert run.record("explain", [run.path / "explain" / "x.png"]) is None
    assert run.manifest_path.read_text() == "{broken"


def test_manifest_writes_are_atomic(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    run.write_manifest(task="regression", argv=[])
    before = run.manifest_path.read_text()

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(DeepworksError, match="cannot be written"):
        run.update_manifest(status="finished")
    assert run.manifest_path.read_text() == before  # the old manifest, whole
    assert sorted(p.name for p in run.path.iterdir()) == ["config.yaml", "run.json"]


def test_concurrent_updates_lose_nothing(tmp_path):
    run = make_run(tmp_path / "run")
    run.write_manifest(task="regression", argv=[])

    def work(i: int) -> None:
        RunDir(run.path).update_manifest(files={f"explain/m{i}/a.png": "explain"})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(run.manifest()["files"]) == 16


# --- the commands --------------------------------------------------------------------------


def test_a_later_command_records_what_it_wrote(cli, run_copy, snapshot):
    before = snapshot(run_copy)
    result = cli("explain", run_copy, "-m", "saliency", "--inputs", "2")
    assert result.rc == 0, str(result)
    manifest = RunDir(run_copy).manifest()
    written = {k for k, v in manifest["files"].items() if v == "explain"}
    assert written and all((run_copy / k).is_file() for k in written)
    assert "explain/saliency/summary.csv" in written
    assert manifest["commands"][-1]["argv"][1:3] == ["explain", str(run_copy)]
    # every other file of the run is untouched
    after = snapshot(run_copy)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed <= written | {"run.json", "explain", "explain/saliency"}
