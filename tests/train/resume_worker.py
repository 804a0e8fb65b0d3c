"""A training process for the crash / resume tests: trains digits with dropout, checkpointing
often, optionally killing itself (SIGKILL) after a given step, and resuming when asked.

Usage: python resume_worker.py RUN_DIR LOADER [--kill-at STEP] [--resume] [--every N]
                               [--epochs E] [--nan-at STEP]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import torch

import deepworks as dw
from deepworks.train.callbacks import Callback
from deepworks.train.checkpoint import CheckpointDir


class KillAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_batch_end(self, trainer, loss):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class Ready(Callback):
    def on_train_start(self, trainer):
        print("ready", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("loader", choices=["tensor", "dataloader"])
    p.add_argument("--kill-at", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--every", type=int, default=7)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()

    data = dw.load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = dw.create_model("mlp", in_features=64, num_classes=10, hidden=[32], dropout=0.3)
    callbacks = [Ready()] + ([KillAt(args.kill_at)] if args.kill_at else [])
    trainer = dw.Trainer(
        epochs=args.epochs,
        batch_size=args.batch_size,
        loader=args.loader,
        progress=False,
        optimizer={"name": "adam", "lr": 1e-3},
        scheduler={"name": "cosine"},
        checkpoint={"every_n_steps": args.every, "keep_last": 2},
        run_dir=args.run_dir,
        callbacks=callbacks,
        seed=0,
    )
    resume = None
    if args.resume:
        resume = CheckpointDir(os.path.join(args.run_dir, "checkpoints")).newest_valid(
            lambda line: print(line, file=sys.stderr)
        )
    trainer.fit(model, data, resume=resume)
    print("done", trainer.global_step, flush=True)


if __name__ == "__main__":
    main()
