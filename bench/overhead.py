"""Trainer overhead: ``deepworks.Trainer`` against hand-written PyTorch loops, in the same run.

Three contenders train the same model (same architecture, same seeded init) on the same data
with the same optimizer (``torch.optim.Adam``, same lr), epochs and batch size, no validation:

- ``trainer``: ``dw.Trainer(...).fit(model, data, task="classification")``;
- ``dataloader``: a plain loop over ``DataLoader(TensorDataset(x, y), batch_size, shuffle=True)``;
- ``tensor``: a plain loop over a ``torch.randperm`` of the data, batches cut by slicing.

The plain loops are written the way a careful practitioner writes them: ``model.train()``,
``zero_grad(set_to_none=True)``, the loss summed on the device and read once per epoch.
Each contender is warmed up once (one untimed epoch), then the repeats run interleaved
(trainer, dataloader, tensor, trainer, ...) and the medians are compared. Three figures per
contender, in samples/s:

- ``loop``: the training loop only (the Trainer's ``FitResult.samples_per_s``; the epoch loops of
  the plain ones);
- ``wall``: the whole call: Trainer construction + ``fit``, or optimizer and loader construction
  + loop for the plain ones;
- ``cpu``: samples per CPU-second of this process over the same span as ``wall``. On a machine
  shared with other jobs it is the figure least disturbed by them (time spent descheduled is not
  counted); with several threads it also counts time threads spend waiting for each other.

Usage:
    python bench/overhead.py                 # default sizes, one thread: about 1.5 minutes
    python bench/overhead.py --quick         # smoke run, ~15 s
    python bench/overhead.py --threads 0     # torch's default thread count (all cores)

One intra-op thread by default, the same for every contender: what is measured is the per-step
cost of the loop around the model, and a single thread keeps that reproducible. With several
threads on a machine shared with other jobs, an OpenMP thread that is descheduled stalls the
others at every op, and the figures swing tenfold between rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deepworks as dw
from deepworks.data import Split

LR = 1e-3
SEED = 0
NUM_CLASSES = 10
CONTENDERS = ("trainer", "dataloader", "tensor")
KINDS = ("loop", "wall", "cpu")  # the three figures of each contender (see the module docstring)


# --- workloads ---------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    describe: str
    make_model: Callable[[], nn.Module]
    x: torch.Tensor  # (N, ...) float32
    y: torch.Tensor  # (N,) int64
    epochs: int
    batch_size: int


def _mlp() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, NUM_CLASSES)
    )


def _cnn() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 14, 14)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 7, 7)
        nn.Flatten(), nn.Linear(32 * 7 * 7, NUM_CLASSES),
    )  # fmt: skip


def _clusters(n: int, shape: tuple[int, ...], noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable synthetic classes: a random template per class plus Gaussian noise."""
    g = torch.Generator().manual_seed(SEED)
    templates = torch.randn(NUM_CLASSES, *shape, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    x = templates[y] + noise * torch.randn(n, *shape, generator=g)
    return x.contiguous(), y


def workloads(quick: bool) -> list[Workload]:
    n_mlp, n_cnn, epochs = (4_000, 1_000, 1) if quick else (20_000, 6_000, 3)
    x_mlp, y_mlp = _clusters(n_mlp, (64,), noise=2.0)
    x_cnn, y_cnn = _clusters(n_cnn, (1, 28, 28), noise=3.0)
    return [
        Workload("mlp", f"MLP 64-256-128-10, {n_mlp}x64", _mlp, x_mlp, y_mlp, epochs, 64),
        Workload("cnn", f"CNN 2xconv, {n_cnn}x1x28x28", _cnn, x_cnn, y_cnn, max(1, epochs - 1), 64),
    ]


# --- contenders: each returns loop, wall and CPU seconds and the last epoch's mean train loss ---
#: Extra keyword arguments of the hand-written loops' Adam (``--fused-baseline``: fused=True).
BASELINE_ADAM: dict = {}


def run_trainer(w: Workload, epochs: int) -> dict:
    model = w.make_model()
    data = dw.DataBundle(
        name=w.name,
        train=Split(w.x, w.y),
        val=None,
        test=None,
        task_type="classification",
        input_shape=tuple(w.x.shape[1:]),
        num_classes=NUM_CLASSES,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = dw.Trainer(
        epochs=epochs,
        batch_size=w.batch_size,
        optimizer={"name": "adam", "lr": LR},
        progress=False,
        checkpoint=None,
        device="cpu",
        seed=SEED,
    )
    result = trainer.fit(model, data, task="classification")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    opt = trainer.optimizer
    return {
        "loop_s": result.train_time_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "final_train_loss": result.metrics["train/loss"],
        "optimizer": {
            "class": type(opt).__name__,
            "fused": opt.defaults.get("fused"),
            "foreach": opt.defaults.get("foreach"),
            "param_groups": len(opt.param_groups),
        },
    }


def run_dataloader(w: Workload, epochs: int) -> dict:
    model = w.make_model()
    t0, c0 = time.perf_counter(), time.process_time()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, **BASELINE_ADAM)
    loader = DataLoader(TensorDataset(w.x, w.y), batch_size=w.batch_size, shuffle=True)
    t1 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        total = torch.zeros(())
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        epoch_loss = total.item() / len(loader)
    t2, cpu = time.perf_counter(), time.process_time() - c0
    return {"loop_s": t2 - t1, "wall_s": t2 - t0, "cpu_s": cpu, "final_train_loss": epoch_loss}


def run_tensor(w: Workload, epochs: int) -> dict:
    model = w.make_model()
    t0, c0 = time.perf_counter(), time.process_time()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, **BASELINE_ADAM)
    g = torch.Generator().manual_seed(SEED)
    n, b = len(w.y), w.batch_size
    t1 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        total = torch.zeros(())
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, b):
            idx = perm[i : i + b]
            loss = loss_fn(model(w.x[idx]), w.y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        epoch_loss = total.item() / -(-n // b)
    t2, cpu = time.perf_counter(), time.process_time() - c0
    return {"loop_s": t2 - t1, "wall_s": t2 - t0, "cpu_s": cpu, "final_train_loss": epoch_loss}


RUNNERS = {"trainer": run_trainer, "dataloader": run_dataloader, "tensor": run_tensor}


# --- measuring -----------------------------------------------------------------------------------
def measure(w: Workload, repeats: int, console: Console) -> dict:
    """Warm up each contender (one untimed epoch), then time ``repeats`` interleaved rounds."""
    warm = {name: RUNNERS[name](w, 1) for name in CONTENDERS}
    runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    samples = len(w.y) * w.epochs
    for r in range(repeats):
        for name in CONTENDERS:
            gc.collect()
            run = RUNNERS[name](w, w.epochs)
            run.pop("optimizer", None)
            runs[name].append(run)
        console.log(
            f"{w.name} round {r + 1}/{repeats}: "
            + ", ".join(f"{n} {samples / runs[n][-1]['loop_s']:,.0f}/s" for n in CONTENDERS)
        )
    out = {
        "name": w.name,
        "workload": w.describe,
        "samples": len(w.y),
        "epochs": w.epochs,
        "batch_size": w.batch_size,
        "trainer_optimizer": warm["trainer"]["optimizer"],
        "baseline_optimizer": {"class": "Adam", **BASELINE_ADAM},
        "contenders": {},
    }
    for name, rs in runs.items():
        loop = [samples / r["loop_s"] for r in rs]
        wall = [samples / r["wall_s"] for r in rs]
        cpu = [samples / r["cpu_s"] for r in rs]
        out["contenders"][name] = {
            "loop_samples_per_s": statistics.median(loop),
            "wall_samples_per_s": statistics.median(wall),
            "cpu_samples_per_s": statistics.median(cpu),
            "loop_samples_per_s_min": min(loop),
            "loop_samples_per_s_max": max(loop),
            "final_train_loss": statistics.median(r["final_train_loss"] for r in rs),
            "runs": rs,
        }
    c = out["contenders"]
    for kind in KINDS:
        key = f"{kind}_samples_per_s"
        for base in ("dataloader", "tensor"):
            out[f"ratio_trainer_over_{base}_{kind}"] = c["trainer"][key] / c[base][key]
            # the median of per-round ratios: less sensitive to load that drifts between rounds
            paired = [
                b[f"{kind}_s"] / t[f"{kind}_s"]
                for t, b in zip(runs["trainer"], runs[base], strict=True)
            ]
            out[f"paired_ratio_trainer_over_{base}_{kind}"] = statistics.median(paired)
    return out


# --- reporting -----------------------------------------------------------------------------------
def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
        ).stdout.strip()
    except OSError:
        rev = ""
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "deepworks": dw.__version__,
        "git": rev,
        "torch_threads": torch.get_num_threads(),
    }


