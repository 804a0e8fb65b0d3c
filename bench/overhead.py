"""Trainer overhead: ``deepworks.Trainer`` against hand-written loops, Lightning and Keras 3.

Five contenders train the same model (same architecture; the same seeded init for the PyTorch
ones) on the same data with Adam (same lr), the same epochs and batch size, no validation:

- ``trainer``: ``dw.Trainer(...).fit(model, data, task="classification")``;
- ``dataloader``: a plain loop over ``DataLoader(TensorDataset(x, y), batch_size, shuffle=True)``;
- ``tensor``: a plain loop over a ``torch.randperm`` of the data, batches cut by slicing;
- ``lightning``: a ``LightningModule`` around the same model, ``pl.Trainer(...).fit`` on a
  ``DataLoader(TensorDataset, shuffle=True)``, the loss logged per epoch with ``self.log``;
- ``keras``: the same architecture written in Keras 3 (torch backend), ``compile`` + ``fit`` on
  NumPy arrays with ``shuffle=True``.

``lightning`` and ``keras`` run when ``pytorch_lightning`` and ``keras`` are importable (the
``bench`` extra) and are skipped with a note otherwise.

The plain loops are written the way a careful practitioner writes them: ``model.train()``,
``zero_grad(set_to_none=True)``, the loss summed on the device and read once per epoch.
Each contender is warmed up once (one untimed epoch), then the repeats run interleaved
(trainer, dataloader, tensor, lightning, keras, trainer, ...) and the medians are compared.
Three figures per contender, in samples/s:

- ``loop``: the training loop only (the Trainer's ``FitResult.samples_per_s``; the epoch loops of
  the plain ones; the epochs between the epoch-start and epoch-end callbacks of Lightning and
  Keras);
- ``wall``: the whole call: Trainer construction + ``fit``, or optimizer and loader construction
  + loop for the plain ones;
- ``cpu``: samples per CPU-second of this process over the same span as ``wall``. On a machine
  shared with other jobs it is the figure least disturbed by them (time spent descheduled is not
  counted); with several threads it also counts time threads spend waiting for each other.

Peak memory (``--memory``, on by default except with ``--quick``): the RSS high-water mark can
only grow within a process, so each contender trains once more, one epoch, in a fresh child
process (``python bench/overhead.py --child CONTENDER WORKLOAD``) that imports what it needs and
builds the data first (and makes the imports of a first optimizer step, see
``_first_step_imports``). It reads its resident set size :math:`R_0` just before training and its
peak :math:`R_{peak}` after (Linux: the high-water mark ``VmHWM`` is reset to the current RSS by
writing ``5`` to ``/proc/self/clear_refs`` at :math:`R_0`; elsewhere ``ru_maxrss``). The figure
is the increase :math:`R_{peak} - R_0`. The headline figure is the same increase for the
anonymous memory alone (``RssAnon``, the heap: tensors, optimizer state, allocator caches),
sampled every 0.5 ms by a thread (see ``AnonPeak``): whole-RSS figures also count the shared
library pages that a kernel's first call maps in, which depends on what the imports touched.

Usage:
    python bench/overhead.py                 # default sizes, one thread: about 8 minutes
    python bench/overhead.py --quick         # smoke run, ~30 s
    python bench/overhead.py --only cnn      # one workload: mlp, cnn, lstm or transformer
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
import logging
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import common
import deepworks as dw
from deepworks.data import Split

LR = 1e-3
SEED = 0
NUM_CLASSES = 10
SEQ_LEN, SEQ_FEATURES = 32, 16  # the (B, 32, 16) float sequences of the lstm/transformer workloads
CONTENDERS = ("trainer", "dataloader", "tensor", "lightning", "keras")
BASELINES = CONTENDERS[1:]  # each is compared with the trainer
KINDS = ("loop", "wall", "cpu")  # the three figures of each contender (see the module docstring)


# --- optional peers: imported on first use, None when not installed ----------------------------
_PEERS: dict[str, Any] = {}


def lightning() -> Any:
    """The ``pytorch_lightning`` module, or None when it is not installed."""
    if "lightning" not in _PEERS:
        try:
            import pytorch_lightning as pl
        except ImportError:
            pl = None
        else:
            # the per-fit info lines ("GPU available: ...") and the hints about DataLoader workers
            # and the logging interval are the same in every run; keep the output readable
            logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
            logging.getLogger("lightning_fabric").setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
            warnings.filterwarnings(
                "ignore", ".*LeafSpec.*"
            )  # torch 2.13 deprecation in its pytree
        _PEERS["lightning"] = pl
    return _PEERS["lightning"]


def keras() -> Any:
    """The ``keras`` module on its torch backend, or None when it is not installed."""
    if "keras" not in _PEERS:
        # the backend is chosen once, when keras is first imported
        os.environ["KERAS_BACKEND"] = "torch"
        try:
            import keras as k
        except ImportError:
            k = None
        else:
            if k.backend.backend() != "torch":  # imported earlier with another backend
                k = None
        _PEERS["keras"] = k
    return _PEERS["keras"]


# --- workloads ---------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    describe: str
    make_model: Callable[[], nn.Module]
    make_keras: Callable[[], Any]  # the same architecture as a keras.Model (channels_last)
    x: torch.Tensor  # (N, ...) float32
    y: torch.Tensor  # (N,) int64
    epochs: int
    batch_size: int
    keras_data: tuple[Any, Any] | None = None  # (x, y) as NumPy arrays, made on first use


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


class LSTMClassifier(nn.Module):
    """(B, L, F) -> one-layer LSTM -> the last hidden state h_L -> Linear -> class logits."""

    def __init__(self, features: int = SEQ_FEATURES, hidden: int = 64) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)  # h: (num_layers, B, hidden)
        return self.head(h[-1])


class TransformerClassifier(nn.Module):
    """(B, L, F) -> Linear to d_model -> post-norm Transformer encoder -> mean over L -> Linear.

    Two ``nn.TransformerEncoderLayer`` (d_model 64, 4 heads, feed-forward 128, ReLU, no dropout so
    that the Keras copy computes the same function); no positional encoding: the classes differ by
    their per-position templates, which the attention still separates after the mean.
    """

    def __init__(self, features: int = SEQ_FEATURES, d_model: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.proj = nn.Linear(features, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead=4, dim_feedforward=128, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.proj(x)).mean(dim=1))


def _lstm() -> nn.Module:
    torch.manual_seed(SEED)
    return LSTMClassifier()


def _transformer() -> nn.Module:
    torch.manual_seed(SEED)
    return TransformerClassifier()


# The Keras copies: the same layers and sizes; Keras initialises them its own way (Glorot).
def _keras_mlp() -> Any:
    k = keras()
    return k.Sequential(
        [
            k.Input((64,)),
            k.layers.Dense(256, activation="relu"),
            k.layers.Dense(128, activation="relu"),
            k.layers.Dense(NUM_CLASSES),
        ]
    )


def _keras_cnn() -> Any:
    k, L = keras(), keras().layers
    return k.Sequential(
        [
            k.Input((28, 28, 1)),  # channels_last, the Keras default
            L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Flatten(), L.Dense(NUM_CLASSES),
        ]
    )  # fmt: skip


def _keras_lstm() -> Any:
    k = keras()
    return k.Sequential(
        [k.Input((SEQ_LEN, SEQ_FEATURES)), k.layers.LSTM(64), k.layers.Dense(NUM_CLASSES)]
    )


def _keras_transformer() -> Any:
    k, L = keras(), keras().layers
    inputs = k.Input((SEQ_LEN, SEQ_FEATURES))
    h = L.Dense(64)(inputs)
    for _ in range(2):  # post-norm, as nn.TransformerEncoderLayer(norm_first=False)
        h = L.LayerNormalization(epsilon=1e-5)(h + L.MultiHeadAttention(4, key_dim=16)(h, h))
        ff = L.Dense(64)(L.Dense(128, activation="relu")(h))
        h = L.LayerNormalization(epsilon=1e-5)(h + ff)
    outputs = L.Dense(NUM_CLASSES)(L.GlobalAveragePooling1D()(h))
    return k.Model(inputs, outputs)


def _clusters(n: int, shape: tuple[int, ...], noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable synthetic classes: a random template per class plus Gaussian noise."""
    g = torch.Generator().manual_seed(SEED)
    templates = torch.randn(NUM_CLASSES, *shape, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    x = templates[y] + noise * torch.randn(n, *shape, generator=g)
    return x.contiguous(), y


WORKLOAD_NAMES = ("mlp", "cnn", "lstm", "transformer")


def workloads(quick: bool, only: str | None = None) -> list[Workload]:
    """The workloads (only the one named ``only`` when given; its data alone is built)."""
    n_mlp, n_cnn, n_seq, epochs = (4_000, 640, 320, 1) if quick else (20_000, 6_000, 2_000, 3)
    seq = (SEQ_LEN, SEQ_FEATURES)
    specs = {
        "mlp": (lambda: _clusters(n_mlp, (64,), 2.0), _mlp, _keras_mlp, epochs,
                f"MLP 64-256-128-10, {n_mlp}x64"),
        "cnn": (lambda: _clusters(n_cnn, (1, 28, 28), 3.0), _cnn, _keras_cnn, max(1, epochs - 1),
                f"CNN 2xconv, {n_cnn}x1x28x28"),
        "lstm": (lambda: _clusters(n_seq, seq, 1.0), _lstm, _keras_lstm, max(1, epochs - 1),
                 f"LSTM 16-64 last state, {n_seq}x{SEQ_LEN}x{SEQ_FEATURES}"),
        "transformer": (lambda: _clusters(n_seq, seq, 1.0), _transformer, _keras_transformer,
                        max(1, epochs - 1),
                        f"Transformer 2x(d64, 4 heads, ff128) mean-pool, "
                        f"{n_seq}x{SEQ_LEN}x{SEQ_FEATURES}"),
    }  # fmt: skip
    out = []
    for name in WORKLOAD_NAMES:
        if only not in (None, name):
            continue
        data, make_model, make_keras, n_epochs, describe = specs[name]
        x, y = data()
        out.append(Workload(name, describe, make_model, make_keras, x, y, n_epochs, 64))
    return out


# --- contenders: each returns loop, wall and CPU seconds and the last epoch's mean train loss ---
#: Extra keyword arguments of the hand-written loops' Adam (``--fused-baseline``: fused=True).
BASELINE_ADAM: dict = {}
#: The hand-written loops' conv-net layout (``--channels-last-baseline``: NHWC, as the Trainer).
BASELINE_NHWC = {"on": False}


def _baseline_model(w: Workload) -> nn.Module:
    model = w.make_model()
    return model.to(memory_format=torch.channels_last) if BASELINE_NHWC["on"] else model


def _baseline_batch(x: torch.Tensor) -> torch.Tensor:
    if BASELINE_NHWC["on"] and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


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
    model = _baseline_model(w)
    t0, c0 = time.perf_counter(), time.process_time()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, **BASELINE_ADAM)
    loader = DataLoader(TensorDataset(w.x, w.y), batch_size=w.batch_size, shuffle=True)
    t1 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        total = torch.zeros(())
        for x, y in loader:
            loss = loss_fn(model(_baseline_batch(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        epoch_loss = total.item() / len(loader)
    t2, cpu = time.perf_counter(), time.process_time() - c0
    return {"loop_s": t2 - t1, "wall_s": t2 - t0, "cpu_s": cpu, "final_train_loss": epoch_loss}


def run_tensor(w: Workload, epochs: int) -> dict:
    model = _baseline_model(w)
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
            loss = loss_fn(model(_baseline_batch(w.x[idx])), w.y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        epoch_loss = total.item() / -(-n // b)
    t2, cpu = time.perf_counter(), time.process_time() - c0
    return {"loop_s": t2 - t1, "wall_s": t2 - t0, "cpu_s": cpu, "final_train_loss": epoch_loss}


_LIGHTNING_CLASSES: dict[str, type] = {}


def _lightning_classes() -> tuple[type, type]:
    """``LitClassifier`` and ``EpochTimer``, defined once Lightning is known to be importable."""
    if not _LIGHTNING_CLASSES:
        pl = lightning()

        class LitClassifier(pl.LightningModule):
            """The usual LightningModule: the model, its loss, its optimizer, the loss logged."""

            def __init__(self, model: nn.Module) -> None:
                super().__init__()
                self.model = model
                self.loss_fn = nn.CrossEntropyLoss()

            def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
                x, y = batch
                loss = self.loss_fn(self.model(x), y)
                self.log("train_loss", loss, on_step=False, on_epoch=True)
                return loss

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return torch.optim.Adam(self.parameters(), lr=LR)

        class EpochTimer(pl.Callback):
            """Seconds spent between the start and the end of each training epoch."""

            def __init__(self) -> None:
                self.total = 0.0

            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                self.t = time.perf_counter()

            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                self.total += time.perf_counter() - self.t

        _LIGHTNING_CLASSES.update(module=LitClassifier, timer=EpochTimer)
    return _LIGHTNING_CLASSES["module"], _LIGHTNING_CLASSES["timer"]


def run_lightning(w: Workload, epochs: int) -> dict:
    pl = lightning()
    lit_classifier, epoch_timer = _lightning_classes()
    model = w.make_model()
    t0, c0 = time.perf_counter(), time.process_time()
    module = lit_classifier(model)
    loader = DataLoader(TensorDataset(w.x, w.y), batch_size=w.batch_size, shuffle=True)
    timer = epoch_timer()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=loader)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    loss = float(trainer.callback_metrics["train_loss"])
    return {"loop_s": timer.total, "wall_s": wall, "cpu_s": cpu, "final_train_loss": loss}


def _keras_data(w: Workload) -> tuple[Any, Any]:
    """The workload's data as NumPy arrays, images channels_last: (N, 1, H, W) -> (N, H, W, 1)."""
    if w.keras_data is None:
        x = w.x.permute(0, 2, 3, 1).contiguous() if w.x.dim() == 4 else w.x
        w.keras_data = (x.numpy(), w.y.numpy())  # a view of the tensors, a copy for images
    return w.keras_data


def run_keras(w: Workload, epochs: int) -> dict:
    k = keras()

    class EpochTimer(k.callbacks.Callback):
        """Seconds spent between the start and the end of each training epoch."""

        total = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.total += time.perf_counter() - self.t

    k.utils.set_random_seed(SEED)
    model = w.make_keras()
    x, y = _keras_data(w)  # users of Keras hold their data in NumPy arrays already: not timed
    timer = EpochTimer()
    t0, c0 = time.perf_counter(), time.process_time()
    model.compile(
        optimizer=k.optimizers.Adam(LR),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(
        x, y, batch_size=w.batch_size, epochs=epochs, verbose=0, shuffle=True, callbacks=[timer]
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    loss = history.history["loss"][-1]
    return {"loop_s": timer.total, "wall_s": wall, "cpu_s": cpu, "final_train_loss": loss}


RUNNERS = {
    "trainer": run_trainer,
    "dataloader": run_dataloader,
    "tensor": run_tensor,
    "lightning": run_lightning,
    "keras": run_keras,
}


def available(name: str) -> bool:
    """Whether a contender can run here: the optional peers need their package."""
    if name == "lightning":
        return lightning() is not None
    if name == "keras":
        return keras() is not None
    return True


# --- measuring -----------------------------------------------------------------------------------
def measure(w: Workload, contenders: list[str], repeats: int, console: Console) -> dict:
    """Warm up each contender (one untimed epoch), then time ``repeats`` interleaved rounds."""
    warm = {name: RUNNERS[name](w, 1) for name in contenders}
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    samples = len(w.y) * w.epochs
    for r in range(repeats):
        for name in contenders:
            gc.collect()
            run = RUNNERS[name](w, w.epochs)
            run.pop("optimizer", None)
            runs[name].append(run)
        console.log(
            f"{w.name} round {r + 1}/{repeats}: "
            + ", ".join(f"{n} {samples / runs[n][-1]['loop_s']:,.0f}/s" for n in contenders)
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
        for base in contenders[1:]:
            out[f"ratio_trainer_over_{base}_{kind}"] = c["trainer"][key] / c[base][key]
            # the median of per-round ratios: less sensitive to load that drifts between rounds
            paired = [
                b[f"{kind}_s"] / t[f"{kind}_s"]
                for t, b in zip(runs["trainer"], runs[base], strict=True)
            ]
            out[f"paired_ratio_trainer_over_{base}_{kind}"] = statistics.median(paired)
    return out


# --- peak memory, one fresh process per contender ------------------------------------------------
class AnonPeak(threading.Thread):
    """Samples the process's anonymous resident memory (``RssAnon``) and keeps its maximum.

    ``RssAnon`` is the heap: tensors, optimizer state, allocator caches. Total RSS also counts the
    pages of shared libraries that a first call into a kernel maps in (tens of MB for torch's
    LSTM), which depends on what the imports before the baseline already touched. The sampling
    thread reads ``/proc/self/statm`` (resident - shared pages) every 0.5 ms; torch ops release the
    GIL, so it runs during the steps.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
        self.stop = threading.Event()
        self.peak_kb = self.now_kb()

    def now_kb(self) -> int:
        with open("/proc/self/statm", "rb") as f:
            _, resident, shared = f.read().split()[:3]
        return (int(resident) - int(shared)) * self.page_kb

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_kb = max(self.peak_kb, self.now_kb())
            time.sleep(0.0005)

    def finish(self) -> int:
        self.stop.set()
        self.join()
        return max(self.peak_kb, self.now_kb())


def _first_step_imports() -> None:
    """Make the imports torch makes lazily on the first optimizer step, outside the measurement.

    ``Optimizer.step`` imports ``torch._dynamo`` (with sympy and some 800 modules, ~60 MB of heap)
    the first time it runs: a one-time cost of any torch training, already paid at import time by
    Lightning and Keras, which import it themselves.
    """
    for fused in (False, True):
        p = nn.Parameter(torch.zeros(1))
        p.grad = torch.zeros(1)
        torch.optim.Adam([p], fused=fused).step()


def child(contender: str, workload: str, quick: bool) -> dict:
    """Train one epoch in this (fresh) process; the RSS just before training and its peak."""
    if not available(contender):  # imports the peer's package before the baseline is read
        return {"skipped": f"{contender} is not installed"}
    (w,) = workloads(quick, only=workload)
    if contender == "keras":
        _keras_data(w)  # the channels_last copy is data, made before the baseline as for the others
    _first_step_imports()
    gc.collect()
    before_kb = common.status_kb("VmRSS")
    reset = before_kb is not None and common.reset_peak_rss()
    if not reset:
        before_kb = common.maxrss_kb()  # no reset: the increase is over the process's peak so far
    anon = AnonPeak() if Path("/proc/self/statm").exists() else None
    if anon is not None:
        anon_before_kb = anon.peak_kb
        anon.start()
    run = RUNNERS[contender](w, 1)  # the peak is reached within the first epoch
    peak_kb = common.status_kb("VmHWM") if reset else common.maxrss_kb()
    out = {
        "rss_before_mb": before_kb / 1024,
        "rss_peak_mb": peak_kb / 1024,
        "rss_increase_mb": (peak_kb - before_kb) / 1024,
        "rss_method": "VmHWM reset via /proc/self/clear_refs" if reset else "ru_maxrss",
        "final_train_loss": run["final_train_loss"],
    }
    if anon is not None:
        anon_peak_kb = anon.finish()
        out["anon_before_mb"] = anon_before_kb / 1024
        out["anon_peak_mb"] = anon_peak_kb / 1024
        out["anon_increase_mb"] = (anon_peak_kb - anon_before_kb) / 1024
    # the headline figure: the heap when it can be sampled, the whole RSS otherwise
    out["peak_increase_mb"] = out.get("anon_increase_mb", out["rss_increase_mb"])
    return out


def measure_memory(
    w: Workload, contenders: list[str], quick: bool, threads: int, repeats: int = 3
) -> dict:
    """Run ``child`` for each contender in its own subprocess, ``repeats`` times, interleaved;
    the median peak increases and their ratios (one child's figure moves by ~20 %)."""
    out: dict[str, Any] = {"contenders": {}}
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name in contenders:
            cmd = [sys.executable, __file__, "--child", name, w.name, "--threads", str(threads)]
            cmd += ["--quick"] if quick else []
            cmd += ["--fused-baseline"] if BASELINE_ADAM.get("fused") else []
            cmd += ["--channels-last-baseline"] if BASELINE_NHWC["on"] else []
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                runs[name].append({"error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
                continue
            runs[name].append(json.loads(lines[-1]))
    for name, rs in runs.items():
        good = [r for r in rs if "error" not in r and "skipped" not in r]
        if not good:
            out["contenders"][name] = rs[-1]
            continue
        median = {k: statistics.median(r[k] for r in good) for k, v in good[0].items()
                  if isinstance(v, float)}  # fmt: skip
        out["contenders"][name] = {**good[0], **median, "runs": rs}
    c = out["contenders"]
    for prefix, key in (("", "peak_increase_mb"), ("rss_", "rss_increase_mb")):
        trainer = c.get("trainer", {}).get(key)
        for base in contenders[1:]:
            other = c.get(base, {}).get(key)
            if trainer is not None and other:
                out[f"{prefix}ratio_trainer_over_{base}"] = trainer / other
    return out


# --- reporting -----------------------------------------------------------------------------------
def machine() -> dict:
    pl, k = lightning(), keras()
    return common.machine(
        deepworks=dw.__version__,
        pytorch_lightning=pl.__version__ if pl else None,
        keras=k.__version__ if k else None,
    )


def table(results: list[dict]) -> Table:
    t = Table(title="Trainer vs hand-written loops and peers: median samples/s (higher is better)")
    t.add_column("workload")
    t.add_column("contender")
    for col in ("loop /s", "loop min-max", "wall /s", "cpu /s", "loss", "+heap MB", "+RSS MB"):
        t.add_column(col, justify="right")
    for col in ("trainer/this: loop", "wall", "cpu", "+heap"):
        t.add_column(col, justify="right")
    for res in results:
        c = res["contenders"]
        mem = res.get("memory", {})
        for i, name in enumerate(c):
            m = c[name]
            peak = mem.get("contenders", {}).get(name, {}).get("peak_increase_mb")
            rss = mem.get("contenders", {}).get(name, {}).get("rss_increase_mb")
            ratios = ["", "", "", ""]
            if name != "trainer":
                ratios = [f"{res[f'ratio_trainer_over_{name}_{k}']:.2f}x" for k in KINDS]
                mem_ratio = mem.get(f"ratio_trainer_over_{name}")
                ratios.append(f"{mem_ratio:.2f}x" if mem_ratio is not None else "")
            t.add_row(
                res["name"] if i == 0 else "",
                name,
                f"{m['loop_samples_per_s']:,.0f}",
                f"{m['loop_samples_per_s_min']:,.0f}-{m['loop_samples_per_s_max']:,.0f}",
                f"{m['wall_samples_per_s']:,.0f}",
                f"{m['cpu_samples_per_s']:,.0f}",
                f"{m['final_train_loss']:.3f}",
                f"{peak:.1f}" if peak is not None else "",
                f"{rss:.1f}" if rss is not None else "",
                *ratios,
                end_section=i == len(c) - 1,
            )
    return t


#: The targets: Trainer / contender throughput (loop) at least this much (against Lightning and
#: Keras: on the CNN); Trainer / hand-written loop peak memory increase at most this much.
TARGETS = {"dataloader": 1.0, "lightning": 1.1, "keras": 1.5}
PEER_TARGET_WORKLOADS = ("cnn",)
MEMORY_TARGET = 1.1


def verdicts(res: dict, console: Console) -> None:
    def verdict(ok: bool) -> str:
        return "[green]met[/]" if ok else "[red]not met[/]"

    parts = []
    for base in res["contenders"]:
        if base == "trainer":
            continue
        r = res[f"ratio_trainer_over_{base}_loop"]
        paired = res[f"paired_ratio_trainer_over_{base}_loop"]
        cpu = res[f"ratio_trainer_over_{base}_cpu"]
        text = f"Trainer/{base} loop {r:.2f}x (per-round {paired:.2f}x, cpu {cpu:.2f}x)"
        if base in TARGETS and (base == "dataloader" or res["name"] in PEER_TARGET_WORKLOADS):
            text += f", target >= {TARGETS[base]}x {verdict(r >= TARGETS[base])}"
        parts.append(text)
    console.print("  " + ";\n  ".join(parts))
    mem = res.get("memory")
    if mem:
        for base in ("dataloader", "tensor"):
            r = mem.get(f"ratio_trainer_over_{base}")
            rss = mem.get(f"rss_ratio_trainer_over_{base}")
            if r is not None:
                console.print(
                    f"  peak memory increase Trainer/{base} {r:.2f}x (whole RSS {rss:.2f}x), "
                    f"target <= {MEMORY_TARGET}x {verdict(r <= MEMORY_TARGET)}"
                )
        for name, m in mem["contenders"].items():
            if "error" in m or "skipped" in m:
                console.print(f"  [yellow]memory {name}: {m.get('error') or m.get('skipped')}[/]")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of ~30 s")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5, quick 2)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads for every contender (default 1; 0: torch's default)",
    )
    p.add_argument("--only", choices=WORKLOAD_NAMES, default=None, help="run one workload")
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="peak RSS increase of each contender, one subprocess each (default: on, off with "
        "--quick)",
    )
    p.add_argument(
        "--fused-baseline",
        action="store_true",
        help="give the hand-written loops Adam(fused=True) too (to compare loops alone when the "
        "Trainer's optimizer is fused)",
    )
    p.add_argument(
        "--channels-last-baseline",
        action="store_true",
        help="lay the hand-written loops' conv net out NHWC too (the Trainer's default layout)",
    )
    p.add_argument(
        "--memory-repeats", type=int, default=3, help="child processes per contender (median)"
    )
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: bench/results/)")
    p.add_argument(
        "--child",
        nargs=2,
        metavar=("CONTENDER", "WORKLOAD"),
        default=None,
        help="internal: train once and print the peak RSS increase as JSON (used by --memory)",
    )
    args = p.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    memory = args.memory if args.memory is not None else not args.quick
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.fused_baseline:
        BASELINE_ADAM["fused"] = True
    if args.channels_last_baseline:
        BASELINE_NHWC["on"] = True
    if args.child:
        print(json.dumps(child(*args.child, quick=args.quick)))
        return 0
    console = Console(width=max(Console().width, 140))
    contenders = [name for name in CONTENDERS if available(name)]
    for name in sorted(set(CONTENDERS) - set(contenders)):
        package = {"lightning": "pytorch-lightning", "keras": "keras"}[name]
        console.print(
            f"[yellow]{name}: skipped, {package} is not installed (pip install -e '.\\[bench]')[/]"
        )
    info = machine()
    load_before = os.getloadavg()
    if load_before[0] > (os.cpu_count() or 1) * 0.5:
        console.print(
            f"[yellow]load average {load_before[0]:.1f} on {os.cpu_count()} cores: other "
            "processes compete for the CPU; absolute figures will be low and noisy[/]"
        )
    t0 = time.perf_counter()
    results = []
    for w in workloads(args.quick, only=args.only):
        results.append(measure(w, contenders, repeats, console))
    load_after_speed = os.getloadavg()
    if memory:
        for res, w in zip(results, workloads(args.quick, only=args.only), strict=True):
            res["memory"] = measure_memory(
                w, contenders, args.quick, args.threads, args.memory_repeats
            )
            increases = {
                name: m.get("peak_increase_mb", m.get("error") or m.get("skipped"))
                for name, m in res["memory"]["contenders"].items()
            }
            console.log(
                f"{w.name} peak heap increase, MB: "
                + ", ".join(
                    f"{n} {v:.1f}" if isinstance(v, float) else f"{n} ({v})"
                    for n, v in increases.items()
                )
            )
    elapsed = time.perf_counter() - t0
    console.print(table(results))
    for res in results:
        console.print(
            f"{res['name']}: {res['workload']}, {res['epochs']} epoch(s), batch "
            f"{res['batch_size']}; Trainer optimizer {res['trainer_optimizer']}"
        )
        verdicts(res, console)
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
        "contenders": contenders,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after_throughput": [round(x, 2) for x in load_after_speed],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "elapsed_s": round(elapsed, 1),
        "results": results,
    }
    parts = [info["hostname"], "cpu"]
    parts += [f"t{torch.get_num_threads()}"]
    parts += [args.only] if args.only else []
    parts += ["fused"] if args.fused_baseline else []
    parts += ["nhwc"] if args.channels_last_baseline else []
    parts += ["quick"] if args.quick else []
    out = common.write_results(record, parts, args.out)
    console.print(f"wrote {out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
