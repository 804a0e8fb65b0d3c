"""GPU throughput and model-FLOPs utilization: ``deepworks.Trainer`` against a plain fp32 loop.

Two workloads, each trained by three contenders on synthetic data resident on the GPU:

- ``resnet``: ResNet-18 (``dw.create_model("resnet", depth=18, ...)``, the small 3x3 stem for
  32x32 inputs) on 50,000 random 3x32x32 images with random labels (10 classes), batch 512
  (the data is cut to whole batches, 49,664 images, so that every step has the same shape);
- ``gpt``: a GPT of dim 512, depth 8, 8 heads, vocabulary 8,192, context 1,024 (about 34M
  parameters, printed) trained as a language model on 4,096 random token sequences without
  padding (``pad_id: None``: no padding mask and no look at the batch on the host, so no GPU
  sync in the forward pass): the targets are the inputs shifted by one position, batch 32
  (32,768 tokens a step).

The contenders:

- ``eager_fp32``: a hand-written loop: the model in fp32, contiguous (NCHW) layout, no compile, no
  autocast, ``torch.optim.AdamW`` with its defaults (the multi-tensor ``foreach`` kernel on
  CUDA), batches gathered with ``x[idx]`` from a per-epoch ``torch.randperm``,
  ``zero_grad(set_to_none=True)``, no host read of the loss per step;
- ``deepworks``: ``dw.Trainer(...)`` with its defaults (precision ``auto``: bf16 autocast on
  CUDA, fp32 on the CPU; channels_last for conv nets; fused AdamW; training metrics kept on the
  device), ``checkpoint=None``, ``progress=False``, no validation split;
- ``deepworks_compile``: the same plus ``compile=True`` (on by default on CUDA; off by default on
  the CPU, where inductor compiles C++ and the smoke run would be dominated by it).

All three use AdamW (lr 3e-4, weight decay 0.01) from the same seeded initialization.

Timing: each contender first runs ``--warmup`` untimed steps (20: the first calls into cuDNN and
cuBLAS, the allocator's growth, and for ``deepworks_compile`` the whole compilation), then
``--repeats`` timed windows (3) of ``--steps`` optimizer steps each (50), back to back in the
same run. Each window ends with ``torch.cuda.synchronize()`` before the clock is read, so every
queued kernel is counted. For
the Trainer the clock is read by a small callback (``StepClock``) in ``on_batch_end``, which the
Trainer calls after each optimizer step; windows may span an epoch boundary, and then include
the Trainer's per-epoch work (its end-of-epoch synchronization and metric read), as the plain
loop's windows include its per-epoch ``randperm``. The figure is the median window, in images/s
or tokens/s; peak memory is ``torch.cuda.max_memory_allocated`` with the statistics reset before
each contender.

Model FLOPs utilization (the PaLM paper's definition, appendix B): with :math:`N` the parameters
that take part in matrix multiplies (all parameters except the token and position embedding
tables; the output head counts), :math:`L` layers, width :math:`d` and context :math:`T`, one
token of training (forward and backward) costs

.. math::

    F = 6N + 12\\,L\\,d\\,T

FLOPs: :math:`6N` for the weight matmuls (2 forward, 4 backward) and :math:`12 L d T` for the
attention scores and the weighted sum of values (counted over the full :math:`T \\times T`
matrix, as PaLM and nanoGPT's ``estimate_mfu`` do, although a causal kernel skips half of it).
Then :math:`\\mathrm{MFU} = \\text{tokens/s} \\cdot F / P` with :math:`P` the GPU's dense bf16
peak, looked up from ``torch.cuda.get_device_name()`` (989 TFLOP/s for an H100 SXM or an H200)
or given with ``--peak-tflops``. It is reported for every contender, the fp32 one included
(against the bf16 peak: how far fp32 is from what the chip offers).

Targets (printed as PASS/FAIL lines on a GPU): the ResNet-18 throughput of deepworks at least
2x the fp32 eager loop; the GPT's MFU under deepworks at least 40% on an H100 or H200.

Usage:
    python bench/gpu.py                        # on an NVIDIA GPU: both workloads, a few minutes
    python bench/gpu.py --only gpt --steps 50  # one workload, longer windows
    python bench/gpu.py --peak-tflops 312      # a GPU missing from the peak table
    python bench/gpu.py --device cpu --quick   # smoke test without a GPU (not a measurement)

Results go to ``bench/results/<hostname>-gpu[-cpu][-<only>][-quick].json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

import common
import deepworks as dw
from deepworks.data import DataBundle, Split
from deepworks.train.callbacks import Callback

SEED = 0
LR = 3e-4
WEIGHT_DECAY = 0.01
CONTENDERS = ("eager_fp32", "deepworks", "deepworks_compile")
WORKLOAD_NAMES = ("resnet", "gpt")
RESNET_TARGET = 2.0  # deepworks / eager_fp32 images/s
MFU_TARGET = 0.40  # GPT under deepworks, on an H100 / H200

#: Dense bf16 tensor-core peaks in FLOP/s, matched in order against the device name (lower-case):
#: the first entry whose every word occurs in the name wins, so variants come before the plain one.
PEAKS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("h100", "pcie"), 756e12),
    (("h100", "nvl"), 835e12),
    (("h100",), 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    (("h200", "nvl"), 835e12),
    (("h200",), 989e12),
    (("gh200",), 989e12),
    (("a100",), 312e12),
    (("l40s",), 362e12),
    (("l40",), 181e12),
    (("l4",), 121e12),
)


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU from its name, or None when it is not in :data:`PEAKS`."""
    name = device_name.lower()
    for words, peak in PEAKS:
        if all(w in name for w in words):
            return peak
    return None