def table(results: list[dict]) -> Table:
    t = Table(title="Trainer vs hand-written loops: median samples/s (higher is better)")
    t.add_column("workload")
    t.add_column("contender")
    for col in ("loop /s", "loop min-max", "wall /s", "cpu /s", "loss"):
        t.add_column(col, justify="right")
    for col in ("trainer/this: loop", "wall", "cpu"):
        t.add_column(col, justify="right")
    for res in results:
        c = res["contenders"]
        for i, name in enumerate(CONTENDERS):
            m = c[name]
            ratios = ["", "", ""]
            if name != "trainer":
                ratios = [f"{res[f'ratio_trainer_over_{name}_{k}']:.2f}x" for k in KINDS]
            t.add_row(
                res["name"] if i == 0 else "",
                name,
                f"{m['loop_samples_per_s']:,.0f}",
                f"{m['loop_samples_per_s_min']:,.0f}-{m['loop_samples_per_s_max']:,.0f}",
                f"{m['wall_samples_per_s']:,.0f}",
                f"{m['cpu_samples_per_s']:,.0f}",
                f"{m['final_train_loss']:.3f}",
                *ratios,
                end_section=i == len(CONTENDERS) - 1,
            )
    return t


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of ~15 s")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5, quick 2)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads for every contender (default 1; 0: torch's default)",
    )
    p.add_argument("--only", choices=("mlp", "cnn"), default=None, help="run one workload")
    p.add_argument(
        "--fused-baseline",
        action="store_true",
        help="give the hand-written loops Adam(fused=True) too (to compare loops alone when the "
        "Trainer's optimizer is fused)",
    )
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: bench/results/)")
    args = p.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.fused_baseline:
        BASELINE_ADAM["fused"] = True
    console = Console(width=max(Console().width, 120))
    info = machine()
    load_before = os.getloadavg()
    if load_before[0] > (os.cpu_count() or 1) * 0.5:
        console.print(
            f"[yellow]load average {load_before[0]:.1f} on {os.cpu_count()} cores: other "
            "processes compete for the CPU; absolute figures will be low and noisy[/]"
        )
    t0 = time.perf_counter()
    results = [
        measure(w, repeats, console) for w in workloads(args.quick) if args.only in (None, w.name)
    ]
    elapsed = time.perf_counter() - t0
    console.print(table(results))
    for res in results:
        console.print(
            f"{res['name']}: {res['workload']}, {res['epochs']} epoch(s), batch "
            f"{res['batch_size']}; Trainer optimizer {res['trainer_optimizer']}"
        )
        dl = res["ratio_trainer_over_dataloader_loop"]
        verdict = "[green]met[/]" if dl >= 1.0 else "[red]not met[/]"
        console.print(
            f"  Trainer/DataLoader loop {dl:.2f}x (per-round median "
            f"{res['paired_ratio_trainer_over_dataloader_loop']:.2f}x), target >= 1.0x {verdict}; "
            f"Trainer/tensor loop {res['ratio_trainer_over_tensor_loop']:.2f}x (per-round "
            f"{res['paired_ratio_trainer_over_tensor_loop']:.2f}x)"
        )
        if bool(res["trainer_optimizer"]["fused"]) != bool(BASELINE_ADAM.get("fused")):
            console.print(
                "  [yellow]note: the Trainer's Adam and the loops' differ in `fused`; "
                "--fused-baseline compares the loops alone[/]"
            )
    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "command": "python " + shlex.join(["bench/overhead.py", *argv]),
        "repeats": repeats,
        "quick": args.quick,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "elapsed_s": round(elapsed, 1),
        "results": results,
    }
    parts = [info["hostname"], "cpu"]
    parts += [f"t{torch.get_num_threads()}"]
    parts += [args.only] if args.only else []
    parts += ["fused"] if args.fused_baseline else []
    parts += ["quick"] if args.quick else []
    out = args.out or Path(__file__).parent / "results" / f"{'-'.join(parts)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    console.print(f"wrote {out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
