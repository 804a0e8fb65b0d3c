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


class EpochSampler(torch.utils.data.Sampler[int]):
    """Sample indices in a seeded random order per epoch, resumable from any position.

    The epoch's permutation and the generator state are part of :meth:`state_dict`, so a run
    resumed mid-epoch replays exactly the batches the interrupted run had left.

    Args:
        n: Number of samples.
        shuffle: Draw a new permutation every epoch (else 0..n-1 in order).
        seed: Seed of the permutation generator.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0):
        self.n, self.shuffle = n, shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.perm: torch.Tensor | None = None
        self.start = 0  # first sample position of the next iteration (set by load_state_dict)

    def __len__(self) -> int:
        return self.n

    def indices(self) -> torch.Tensor | None:
        """The index order of the coming pass (None: in order), minus any part already seen."""
        start, self.start = self.start, 0
        if start == 0 and self.shuffle:
            self.perm = torch.randperm(self.n, generator=self.generator)
        if self.perm is None:
            return None if start == 0 else torch.arange(start, self.n)
        return self.perm[start:]

    def __iter__(self) -> Iterator[int]:
        idx = self.indices()
        return iter(range(self.n) if idx is None else idx.tolist())

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm}

    def load_state_dict(self, state: dict, start: int = 0) -> None:
        """Restore the generator and the current permutation; continue at sample ``start``."""
        self.generator.set_state(state["generator"])
        self.perm = state.get("perm")
        self.start = start


class TensorBatcher:
    """Iterate over (x, y) batches of in-memory tensors: one indexing op per tensor and batch.

    Args:
        x: Inputs, (N, ...).
        y: Targets, (N, ...).
        batch_size: Samples per batch.
        shuffle: Draw a new permutation each epoch.
        drop_last: Drop the last incomplete batch.
        seed: Seed of the permutation generator.
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
        self.drop_last = drop_last
        self.sampler = EpochSampler(len(y), shuffle, seed)

    def __len__(self) -> int:
        n, b = len(self.y), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        first = self.sampler.start
        idx = self.sampler.indices()
        n, b = len(self.y), self.batch_size
        stop = ((n // b) * b if self.drop_last else n) - first
        if idx is None:  # in order: contiguous slices, no gather
            for i in range(first, first + stop, b):
                yield self.x[i : i + b], self.y[i : i + b]
            return
        idx = idx.to(self.x.device)
        for i in range(0, stop, b):
            j = idx[i : i + b]
            yield self.x[j], self.y[j]


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
        sampler=EpochSampler(len(split), shuffle, seed),
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(seed),  # worker seeds; the global RNG stays put
        persistent_workers=num_workers > 0,
    )
