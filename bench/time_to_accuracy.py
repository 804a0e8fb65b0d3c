"""Time to accuracy: how long until a digits CNN reaches 98% test accuracy.

deepworks' recipe against a hand-written PyTorch baseline, same model, same data, same machine,
in the same run. Both train the CNN of ``examples/digits_cnn_fast.yaml`` (three conv-BN-ReLU
blocks with max pooling, global average pooling, dropout 0.2, a linear head) on the 1x8x8 digits
images of that example's split (seed 0: 1,257 train / 180 val / 360 test images, standardized
with training statistics):

- ``baseline``: a hand-written loop, ``torch.optim.Adam(lr=1e-3)``, constant learning rate,
  cross-entropy, batch 64 (the usual tutorial recipe);
- ``deepworks``: ``examples/digits_cnn_fast.yaml``'s recipe through ``deepworks.Trainer``: AdamW
  (peak lr 0.03, weight decay 0.05), a one-cycle schedule over its 4 epochs, label smoothing 0.1,
  an EMA of the weights (``train.ema: 0.99``, evaluated in place of the live weights), batch 64;
- ablations of the deepworks recipe, each one switch: ``no_one_cycle`` (constant lr),
  ``no_label_smoothing``, ``no_ema``, ``no_channels_last`` (the Trainer's default NHWC layout
  for conv nets off: the baseline's layout), ``tta_flip`` (adds test-time flip averaging).

After every epoch the test accuracy is measured (not timed); the figure is the training time
(the epoch loops only: wall-clock, and CPU time of this process, which time spent descheduled
on a busy machine does not inflate) until the first epoch at or above the target. Each
contender runs with ``--seeds`` seeds (model init and batch order); the medians are compared.

Usage:
    python bench/time_to_accuracy.py             # 3 seeds, all contenders
    python bench/time_to_accuracy.py --quick     # 1 seed, baseline and deepworks only
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

import deepworks as dw
from common import machine, write_results
from deepworks.data import Split
from deepworks.train.callbacks import Callback

TARGET = 0.98
CONFIG = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn_fast.yaml"


def load_data():
    cfg = dw.load_config(CONFIG)
    return dw.load_dataset(
        "digits", split=cfg.data.split.model_dump(), seed=cfg.seed, scale="standard", as_image=True
    ), cfg


def make_model(cfg, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    kwargs = dict(cfg.model.kwargs) | {"in_channels": 1, "image_size": [8, 8], "num_classes": 10}
    return dw.create_model(cfg.model.name, **kwargs)


@torch.inference_mode()
def test_accuracy(model: nn.Module, test: Split, tta: bool = False) -> float:
    model.eval()
    out = model(test.x)
    if tta:
        out = (out + model(test.x.flip(-1))) / 2
    return (out.argmax(1) == test.y).float().mean().item()


def run_baseline(data, cfg, seed: int, max_epochs: int) -> dict:
    model = make_model(cfg, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    x, y, n, b = data.train.x, data.train.y, len(data.train), 64
    trained, cpu, curve = 0.0, 0.0, []
    for epoch in range(max_epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, b):
            idx = perm[i : i + b]
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        trained += time.perf_counter() - t0
        cpu += time.process_time() - c0
        acc = test_accuracy(model, data.test)
        curve.append((epoch + 1, trained, cpu, acc))
        if acc >= TARGET:
            break
    return {"reached": acc >= TARGET, "epochs": epoch + 1, "time_s": trained, "cpu_s": cpu,
            "curve": curve}  # fmt: skip


class StopAtTarget(Callback):
    """Measure test accuracy after each epoch (with the weights validation uses: EMA included)
    and stop at the target. Runs before the EMA callback swaps the live weights back."""

    order = 55

    def __init__(self, test: Split, tta: bool):
        self.test, self.tta, self.curve, self.hit = test, tta, [], None
        self.cpu = 0.0

    def on_epoch_start(self, trainer) -> None:
        self.c0 = time.process_time()

    def on_validation_start(self, trainer) -> None:
        self.cpu += time.process_time() - self.c0  # the epoch's training part

    def on_epoch_end(self, trainer, logs) -> None:
        acc = test_accuracy(trainer.model, self.test, self.tta)
        trainer.model.train()
        self.curve.append((int(logs["epoch"]) + 1, float(logs["time"]), self.cpu, acc))
        if acc >= TARGET and self.hit is None:
            self.hit = self.curve[-1]
            trainer.should_stop = True


def run_deepworks(data, cfg, seed: int, **switches) -> dict:
    model = make_model(cfg, seed)
    train = cfg.train.model_copy(deep=True)
    train.progress, train.checkpoint, train.device = False, None, "cpu"
    if switches.get("constant_lr"):
        train.scheduler = None
    if switches.get("no_label_smoothing"):
        train.loss = train.loss.model_validate({"name": "cross_entropy"})
    if switches.get("no_ema"):
        train.ema = None
    if switches.get("contiguous"):
        train.channels_last = False
    stop = StopAtTarget(data.test, tta=switches.get("tta", False))
    dw.Trainer(train, seed=seed, callbacks=[stop]).fit(model, data, "classification")
    last = stop.hit or stop.curve[-1]
    return {"reached": stop.hit is not None, "epochs": last[0], "time_s": last[1],
            "cpu_s": last[2], "curve": stop.curve}  # fmt: skip


CONTENDERS = {
    "baseline": None,
    "deepworks": {},
    "no_one_cycle": {"constant_lr": True},
    "no_label_smoothing": {"no_label_smoothing": True},
    "no_ema": {"no_ema": True},
    "no_channels_last": {"contiguous": True},
    "tta_flip": {"tta": True},
}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=60, help="the baseline's budget")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = ["baseline", "deepworks"] if args.quick else list(CONTENDERS)
    seeds = range(1 if args.quick else args.seeds)
    data, cfg = load_data()
    runs: dict[str, list[dict]] = {n: [] for n in names}
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    info = machine(loadavg=os.getloadavg())
    for seed in seeds:  # interleaved: every contender once per seed
        for name in names:
            if name == "baseline":
                r = run_baseline(data, cfg, seed, args.max_epochs)
            else:
                r = run_deepworks(data, cfg, seed, **CONTENDERS[name])
            runs[name].append(r | {"seed": seed})
    base = statistics.median(r["time_s"] for r in runs["baseline"])
    base_cpu = statistics.median(r["cpu_s"] for r in runs["baseline"])
    table = Table(title=f"time to {TARGET:.0%} test accuracy, digits CNN (median of {len(seeds)})")
    columns = ("contender", "reached", "epochs", "train s", "× baseline", "CPU s", "× baseline")
    for col in columns:
        table.add_column(col, justify="left" if col == "contender" else "right")
    summary = {}
    for name in names:
        rs = runs[name]
        # a run that never reached the target counts as infinitely slow
        t = statistics.median(r["time_s"] if r["reached"] else float("inf") for r in rs)
        c = statistics.median(r["cpu_s"] if r["reached"] else float("inf") for r in rs)
        summary[name] = {
            "reached": f"{sum(r['reached'] for r in rs)}/{len(rs)}",
            "median_epochs": statistics.median(r["epochs"] for r in rs),
            "median_time_s": t,
            "ratio_vs_baseline": t / base,
            "median_cpu_s": c,
            "cpu_ratio_vs_baseline": c / base_cpu,
        }
        s = summary[name]
        table.add_row(name, s["reached"], f"{s['median_epochs']:g}", f"{t:.2f}",
                      f"{s['ratio_vs_baseline']:.2f}", f"{c:.2f}",
                      f"{s['cpu_ratio_vs_baseline']:.2f}")  # fmt: skip
    Console().print(table)
    result = {
        "benchmark": "time_to_accuracy", "target": TARGET, "started": started,
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": info,
        "loadavg_after": os.getloadavg(), "summary": summary, "runs": runs,
    }  # fmt: skip
    parts = [info["hostname"], "tta", f"t{args.threads}"] + (["quick"] if args.quick else [])
    out = write_results(result, parts, args.out)
    print(f"results: {out}")
    return result


if __name__ == "__main__":
    main()
