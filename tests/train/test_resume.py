"""Crash safety: SIGKILL + resume is bitwise the uninterrupted run; checkpoints survive kills,
corruption, pickles, full disks, NaNs and signals."""

from __future__ import annotations

import errno
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import deepworks as dw
from deepworks.errors import CheckpointError
from deepworks.train import checkpoint as ckpt_mod
from deepworks.train.checkpoint import CheckpointDir, load_checkpoint, verify_checkpoint
from deepworks.train.trainer import NonFiniteError

WORKER = Path(__file__).with_name("resume_worker.py")


def worker(run_dir: Path, loader: str, *args: str, timeout: float = 120) -> subprocess.Popen:
    cmd = [sys.executable, str(WORKER), str(run_dir), loader, *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_worker(run_dir: Path, loader: str, *args: str) -> tuple[int, str, str]:
    p = worker(run_dir, loader, *args)
    out, err = p.communicate(timeout=180)
    return p.returncode, out, err


def final_state(run_dir: Path) -> tuple[dict, dict]:
    tensors, _ = load_checkpoint(run_dir / "checkpoints" / "last")
    return tensors["model"], tensors["state"]


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """Uninterrupted runs, one per batching path."""
    refs = {}
    for loader in ("tensor", "dataloader"):
        run = tmp_path_factory.mktemp(f"ref-{loader}")
        rc, out, err = run_worker(run, loader)
        assert rc == 0, err
        refs[loader] = final_state(run)
    return refs


@pytest.mark.parametrize("loader", ["tensor", "dataloader"])
def test_sigkill_and_resume_is_bitwise_identical(tmp_path, reference, loader):
    # digits: 1258 training samples / 64 = 20 batches per epoch; step 20 ends epoch 0. The run is
    # killed at the epoch boundary, resumed, killed mid-epoch 1, and resumed to the end.
    rc, _, _ = run_worker(tmp_path, loader, "--kill-at", "20")
    assert rc == -signal.SIGKILL
    rc, _, err = run_worker(tmp_path, loader, "--resume", "--kill-at", "31")
    assert rc == -signal.SIGKILL, err
    rc, out, err = run_worker(tmp_path, loader, "--resume")
    assert rc == 0, err
    assert "done 60" in out
    model, state = final_state(tmp_path)
    ref_model, ref_state = reference[loader]
    assert_bitwise_equal(model, ref_model)  # weights
    opt = {k: v for k, v in state.items() if ".optimizer." in k}
    assert opt and opt.keys() <= ref_state.keys()
    assert_bitwise_equal(opt, {k: ref_state[k] for k in opt})  # Adam moments, steps


@pytest.mark.parametrize("n", [5, pytest.param(20, marks=pytest.mark.slow)])
def test_random_sigkills_leave_a_loadable_checkpoint(tmp_path, reference, n):
    """n SIGKILLs at random moments (20 in ``make test-all``, 5 in ``make test``)."""
    rng = random.Random(1234)
    kills = during_write = 0
    args = ("--every", "2")
    for _ in range(n):
        resume = ("--resume",) if (tmp_path / "checkpoints" / "last").exists() else ()
        p = worker(tmp_path, "tensor", *args, *resume)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        if p.poll() is not None:  # finished before the kill: resume is complete anyway
            break
        p.kill()
        p.wait()
        kills += 1
        ckpts = tmp_path / "checkpoints"
        during_write += any(ckpts.glob(".*.tmp"))
        if (ckpts / "last").exists():
            verify_checkpoint(ckpts / "last")  # the newest complete checkpoint verifies
            load_checkpoint(ckpts / "last")
    rc, out, err = run_worker(tmp_path, "tensor", *args, "--resume")
    assert rc == 0, err
    assert "done 60" in out
    model, _ = final_state(tmp_path)
    assert_bitwise_equal(model, reference["tensor"][0])
    print(f"survived {kills} SIGKILLs, {during_write} during a checkpoint write")
    assert kills >= 0.75 * n


def test_pickle_in_place_of_a_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = train_tiny(tmp_path / "runs")
    target = run / "checkpoints" / "last" / "model.safetensors"
    target.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        load_checkpoint(target.parent)
    # Even with a manifest forged to match, the bytes are parsed as safetensors, never unpickled.
    manifest = target.parent / "manifest.json"
    text = manifest.read_text()
    digest = ckpt_mod.sha256(target)
    manifest.write_text(text.replace(text.split('"model.safetensors": "')[1][:64], digest))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(target.parent)
    rc = subprocess.run(
        [str(Path(sys.executable).parent / "deepworks"), "evaluate", str(run)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rc.returncode == 2 and "Traceback" not in rc.stderr
    assert not marker.exists()


def train_tiny(out: Path, **train) -> Path:
    cfg = {
        "name": "tiny",
        "data": {"name": "iris"},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 2, "batch_size": 32, "progress": False} | train,
    }
    return dw.train(cfg, out=out).dir


class NaNAt(torch.nn.Module):
    """Wraps a model; its output becomes NaN at one training step."""

    def __init__(self, inner: torch.nn.Module, step: int):
        super().__init__()
        self.inner, self.step, self.calls = inner, step, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.step:
                out = out * float("nan")
        return out


def nan_fit(tmp_path, on_nonfinite: str, step: int = 9):
    data = dw.load_dataset("iris", seed=0)
    model = NaNAt(dw.create_model("mlp", in_features=4, num_classes=3, hidden=[8]), step)
    trainer = dw.Trainer(
        epochs=5,
        batch_size=16,
        progress=False,
        on_nonfinite=on_nonfinite,
        checkpoint={"every_n_steps": 2},
        run_dir=tmp_path,
    )
    return trainer, trainer.fit(model, data)


def test_nan_stops_at_that_step_and_keeps_the_last_finite_checkpoint(tmp_path):
    trainer, result = nan_fit(tmp_path, "stop")
    assert "non-finite loss" in result.stop_reason and "at step 9" in result.stop_reason
    assert trainer.global_step == 8
    last = tmp_path / "checkpoints" / "last"
    tensors, saved = load_checkpoint(last)
    assert all(torch.isfinite(t).all() for t in tensors["model"].values())
    assert saved["state"]["__dict__"][2] == ["global_step", 8]


def test_nan_raise_and_skip_batch(tmp_path):
    with pytest.raises(NonFiniteError, match="non-finite loss .* at step 9"):
        nan_fit(tmp_path / "raise", "raise")
    trainer, result = nan_fit(tmp_path / "skip", "skip_batch")
    assert result.stop_reason == "" and result.epochs_run == 5
    steps_per_epoch = trainer.batches_per_epoch
    assert trainer.global_step == 5 * steps_per_epoch - 1  # exactly one batch skipped
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    data = dw.load_dataset("iris", seed=0)
    model = dw.create_model("mlp", in_features=4, num_classes=3, hidden=[8])
    trainer = dw.Trainer(epochs=3, batch_size=32, progress=False, run_dir=tmp_path)
    calls = {"n": 0}
    real_write = ckpt_mod._write

    def flaky_write(path, data):
        calls["n"] += 1
        if calls["n"] > 4:  # the first checkpoint (3 files + manifest) succeeds
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(ckpt_mod, "_write", flaky_write)
    with pytest.raises(CheckpointError) as info:
        trainer.fit(model, data)
    message = str(info.value)
    assert "No space left on device" in message and "earlier checkpoints are intact" in message
    assert "\n" not in message
    ckpts = tmp_path / "checkpoints"
    first = CheckpointDir(ckpts).steps()
    assert len(first) == 1
    assert (ckpts / "last").resolve() == first[0].resolve()
    verify_checkpoint(ckpts / "last")
    assert not list(ckpts.glob(".*.tmp"))


def test_corrupt_last_checkpoint_falls_back_to_an_older_one(tmp_path):
    run = train_tiny(tmp_path / "runs", epochs=3, checkpoint={"keep_last": 3})
    ckpts = CheckpointDir(run / "checkpoints")
    newest, older = ckpts.steps()[:2]
    weights = newest / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    notes = []
    assert ckpts.newest_valid(notes.append) == older
    assert "SHA-256 mismatch" in notes[0] and "newest valid" in notes[1]
    exe = str(Path(sys.executable).parent / "deepworks")
    bad = subprocess.run([exe, "checkpoint", "verify", str(run)], capture_output=True, text=True)
    assert bad.returncode == 2 and "DAMAGED" in bad.stdout
    resumed = subprocess.run(
        [exe, "train", "--resume", str(run), "--set", "train.epochs=4", "-q"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipping {newest.name}" in resumed.stderr
    assert "test/accuracy" in resumed.stdout


def test_sigterm_checkpoints_and_exits_3_then_resumes(tmp_path):
    exe = str(Path(sys.executable).parent / "deepworks")
    cfg = tmp_path / "long.yaml"
    cfg.write_text(
        "name: long\ndata: {name: digits}\nmodel: {name: mlp, hidden: [64]}\n"
        "train: {epochs: 300, batch_size: 16, progress: false}\n"
    )
    p = subprocess.Popen(
        [exe, "train", str(cfg), "--out", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = tmp_path / "runs" / "long"
    deadline = time.time() + 60
    while not (run / "history.csv").exists() and time.time() < deadline:
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 3, err
    assert "SIGTERM received" in err and "--resume" in err and "Traceback" not in err
    step = int(err.split("stopped after step ")[1].split(",")[0])
    last = (run / "checkpoints" / "last").resolve()
    assert last.name == f"step-{step:08d}"
    verify_checkpoint(last)
