"""Batching: a tensor-resident batcher for in-memory data, a DataLoader for everything else.

The fast path. A hand-written loop usually wraps tensors in a ``TensorDataset`` and a
``DataLoader``, which fetches every sample with ``__getitem__`` and collates them again: per-sample
Python work on the hot path. :class:`TensorBatcher` keeps the whole split as two tensors (on the
training device when it fits) and slices a batch with one indexing op per tensor.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, TensorDataset

from deepworks.data.bundle import LazySplit, Split


class TensorBatcher:
    """Iterate over (x, y) batches of in-memory tensors, shuffled by a seeded permutation.

    Args:
        x: Inputs, (N, ...).
        y: Targets, (N, ...).
        batch_size: Samples per batch.
        shuffle: Draw a new permutation each epoch.
        drop_last: Drop the last incomplete batch.
        seed: Seed of the permutation generator; epoch e uses the generator's e-th draw.
        device: Where the batches live. The tensors are moved there once, up front.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
    ):
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.start = 0  # batch index to start the next epoch from (set when resuming mid-epoch)
        self.perm: torch.Tensor | None = None

    def __len__(self) -> int:
        n, b = len(self.y), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def new_epoch(self) -> None:
        """Draw the permutation of the coming epoch (kept so a resumed run can replay it)."""
        if self.shuffle:
            self.perm = torch.randperm(len(self.y), generator=self.generator)
            self.perm = self.perm.to(self.x.device)
        else:
            self.perm = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.start == 0:
            self.new_epoch()
        start, self.start = self.start, 0
        n, b = len(self.y), self.batch_size
        stop = (n // b) * b if self.drop_last else n
        for i in range(start * b, stop, b):
            if self.perm is None:
                yield self.x[i : i + b], self.y[i : i + b]
            else:
                idx = self.perm[i : i + b]
                yield self.x[idx], self.y[idx]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm}

    def load_state_dict(self, state: dict, start_batch: int = 0) -> None:
        self.generator.set_state(state["generator"])
        self.perm = state.get("perm")
        self.start = start_batch


def make_loader(
    split: Split | LazySplit,
    batch_size: int,
    *,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int = 0,
    kind: str = "auto",
    num_workers: int = 0,
    device: torch.device | str | None = None,
):
    """Batches of a split: a :class:`TensorBatcher` for in-memory tensors (``kind`` "auto" or
    "tensor"), a ``torch.utils.data.DataLoader`` for lazy splits or ``kind="dataloader"``."""
    if isinstance(split, Split) and kind in ("auto", "tensor"):
        return TensorBatcher(split.x, split.y, batch_size, shuffle, drop_last, seed, device)
    dataset = split.dataset if isinstance(split, LazySplit) else TensorDataset(split.x, split.y)
    pin = torch.device(device).type == "cuda" if device is not None else False
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )
