"""Start-up cost: CPU seconds (user + system) of the commands a user types first, against
``import torch`` and a hand-written PyTorch script doing the same work up to its first step.

    python bench/startup.py [--repeats 3]

Each figure is the median over fresh processes. "first step" stops the process at the end of the
first optimizer step of ``deepworks train examples/digits_mlp.yaml``; the hand-written script
loads the same digits with scikit-learn, splits and scales them and takes one AdamW step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "deepworks")

CPU = "import os, sys; t = os.times(); print(t.user + t.system, file=sys.stderr)"

FIRST_STEP = f"""
import os, sys
import deepworks.recipes
from deepworks.cli import main
from deepworks.train.callbacks import Callback
class Stop(Callback):
    def on_batch_end(self, trainer, loss):
        {CPU.replace("; ", chr(10) + "        ")}
        os._exit(0)
launch = deepworks.recipes.train
def train(*args, callbacks=None, **kwargs):
    return launch(*args, callbacks=[*(callbacks or []), Stop()], **kwargs)
deepworks.recipes.train = train
main(["train", sys.argv[1], "--out", sys.argv[2], "-q"])
"""

HAND_WRITTEN = f"""
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
x, y = load_digits(return_X_y=True)
x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
x_tr = torch.tensor(StandardScaler().fit_transform(x_tr), dtype=torch.float32)
y_tr = torch.tensor(y_tr)
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 10))
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
torch.nn.functional.cross_entropy(model(x_tr[:64]), y_tr[:64]).backward()
opt.step()
{CPU}
"""


def cpu_of(cmd: list[str], own_clock: bool) -> float:
    """CPU seconds of one fresh process: its own report on stderr, or the OS's for children."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    before = os.times()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    after = os.times()
    if own_clock:
        return float(done.stderr.strip().splitlines()[-1])
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")
    return (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    out = tempfile.mkdtemp(prefix="deepworks-startup-")
    cases = [
        ("deepworks --help", [EXE, "--help"], False),
        ("deepworks --version", [EXE, "--version"], False),
        ("deepworks list models", [EXE, "list", "models"], False),
        ('python -c "import torch"', [sys.executable, "-c", "import torch"], False),
        ("hand-written script to its first step", [sys.executable, "-c", HAND_WRITTEN], True),
        (
            "deepworks train digits_mlp to its first step",
            [sys.executable, "-c", FIRST_STEP, str(ROOT / "examples/digits_mlp.yaml"), out],
            True,
        ),
    ]
    print(f"CPU seconds, median of {args.repeats} fresh processes (OMP_NUM_THREADS=1)")
    for name, cmd, own in cases:
        times = [cpu_of(cmd, own) for _ in range(args.repeats)]
        print(f"  {name:<48} {statistics.median(times):6.2f} s")


if __name__ == "__main__":
    main()
