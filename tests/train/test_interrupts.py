"""Interrupt a real `deepworks train` process with SIGINT, SIGTERM or SIGKILL at a random moment,
resume it (sometimes interrupting the resume too), and require the run to end exactly as the
uninterrupted one: weights, optimizer state, metrics.json and history.json (time fields aside).

`make test` runs one trial per signal; `make test-all` runs 30 (10 per signal over three configs:
the MLP, the CNN, and the CNN with augmentation, EMA and a warm-up/cosine schedule).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deepworks.train.checkpoint import load_checkpoint

EXAMPLES = Path(__file__).parents[2] / "examples"
EXE = str(Path(sys.executable).parent / "deepworks")
TIME_FIELDS = ("time", "train/samples_per_s")
CONFIGS = {
    "mlp": ("digits_mlp.yaml", ["train.epochs=6"]),
    "cnn": ("digits_cnn.yaml", ["train.epochs=4"]),
    "augmented": ("digits_cnn_augmented.yaml", ["train.epochs=4"]),
}
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def train_command(config: str, out: Path, resume: Path | None = None) -> list[str]:
    name, overrides = CONFIGS[config]
    sets = [arg for o in overrides for arg in ("--set", o)]
    if resume is not None:
        return [EXE, "train", "--resume", str(resume), "-q"]
    return [EXE, "train", str(EXAMPLES / name), "--out", str(out), "-q", *sets]


def run_dir_of(config: str, out: Path) -> Path:
    return out / CONFIGS[config][0].removesuffix(".yaml")


def comparable(run: Path) -> dict:
    """Everything of a finished run that must not depend on interruptions."""
    tensors, _ = load_checkpoint(run / "checkpoints" / "last")
    best, _ = load_checkpoint(run / "checkpoints" / "best")
    metrics = json.loads((run / "metrics.json").read_text())
    history = json.loads((run / "history.json").read_text())
    return {
        "model": tensors["model"],
        "best": best["model"],
        "optimizer": {k: v for k, v in tensors["state"].items() if ".optimizer." in k},
        "metrics": {k: v for k, v in metrics.items() if k not in TIME_FIELDS},
        "history": [{k: v for k, v in row.items() if k not in TIME_FIELDS} for row in history],
    }


def differences(a: dict, b: dict) -> list[str]:
    found = []
    for part in ("model", "best", "optimizer"):
        if a[part].keys() != b[part].keys():
            found.append(f"{part}: keys differ")
            continue
        found += [f"{part}.{k}" for k in a[part] if not torch.equal(a[part][k], b[part][k])]
    for part in ("metrics", "history"):
        if a[part] != b[part]:
            found.append(part)
    return found


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, tuple[dict, float]]:
    """The uninterrupted run of each config, and its wall time."""
    refs = {}
    for config in CONFIGS:
        out = tmp_path_factory.mktemp(f"ref-{config}")
        t0 = time.perf_counter()
        done = subprocess.run(train_command(config, out), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        refs[config] = (comparable(run_dir_of(config, out)), time.perf_counter() - t0)
    return refs


def interrupt(cmd: list[str], run: Path, sig: int, delay: float) -> int:
    """Start ``cmd``; once the run has a checkpoint, wait ``delay`` s and send ``sig``."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last").exists() and p.poll() is None:
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(sig)
    out, err = p.communicate(timeout=180)
    assert "Traceback" not in err or sig == signal.SIGINT, err
    return p.returncode


def trial(config: str, sig_name: str, seed: int, tmp: Path, references) -> list[str]:
    """One interrupted-and-resumed run; the list of what differs from the reference."""
    rng = random.Random(seed)
    ref, wall = references[config]
    out = tmp / f"{config}-{sig_name}-{seed}"
    run = run_dir_of(config, out)
    codes = [interrupt(train_command(config, out), run, SIGNALS[sig_name], rng.uniform(0, wall))]
    if rng.random() < 0.4:  # interrupt the resumed process too
        again = rng.choice(list(SIGNALS.values()))
        codes.append(interrupt(train_command(config, out, run), run, again, rng.uniform(0, wall)))
    done = subprocess.run(train_command(config, out, run), capture_output=True, text=True)
    assert done.returncode == 0, f"exit codes {codes}, then: {done.stderr}"
    found = differences(comparable(run), ref)
    shutil.rmtree(out, ignore_errors=True)
    return found


FAST = [("mlp", "SIGKILL", 0), ("cnn", "SIGINT", 1), ("augmented", "SIGTERM", 2)]
ALL = [
    (config, sig_name, 100 * i + j)
    for i, sig_name in enumerate(SIGNALS)
    for j, config in enumerate([c for c in CONFIGS for _ in range(4)][:10])
]


@pytest.mark.parametrize(("config", "sig_name", "seed"), FAST)
def test_an_interrupted_run_resumes_to_the_uninterrupted_one(
    config, sig_name, seed, tmp_path, references
):
    assert trial(config, sig_name, seed, tmp_path, references) == []


@pytest.mark.slow
def test_thirty_random_interruptions_all_resume_exactly(tmp_path, references):
    failures = {}
    for config, sig_name, seed in ALL:
        found = trial(config, sig_name, seed, tmp_path, references)
        if found:
            failures[(config, sig_name, seed)] = found[:5]
    print(f"{len(ALL) - len(failures)}/{len(ALL)} interrupted runs resumed exactly")
    assert not failures, failures
