"""Checkpoint io: tensors/JSON split of optimizer state, atomic writes, hashes, no unpickling."""

from __future__ import annotations

import errno
import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from deepworks.errors import CheckpointError
from deepworks.train import checkpoint as ckpt
from deepworks.train.checkpoint import (
    join_tensors,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    split_tensors,
    verify_checkpoint,
)


def trained_adam(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A small model and an Adam optimizer (two param groups, amsgrad) after a few steps."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    opt = make_adam(model)
    for _ in range(3):
        loss = model(torch.randn(8, 5)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def make_adam(model: nn.Module) -> torch.optim.Optimizer:
    weights = [p for p in model.parameters() if p.ndim >= 2]
    biases = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.Adam(
        [{"params": weights, "weight_decay": 0.01}, {"params": biases, "lr": 0.003}],
        lr=0.01,
        betas=(0.8, 0.95),
        amsgrad=True,
    )


def snapshot(path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def leftovers(parent, keep) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


# --- tensors + JSON instead of pickle --------------------------------------------------------


def test_adam_state_round_trips_through_safetensors_and_json(tmp_path):
    model, opt = trained_adam()
    skeleton, tensors = split_tensors(opt.state_dict(), "optimizer")
    assert tensors and all(isinstance(t, torch.Tensor) for t in tensors.values())
    json.dumps(skeleton)  # the structure is plain JSON
    save_checkpoint(
        tmp_path / "c", {"model": model.state_dict(), "optimizer": tensors}, {"optimizer": skeleton}
    )
    loaded, state = load_checkpoint(tmp_path / "c")

    fresh_model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    fresh_model.load_state_dict(loaded["model"])
    fresh = make_adam(fresh_model)
    fresh.load_state_dict(join_tensors(state["optimizer"], loaded["optimizer"]))

    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        assert (
            a["state"][i].keys()
            == b["state"][i].keys()
            == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
        )
        for k, v in a["state"][i].items():
            assert torch.equal(v, b["state"][i][k]), (i, k)
    # and the restored optimizer takes exactly the step the original would have taken
    x = torch.randn(8, 5)
    for m, o in ((model, opt), (fresh_model, fresh)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    for p, q in zip(model.parameters(), fresh_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_split_join_keeps_structure_and_python_types():
    obj = {
        "a": [1, 2.5, None, "x", True],
        "t": (torch.arange(3), 4),
        3: {"nested": torch.ones(2, 2), "empty": []},
        "scalar": torch.tensor(7.0),
    }
    skeleton, tensors = split_tensors(obj)
    assert len(tensors) == 3
    back = join_tensors(json.loads(json.dumps(skeleton)), tensors)
    assert back["a"] == [1, 2.5, None, "x", True]
    assert isinstance(back["t"], tuple) and back["t"][1] == 4
    assert torch.equal(back["t"][0], torch.arange(3))
    assert 3 in back and torch.equal(back[3]["nested"], torch.ones(2, 2))
    assert back[3]["empty"] == [] and torch.equal(back["scalar"], torch.tensor(7.0))


def test_join_with_a_missing_tensor_is_a_checkpoint_error():
    skeleton, tensors = split_tensors({"w": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="missing"):
        join_tensors(skeleton, {})


# --- atomic writes ---------------------------------------------------------------------------


def write_two(tmp_path):
    """A checkpoint 'c' holding ones; returns its path and a second state of twos."""
    path = tmp_path / "c"
    save_checkpoint(path, {"model": {"w": torch.ones(4)}}, {"epoch": 1})
    return path, {"model": {"w": torch.full((4,), 2.0)}}


def test_overwrite_replaces_the_checkpoint(tmp_path):
    path, twos = write_two(tmp_path)
    save_checkpoint(path, twos, {"epoch": 2})
    tensors, state = load_checkpoint(path)
    assert torch.equal(tensors["model"]["w"], torch.full((4,), 2.0)) and state == {"epoch": 2}
    assert leftovers(tmp_path, {"c"}) == []


def test_disk_full_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path, twos = write_two(tmp_path)
    before = snapshot(path)
    real = ckpt._write

    def full(target, data):
        if target.name == "model.safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(target, data)

    monkeypatch.setattr(ckpt, "_write", full)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, twos, {"epoch": 2})
    message = str(err.value)
    assert "\n" not in message and "No space left on device" in message and str(path) in message
    assert snapshot(path) == before
    assert leftovers(tmp_path, {"c"}) == []  # no temporary directory left behind
    verify_checkpoint(path)


def failing_replace(monkeypatch, nth: int):
    """Make the nth call of os.replace fail with ENOSPC."""
    real, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        calls.append((src, dst))
        if len(calls) == nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_failing_rename_of_the_old_checkpoint_keeps_it(tmp_path, monkeypatch):
    path, twos = write_two(tmp_path)
    before = snapshot(path)
    failing_replace(monkeypatch, 1)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(path, twos, {"epoch": 2})
    assert snapshot(path) == before


def test_first_checkpoint_failing_leaves_nothing(tmp_path, monkeypatch):
    failing_replace(monkeypatch, 1)
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "c", {"model": {"w": torch.ones(2)}}, {})
    assert list(tmp_path.iterdir()) == []


def test_failing_rename_of_the_new_checkpoint_keeps_the_old_one(tmp_path, monkeypatch):
    path, twos = write_two(tmp_path)
    before = snapshot(path)
    failing_replace(monkeypatch, 2)
    with pytest.raises(CheckpointError):
        save_checkpoint(path, twos, {"epoch": 2})
    assert path.is_dir() and snapshot(path) == before


# --- integrity -------------------------------------------------------------------------------


def test_verify_detects_a_flipped_byte(tmp_path):
    path = tmp_path / "c"
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    save_checkpoint(path, {"model": model.state_dict()}, {"epoch": 0})
    files = verify_checkpoint(path)
    assert set(files) == {"model.safetensors", "state.json"}
    target = path / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01  # one bit of a weight
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch") as err:
        verify_checkpoint(path)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_weights(path, nn.Linear(6, 3))


def test_missing_file_and_missing_manifest(tmp_path):
    path = tmp_path / "c"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}}, {})
    (path / "state.json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        verify_checkpoint(path)
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        verify_checkpoint(path)


def test_load_weights_round_trip_and_shape_mismatch(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    save_checkpoint(tmp_path / "c", {"model": model.state_dict()}, {})
    other = nn.Linear(6, 3)
    load_weights(tmp_path / "c", other)
    assert torch.equal(other.weight, model.weight) and torch.equal(other.bias, model.bias)
    with pytest.raises(CheckpointError, match="do not fit") as err:
        load_weights(tmp_path / "c", nn.Linear(6, 4))
    assert "\n" not in str(err.value)


class Payload:
    """Unpickling this creates the marker file: proof that a file was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("fmt", ["pickle", "torch.save"])
def test_a_pickle_posing_as_safetensors_is_never_unpickled(tmp_path, fmt):
    marker = tmp_path / "unpickled"
    path = tmp_path / "c"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}}, {})
    evil = path / "model.safetensors"
    if fmt == "pickle":
        evil.write_bytes(pickle.dumps({"w": Payload(str(marker))}))
    else:
        torch.save({"w": Payload(str(marker))}, evil)
    # the payload is live: unpickling the same bytes aimed at another file creates that file
    probe = tmp_path / "probe"
    if fmt == "pickle":
        pickle.loads(pickle.dumps({"w": Payload(str(probe))}))
    else:
        torch.save({"w": Payload(str(probe))}, tmp_path / "probe.pt")
        torch.load(tmp_path / "probe.pt", weights_only=False)
    assert probe.exists()
    # an attacker who also rewrote the manifest: the hash check passes, loading must refuse
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["model.safetensors"] = ckpt.sha256(evil)
    (path / "manifest.json").write_text(json.dumps(manifest))
    for load in (
        lambda: load_checkpoint(path),
        lambda: load_checkpoint(path, verify=False),
        lambda: load_weights(path, nn.Linear(2, 1)),
    ):
        with pytest.raises(CheckpointError, match="safetensors"):
            load()
        assert not marker.exists()


def test_real_safetensors_written_by_hand_load(tmp_path):
    """The format is plain safetensors: a file written by the safetensors library loads."""
    path = tmp_path / "c"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}}, {"epoch": 5})
    save_file({"w": torch.arange(3.0)}, str(path / "model.safetensors"))
    tensors, state = load_checkpoint(path, verify=False)
    assert torch.equal(tensors["model"]["w"], torch.arange(3.0)) and state == {"epoch": 5}
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)


# --- files that match their manifest but do not parse ----------------------------------------


def forge(path, name: str, data: bytes) -> None:
    """Replace a checkpoint file and rewrite the manifest to match it (hash recomputed)."""
    (path / name).write_bytes(data)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name] = ckpt.sha256(path / name)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("model.safetensors", pickle.dumps({"w": [1.0, 2.0]}), "not a valid safetensors"),
        ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", "safetensors"),
        ("state.json", b"{'epoch': 0", "not valid JSON"),
        ("state.json", b"[1, 2]", "not a JSON object"),
    ],
)
def test_a_file_that_does_not_parse_is_damaged_though_its_hash_matches(tmp_path, name, data, why):
    path = tmp_path / "c"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}}, {"epoch": 0})
    forge(path, name, data)
    with pytest.raises(CheckpointError, match=why) as err:
        verify_checkpoint(path)
    assert str(path / name) in str(err.value) and "\n" not in str(err.value)


def test_cli_verify_names_a_pickle_with_a_matching_manifest(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path / "run" / "checkpoints"
    dirs = ckpt.CheckpointDir(root, keep_last=3)
    for step in (10, 20):
        dirs.save(step, lambda p: save_checkpoint(p, {"model": {"w": torch.ones(2)}}, {}))
    newest = dirs.steps()[0]
    forge(newest, "model.safetensors", pickle.dumps({"w": torch.ones(2).tolist()}))
    exe = str(Path(sys.executable).parent / "deepworks")
    command = [exe, "checkpoint", "verify", str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(newest / "model.safetensors") in done.stderr
    assert "not a valid safetensors file" in done.stderr
    lines = done.stdout.splitlines()
    assert "DAMAGED" in next(line for line in lines if newest.name in line)
    assert "DAMAGED" not in next(line for line in lines if "step-00000010" in line)


def test_resume_falls_back_past_an_unparsable_newest_checkpoint(tmp_path):
    from deepworks.recipes import train

    config = {
        "name": "tiny",
        "data": {"name": "iris"},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 2, "batch_size": 64, "progress": False, "checkpoint": {"keep_last": 3}},
    }
    run = train(config, out=tmp_path).dir
    ckpts = ckpt.CheckpointDir(run / "checkpoints")
    newest, older = ckpts.steps()[:2]
    forge(newest, "state.json", b"\x80\x04 not json")
    notes: list[str] = []
    assert ckpts.newest_valid(notes.append) == older
    assert notes[0].startswith(f"skipping {newest.name}: ") and "state.json" in notes[0]
    notes.clear()
    resumed = train(resume=run, overrides={"train.epochs": 3}, warn=notes.append)
    assert any(n.startswith(f"skipping {newest.name}") for n in notes), notes
    assert resumed.metrics["train/epochs"] >= 1