# --- workloads -----------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    describe: str
    make_model: Callable[[], nn.Module]
    x: torch.Tensor  # (N, 3, H, W) float32 images, or (N, T) int64 token ids; on the device
    y: torch.Tensor  # (N,) labels, or (N, T) next tokens
    batch_size: int
    task: str  # the deepworks task
    bundle: DataBundle
    unit: str  # "images" or "tokens"
    per_sample: int  # units per sample: 1 image, or T tokens
    flops_per_token: float | None = None  # the GPT's training FLOPs per token (see the docstring)
    params: int = 0
    matmul_params: int = 0


def _seeded(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(SEED)  # the same initial weights for every contender
        return build()

    return make


def resnet(quick: bool, device: torch.device, batch_size: int | None) -> Workload:
    n, width, b = (64, 16, 16) if quick else (50_000, 64, 512)
    b = batch_size or b
    n = max(b, n // b * b)  # whole batches only: every step sees the same batch size
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(n, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    kwargs = dict(depth=18, num_classes=10, in_channels=3, image_size=[32, 32], width=width)
    make = _seeded(lambda: dw.create_model("resnet", **kwargs))
    bundle = DataBundle(
        name="synthetic-images",
        train=Split(x, y),
        val=None,
        test=None,
        task_type="classification",
        input_shape=(3, 32, 32),
        num_classes=10,
        is_image=True,
    )
    params = sum(p.numel() for p in make().parameters())
    describe = f"ResNet-18 (width {width}), {n:,} x 3x32x32, {params / 1e6:.1f}M params"
    w = Workload("resnet", describe, make, x, y, b, "classification", bundle, "images", 1)
    w.params = params
    return w


def gpt(quick: bool, device: torch.device, batch_size: int | None) -> Workload:
    if quick:
        vocab, dim, depth, heads, seq, n, b = 512, 128, 4, 4, 64, 32, 8
    else:
        vocab, dim, depth, heads, seq, n, b = 8192, 512, 8, 8, 1024, 4096, 32
    b = batch_size or b
    n = max(b, n // b * b)
    g = torch.Generator().manual_seed(SEED)
    # no padding (pad_id None): the causal fast path, and no host read of the batch per step
    tokens = torch.randint(1, vocab, (n, seq + 1), generator=g)
    x, y = tokens[:, :-1].contiguous().to(device), tokens[:, 1:].contiguous().to(device)
    kwargs = dict(
        num_classes=vocab,
        vocab_size=vocab,
        dim=dim,
        depth=depth,
        num_heads=heads,
        max_len=seq,
        pad_id=None,
    )
    make = _seeded(lambda: dw.create_model("gpt", **kwargs))
    model = make()
    params = sum(p.numel() for p in model.parameters())  # a tied matrix is counted once
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    head = model.head.weight
    matmul = sum(p.numel() for p in model.parameters() if id(p) not in tables)
    matmul += head.numel() if id(head) in tables else 0  # a tied head still multiplies
    flops = 6 * matmul + 12 * depth * dim * seq
    bundle = DataBundle(
        name="synthetic-tokens",
        train=Split(x, y),
        val=None,
        test=None,
        task_type="language_model",
        input_shape=(seq,),
        num_classes=vocab,
        model_sizes={"vocab_size": vocab, "pad_id": None},
    )
    describe = (
        f"GPT d{dim} x{depth} {heads} heads, vocab {vocab:,}, context {seq}, "
        f"{params / 1e6:.1f}M params ({matmul / 1e6:.1f}M in matmuls), {n:,} sequences"
    )
    w = Workload("gpt", describe, make, x, y, b, "language_model", bundle, "tokens", seq)
    w.flops_per_token, w.params, w.matmul_params = float(flops), params, matmul
    return w


# --- contenders: each returns the seconds of its timed windows and the last loss -----------------
def _windows(marks: list[float]) -> list[float]:
    """Seconds between consecutive clock readings."""
    return [b - a for a, b in itertools.pairwise(marks)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_eager(w: Workload, device: torch.device, warmup: int, steps: int, repeats: int) -> dict:
    """The plain loop: fp32, NCHW, eager, foreach AdamW, data on the device."""
    model = w.make_model().to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    n, b = len(w.y), w.batch_size
    total = warmup + steps * repeats
    marks: list[float] = []
    step, loss = 0, torch.zeros((), device=device)
    while step < total:
        perm = torch.randperm(n, device=device)
        for i in range(0, n - b + 1, b):
            idx = perm[i : i + b]
            x, y = w.x[idx], w.y[idx]
            out = model(x)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step >= warmup and (step - warmup) % steps == 0:
                _sync(device)
                marks.append(time.perf_counter())
            if step >= total:
                break
    return {"window_s": _windows(marks), "final_loss": loss.item()}


class StepClock(Callback):
    """Reads the clock (after a device synchronization) at the end of step ``warmup`` and of every
    ``steps`` steps after it; the Trainer calls ``on_batch_end`` after each optimizer step."""

    def __init__(self, device: torch.device, warmup: int, steps: int) -> None:
        self.device, self.warmup, self.steps = device, warmup, steps
        self.marks: list[float] = []
        self.loss: torch.Tensor | None = None

    def on_batch_end(self, trainer: Any, loss: torch.Tensor) -> None:
        self.loss = loss
        step = trainer.global_step
        if step >= self.warmup and (step - self.warmup) % self.steps == 0:
            _sync(self.device)
            self.marks.append(time.perf_counter())


def run_deepworks(
    w: Workload,
    device: torch.device,
    warmup: int,
    steps: int,
    repeats: int,
    compile: bool = False,
) -> dict:
    """``dw.Trainer`` with its defaults; ``max_steps`` ends the fit after the last window."""
    model = w.make_model()
    total = warmup + steps * repeats
    clock = StepClock(device, warmup, steps)
    per_epoch = len(w.y) // w.batch_size
    trainer = dw.Trainer(
        epochs=math.ceil(total / per_epoch) + 1,
        max_steps=total,
        batch_size=w.batch_size,
        optimizer={"name": "adamw", "lr": LR, "weight_decay": WEIGHT_DECAY},
        device=device.type,
        compile=compile,
        checkpoint=None,
        progress=False,
        callbacks=[clock],
        seed=SEED,
    )
    trainer.fit(model, w.bundle, task=w.task)
    m = clock.marks
    return {
        "window_s": _windows(m),
        "final_loss": float(clock.loss) if clock.loss is not None else math.nan,
        "precision": "bf16 autocast" if _autocasts(trainer) else "fp32",
        "channels_last": any(
            p.ndim == 4
            and p.is_contiguous(memory_format=torch.channels_last)
            and not p.is_contiguous()
            for p in model.parameters()
        ),
        "optimizer": {
            "class": type(trainer.optimizer).__name__,
            "fused": bool(trainer.optimizer.defaults.get("fused")),
        },
    }


def _autocasts(trainer: dw.Trainer) -> bool:
    return isinstance(trainer.autocast(), torch.autocast)


# --- measuring -----------------------------------------------------------------------------------
def measure(
    w: Workload,
    contenders: list[str],
    device: torch.device,
    args: argparse.Namespace,
    peak: float | None,
    console: Console,
) -> dict:
    out: dict[str, Any] = {
        "name": w.name,
        "workload": w.describe,
        "batch_size": w.batch_size,
        "samples": len(w.y),
        "unit": w.unit,
        "units_per_sample": w.per_sample,
        "params": w.params,
        "contenders": {},
    }
    if w.flops_per_token is not None:
        out["matmul_params"] = w.matmul_params
        out["flops_per_token"] = w.flops_per_token
    for name in contenders:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        if name == "eager_fp32":
            run = run_eager(w, device, args.warmup, args.steps, args.repeats)
            run |= {"precision": "fp32", "channels_last": False}
            run["optimizer"] = {"class": "AdamW", "fused": False}
        else:
            run = run_deepworks(
                w, device, args.warmup, args.steps, args.repeats, name == "deepworks_compile"
            )
        run["total_s"] = time.perf_counter() - t0
        units = args.steps * w.batch_size * w.per_sample
        rates = [units / s for s in run["window_s"]]
        run["units_per_s"] = rates
        run["median_units_per_s"] = statistics.median(rates)
        run["min_units_per_s"], run["max_units_per_s"] = min(rates), max(rates)
        if device.type == "cuda":
            run["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        if w.flops_per_token is not None and peak:
            run["mfu"] = run["median_units_per_s"] * w.flops_per_token / peak
        out["contenders"][name] = run
        console.log(
            f"{w.name} {name}: {run['median_units_per_s']:,.0f} {w.unit}/s "
            f"(loss {run['final_loss']:.3f}, {run['total_s']:.1f} s with warm-up)"
        )
    c = out["contenders"]
    if "eager_fp32" in c:
        base = c["eager_fp32"]["median_units_per_s"]
        for name in c:
            if name != "eager_fp32":
                out[f"ratio_{name}_over_eager_fp32"] = c[name]["median_units_per_s"] / base
    return out


# --- reporting -----------------------------------------------------------------------------------
def table(results: list[dict]) -> Table:
    t = Table(title="GPU training throughput: median of the timed windows (higher is better)")
    t.add_column("workload")
    t.add_column("contender")
    t.add_column("precision")
    for col in ("units/s", "min-max", "x eager", "MFU", "peak MB", "loss"):
        t.add_column(col, justify="right")
    for res in results:
        c = res["contenders"]
        for i, (name, r) in enumerate(c.items()):
            ratio = res.get(f"ratio_{name}_over_eager_fp32")
            mem = r.get("peak_memory_mb")
            t.add_row(
                res["name"] if i == 0 else "",
                name,
                r["precision"] + (", NHWC" if r["channels_last"] else ""),
                f"{r['median_units_per_s']:,.0f} {res['unit']}",
                f"{r['min_units_per_s']:,.0f}-{r['max_units_per_s']:,.0f}",
                f"{ratio:.2f}x" if ratio is not None else "",
                f"{100 * r['mfu']:.1f}%" if "mfu" in r else "",
                f"{mem:,.0f}" if mem is not None else "",
                f"{r['final_loss']:.3f}",
                end_section=i == len(c) - 1,
            )
    return t


def verdicts(results: list[dict], device_name: str, console: Console) -> list[dict]:
    """PASS/FAIL of the two targets, judged on the faster deepworks contender."""
    out = []

    def line(what: str, value: str, target: str, ok: bool) -> None:
        out.append({"target": what, "value": value, "threshold": target, "pass": ok})
        console.print(f"{'[green]PASS[/]' if ok else '[red]FAIL[/]'} {what}: {value} ({target})")

    for res in results:
        dws = [n for n in res["contenders"] if n != "eager_fp32"]
        if not dws:
            continue
        if res["name"] == "resnet" and "eager_fp32" in res["contenders"]:
            best = max(dws, key=lambda n: res[f"ratio_{n}_over_eager_fp32"])
            r = res[f"ratio_{best}_over_eager_fp32"]
            line(
                "ResNet-18 throughput deepworks / eager fp32",
                f"{r:.2f}x ({best})",
                f"target >= {RESNET_TARGET}x",
                r >= RESNET_TARGET,
            )
        if res["name"] == "gpt":
            with_mfu = [n for n in dws if "mfu" in res["contenders"][n]]
            if not with_mfu:
                continue
            best = max(with_mfu, key=lambda n: res["contenders"][n]["mfu"])
            mfu = res["contenders"][best]["mfu"]
            hopper = any(h in device_name.lower() for h in ("h100", "h200"))
            if hopper:
                line(
                    "GPT MFU under deepworks",
                    f"{100 * mfu:.1f}% ({best})",
                    f"target >= {100 * MFU_TARGET:.0f}% on an H100/H200",
                    mfu >= MFU_TARGET,
                )
            else:
                console.print(
                    f"GPT MFU under deepworks: {100 * mfu:.1f}% ({best}); the 40% target is "
                    f"set for an H100/H200, not judged on {device_name}"
                )
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny models and data, a couple of steps: a smoke test, not a measurement",
    )
    p.add_argument("--only", choices=WORKLOAD_NAMES, default=None, help="run one workload")
    p.add_argument("--steps", type=int, default=None, help="steps per timed window (50; quick 2)")
    p.add_argument("--repeats", type=int, default=None, help="timed windows (3; quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (20; quick 2)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="for every workload (512 / 32; quick 16 / 8)"
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the deepworks_compile contender (default: on with CUDA, off on the CPU)",
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the GPU's dense bf16 peak in TFLOP/s (default: looked up from the device name)",
    )
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: bench/results/)")
    args = p.parse_args(argv)
    console = Console(width=max(Console().width, 140))
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "no CUDA device: the GPU benchmark needs an NVIDIA GPU; "
            "`--device cpu --quick` runs a smoke test"
        )
        return 0
    device = torch.device(args.device)
    args.steps = args.steps or (2 if args.quick else 50)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 20)
    if min(args.steps, args.repeats, args.warmup) < 1:
        p.error("--steps, --repeats and --warmup must be >= 1")
    compile_ = args.compile if args.compile is not None else device.type == "cuda"
    contenders = [c for c in CONTENDERS if compile_ or c != "deepworks_compile"]
    if not compile_:
        why = "--no-compile" if args.compile is False else "off by default on the CPU"
        console.print(f"[yellow]deepworks_compile: skipped ({why}; --compile runs it)[/]")
    if device.type == "cpu":
        console.print(
            "[yellow]CPU run: fp32 everywhere (precision auto is fp32 on the CPU); a smoke test "
            "of the script, not a GPU measurement[/]"
        )

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    if peak is None and device.type == "cuda":
        peak = peak_flops(device_name)
        if peak is None:
            console.print(
                f"[red]{device_name}: its dense bf16 peak is not known here; give it with "
                "--peak-tflops (e.g. 989 for an H100 SXM)[/]"
            )
            return 2
    extra: dict[str, Any] = {"deepworks": dw.__version__, "device": device_name}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        extra |= {
            "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            # what a plain fp32 loop gets from torch's defaults: TF32 convolutions, fp32 matmuls
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    info = common.machine(**extra)
    console.print(
        f"device {device_name}"
        + (f", dense bf16 peak {peak / 1e12:,.0f} TFLOP/s" if peak else ", no peak: no MFU")
    )

    builders = {"resnet": resnet, "gpt": gpt}
    t0 = time.perf_counter()
    results = []
    for name in WORKLOAD_NAMES:
        if args.only not in (None, name):
            continue
        w = builders[name](args.quick, device, args.batch_size)
        console.print(f"{name}: {w.describe}, batch {w.batch_size}")
        results.append(measure(w, contenders, device, args, peak, console))
        del w
    elapsed = time.perf_counter() - t0
    console.print(table(results))
    for res in results:
        if "flops_per_token" in res:
            console.print(
                f"{res['name']}: {res['flops_per_token'] / 1e9:.3f} GFLOP per token "
                f"(6 x {res['matmul_params'] / 1e6:.2f}M matmul params + attention 12·L·d·T)"
            )
    targets: list[dict] = []
    if device.type == "cuda":
        targets = verdicts(results, device_name, console)
    else:
        console.print("targets not judged: this is a CPU smoke run")
    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "command": "python " + shlex.join(["bench/gpu.py", *argv]),
        "quick": args.quick,
        "device": device.type,
        "peak_flops": peak,
        "warmup_steps": args.warmup,
        "steps_per_window": args.steps,
        "windows": args.repeats,
        "contenders": contenders,
        "lr": LR,
        "weight_decay": WEIGHT_DECAY,
        "elapsed_s": round(elapsed, 1),
        "results": results,
        "targets": targets,
    }
    parts = [info["hostname"], "gpu"]
    parts += ["cpu"] if device.type == "cpu" else []
    parts += [args.only] if args.only else []
    parts += ["quick"] if args.quick else []
    out = common.write_results(record, parts, args.out)
    console.print(f"wrote {out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
