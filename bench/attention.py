"""Softmax attention against linear attention: time and peak memory as the sequence grows.

Three attention layers of the same width run forward + backward on ``x`` of shape (B, L, D) at
each sequence length L (default 256, 512, 1024, 2048, 4096):

- ``sdpa``: :class:`deepworks.layers.attention.MultiHeadAttention`, its fast path
  (``F.scaled_dot_product_attention``; on CPU a fused flash-attention kernel that never holds
  the L x L score matrix, but still does O(L^2 d) work);
- ``softmax``: the same layer with ``need_weights=True``, the explicit
  ``softmax(Q K^T / sqrt(d)) V`` that materializes the (B, H, L, L) probabilities: O(L^2) memory;
- ``linear``: :class:`deepworks.layers.linear_attention.LinearAttention` (elu+1 kernel): O(L d^2)
  work and O(d^2) state per head, no L x L matrix.

Time: each layer is warmed up once per length, then ``--repeats`` rounds run interleaved (sdpa,
softmax, linear, sdpa, ...) and the median is reported. On CPU the figure is the process's CPU
time of the step (with one thread that is the compute time; on a machine shared with other jobs,
wall time also counts the time the process waits for a core, and swings with their load); the
wall times are recorded too. On CUDA it is the wall time between two synchronizations.

Peak memory: on CUDA, the increase of ``torch.cuda.max_memory_allocated`` over one forward +
backward. On CPU, one fresh child process per layer (``python bench/attention.py --child KIND
--lengths ...``) builds the layer, runs one step at a tiny length (lazy imports, kernel set-up),
then for each length: returns the allocator's free pages to the OS (``malloc_trim``), resets the
kernel's RSS high-water mark (``VmHWM``, by writing 5 to ``/proc/self/clear_refs``; elsewhere
``ru_maxrss``), runs one step and reports the increase of the high-water mark over the RSS
before it. Without the trim, memory freed by an earlier step would stay in the process and be
reused unseen; ``--fresh`` instead runs every (layer, length) in its own process (the reference
the trimmed figures were checked against, about 3 times slower).

Usage:
    python bench/attention.py                   # CPU, one thread, B 2, D 128, 4 heads: ~4 min
    python bench/attention.py --causal          # causal attention instead
    python bench/attention.py --device cuda     # GPU (memory from the CUDA allocator)
    python bench/attention.py --lengths 256 512 --repeats 2 --no-memory   # smoke run

Results go to ``bench/results/<hostname>-attention[-causal][-cuda].json`` with the date, the
machine, the command, every timed round, the medians and the growth per doubling of L.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from common import machine, maxrss_kb, reset_peak_rss, status_kb, write_results
from deepworks.layers.attention import MultiHeadAttention
from deepworks.layers.linear_attention import LinearAttention

KINDS = ("sdpa", "softmax", "linear")
LENGTHS = (256, 512, 1024, 2048, 4096)
SEED = 0


def build(kind: str, dim: int, heads: int, device: str) -> nn.Module:
    torch.manual_seed(SEED)
    layer = LinearAttention(dim, heads) if kind == "linear" else MultiHeadAttention(dim, heads)
    return layer.to(device)


def step(kind: str, layer: nn.Module, x: torch.Tensor, causal: bool) -> None:
    """One forward + backward; ``x.grad`` and the parameter grads are dropped afterwards."""
    out, _ = layer(x, causal=causal, need_weights=kind == "softmax")
    out.sum().backward()
    x.grad = None
    for p in layer.parameters():
        p.grad = None


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_input(batch: int, length: int, dim: int, device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED + length)
    return torch.randn(batch, length, dim, generator=g).to(device).requires_grad_()


def measure_time(args: argparse.Namespace, length: int, console: Console) -> dict[str, Any]:
    layers = {k: build(k, args.dim, args.heads, args.device) for k in args.kinds}
    x = make_input(args.batch, length, args.dim, args.device)
    wall: dict[str, list[float]] = {k: [] for k in args.kinds}
    cpu: dict[str, list[float]] = {k: [] for k in args.kinds}
    for kind, layer in layers.items():  # warm-up: kernel selection, allocator, lazy imports
        step(kind, layer, x, args.causal)
    sync(args.device)
    for _ in range(args.repeats):
        for kind, layer in layers.items():
            sync(args.device)
            t0, c0 = time.perf_counter(), time.process_time()
            step(kind, layer, x, args.causal)
            sync(args.device)
            wall[kind].append(time.perf_counter() - t0)
            cpu[kind].append(time.process_time() - c0)
    # CPU: the process's CPU time, which time spent descheduled by other jobs does not inflate
    # (one thread: CPU time = compute time). CUDA: wall time, the kernels run off the CPU.
    runs = wall if args.device.startswith("cuda") else cpu
    medians = {k: statistics.median(v) for k, v in runs.items()}
    console.log(f"L={length}: " + ", ".join(f"{k} {1000 * medians[k]:.1f} ms" for k in args.kinds))
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "time": medians,
        "time_measure": "wall" if runs is wall else "cpu",
        "wall_median_s": {k: statistics.median(v) for k, v in wall.items()},
    }


# --- peak memory -------------------------------------------------------------------------------
def _trim_heap() -> bool:
    """Give the allocator's free pages back to the OS (glibc ``malloc_trim``), so that the RSS
    before the next measurement holds no freed memory for it to reuse unseen."""
    gc.collect()
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) >= 0)
    except (OSError, AttributeError):
        return False


def child(args: argparse.Namespace, kind: str, lengths: list[int]) -> dict[str, Any]:
    """In a fresh process: the peak RSS increase of one forward + backward at each length.

    The lengths run in the order given, the heap trimmed before each (see ``_trim_heap``); one
    length per process (``--fresh``) needs no trimming.
    """
    layer = build(kind, args.dim, args.heads, "cpu")
    step(kind, layer, make_input(args.batch, 16, args.dim, "cpu"), args.causal)  # set-up
    out: dict[str, Any] = {}
    for length in lengths:
        x = make_input(args.batch, length, args.dim, "cpu")
        trimmed = _trim_heap()
        before_kb = status_kb("VmRSS")
        reset = before_kb is not None and reset_peak_rss()
        if not reset:
            before_kb = maxrss_kb()  # no reset: the increase is over the process's peak so far
        step(kind, layer, x, args.causal)
        peak_kb = status_kb("VmHWM") if reset else maxrss_kb()
        del x
        out[str(length)] = {
            "rss_before_mb": before_kb / 1024,
            "peak_increase_mb": (peak_kb - before_kb) / 1024,
            "method": ("VmHWM reset via /proc/self/clear_refs" if reset else "ru_maxrss")
            + (", heap trimmed" if trimmed else ""),
        }
    return out


def _cuda_memory(args: argparse.Namespace, kind: str, length: int) -> dict[str, Any]:
    layer = build(kind, args.dim, args.heads, args.device)
    step(kind, layer, make_input(args.batch, 16, args.dim, args.device), args.causal)
    x = make_input(args.batch, length, args.dim, args.device)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step(kind, layer, x, args.causal)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {"peak_increase_mb": (peak - before) / 2**20, "method": "cuda.max_memory_allocated"}


def measure_memory(args: argparse.Namespace, kind: str) -> dict[int, dict[str, Any]]:
    """Peak memory increase of ``kind`` at every length: in this process on CUDA, else in child
    processes (one per kind, or one per length with ``--fresh``)."""
    lengths = sorted(args.lengths)
    if args.device.startswith("cuda"):
        return {n: _cuda_memory(args, kind, n) for n in lengths}
    groups = [[n] for n in lengths] if args.fresh else [lengths]
    out: dict[int, dict[str, Any]] = {}
    for group in groups:
        cmd = [sys.executable, __file__, "--child", kind, *shape_args(args)]
        cmd += ["--lengths", *map(str, group)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            error = (proc.stderr.strip().splitlines() or ["?"])[-1]
            out.update({n: {"error": error} for n in group})
            continue
        out.update({int(n): m for n, m in json.loads(lines[-1]).items()})
    return out


def shape_args(args: argparse.Namespace) -> list[str]:
    """The options a child needs to build the same layer and input."""
    out = ["--batch", str(args.batch), "--dim", str(args.dim), "--heads", str(args.heads)]
    out += ["--threads", str(args.threads)] + (["--causal"] if args.causal else [])
    return out


# --- reporting ---------------------------------------------------------------------------------
def growth(values: dict[int, float]) -> dict[int, float]:
    """value(L) / value(L / 2) for each measured L whose half was measured too."""
    return {n: v / values[n // 2] for n, v in values.items() if values.get(n // 2)}


def table(results: dict[int, dict], kinds: list[str], title: str) -> Table:
    t = Table(title=title)
    t.add_column("L", justify="right")
    for kind in kinds:
        t.add_column(f"{kind} ms", justify="right")
        t.add_column("×", justify="right")
    for kind in kinds:
        t.add_column(f"{kind} MB", justify="right")
        t.add_column("×", justify="right")
    lengths = sorted(results)
    for n in lengths:
        row = [str(n)]
        for key, scale, fmt in (("time", 1000.0, "{:.1f}"), ("memory", 1.0, "{:.1f}")):
            for kind in kinds:
                value = results[n].get(key, {}).get(kind)
                prev = results.get(n // 2, {}).get(key, {}).get(kind)
                row.append(fmt.format(value * scale) if value is not None else "")
                row.append(f"{value / prev:.2f}" if value is not None and prev else "")
        t.add_row(*row)
    return t


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--causal", action="store_true", help="causal (decoder) attention")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per length (median)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (default 1; 0: all cores)"
    )
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: bench/results/)")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="CPU memory: one fresh process per (kind, length) instead of one per kind (slower)",
    )
    p.add_argument("--child", metavar="KIND", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args, args.child, args.lengths)))
        return 0
    console = Console(width=max(Console().width, 150))
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    info = machine(gpu=gpu)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    for n in sorted(args.lengths):
        results[n] = measure_time(args, n, console)
    if args.memory:
        for kind in args.kinds:
            for n, m in measure_memory(args, kind).items():
                results[n].setdefault("memory_runs", {})[kind] = m
                if "peak_increase_mb" in m:
                    results[n].setdefault("memory", {})[kind] = m["peak_increase_mb"]
            console.log(
                f"{kind} peak memory increase: "
                + ", ".join(
                    f"L={n} {r['memory'][kind]:.1f} MB"
                    for n, r in results.items()
                    if kind in r.get("memory", {})
                )
            )
    elapsed = time.perf_counter() - t0
    mode = "causal" if args.causal else "non-causal"
    title = (
        f"forward + backward, {mode}, B={args.batch}, D={args.dim}, {args.heads} heads, "
        f"{args.device}, {torch.get_num_threads()} thread(s): median "
        f"{'wall' if args.device.startswith('cuda') else 'CPU'} time and peak memory increase; "
        "× = growth over L/2"
    )
    console.print(table(results, args.kinds, title))
    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "command": "python " + shlex.join(["bench/attention.py", *argv]),
        "settings": {
            k: getattr(args, k)
            for k in ("batch", "dim", "heads", "causal", "repeats", "device", "kinds", "fresh")
        },
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "elapsed_s": round(elapsed, 1),
        "results": {str(n): r for n, r in results.items()},
        "growth_per_doubling": {
            key: {
                kind: {
                    str(n): round(g, 3)
                    for n, g in growth(
                        {n: r[key][kind] for n, r in results.items() if kind in r.get(key, {})}
                    ).items()
                }
                for kind in args.kinds
            }
            for key in ("time", "memory")
        },
    }
    parts = [info["hostname"], "attention"]
    parts += ["causal"] if args.causal else []
    parts += [] if args.device == "cpu" else [args.device.split(":")[0]]
    out = write_results(record, parts, args.out)
    console.print(f"wrote {out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
