"""TensorBatcher and make_loader: every sample once per epoch, seeded order, drop_last, resume."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from deepworks.data.batching import TensorBatcher, make_loader
from deepworks.data.bundle import LazySplit, Split

N, B = 103, 10


def ids_data(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """x holds each sample's id in both columns, y the id too: batches can be traced back."""
    ids = torch.arange(n)
    return torch.stack([ids, ids], dim=1).float(), ids.clone()


def epoch_ids(batches) -> list[torch.Tensor]:
    return [y for _, y in batches]


def test_every_sample_exactly_once_per_epoch_in_a_new_order():
    x, y = ids_data()
    batcher = TensorBatcher(x, y, B, shuffle=True, seed=3)
    assert len(batcher) == -(-N // B) == 11
    orders = []
    for _ in range(3):
        batches = list(batcher)
        assert len(batches) == len(batcher)
        assert [len(b) for _, b in batches] == [B] * 10 + [N % B]
        for bx, by in batches:  # inputs and targets stay paired
            assert torch.equal(bx[:, 0].long(), by)
        order = torch.cat(epoch_ids(batches))
        assert sorted(order.tolist()) == list(range(N))
        orders.append(order)
    assert not torch.equal(orders[0], orders[1])
    assert not torch.equal(orders[1], orders[2])


def test_order_replays_a_seeded_randperm_per_epoch():
    """Epoch e uses the e-th draw of torch.randperm from a generator seeded with the seed."""
    x, y = ids_data()
    batcher = TensorBatcher(x, y, B, shuffle=True, seed=7)
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        expected = torch.randperm(N, generator=g)
        assert torch.equal(torch.cat(epoch_ids(batcher)), expected)


def test_same_seed_same_order_other_seed_other_order():
    x, y = ids_data()
    a = torch.cat(epoch_ids(TensorBatcher(x, y, B, shuffle=True, seed=1)))
    b = torch.cat(epoch_ids(TensorBatcher(x, y, B, shuffle=True, seed=1)))
    c = torch.cat(epoch_ids(TensorBatcher(x, y, B, shuffle=True, seed=2)))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_no_shuffle_is_in_order():
    x, y = ids_data()
    batcher = TensorBatcher(x, y, B, shuffle=False)
    for _ in range(2):
        assert torch.equal(torch.cat(epoch_ids(batcher)), torch.arange(N))


@pytest.mark.parametrize("shuffle", [True, False])
def test_drop_last(shuffle):
    x, y = ids_data()
    batcher = TensorBatcher(x, y, B, shuffle=shuffle, drop_last=True, seed=0)
    assert len(batcher) == N // B == 10
    for _ in range(2):
        batches = epoch_ids(batcher)
        assert len(batches) == 10 and all(len(b) == B for b in batches)
        seen = torch.cat(batches)
        assert len(set(seen.tolist())) == (N // B) * B  # no repeats


def test_exact_multiple_has_no_empty_batch():
    x, y = ids_data(40)
    batches = list(TensorBatcher(x, y, B, shuffle=True))
    assert len(batches) == 4 and all(len(b) == B for _, b in batches)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("k", [0, 1, 4, 9])
def test_resume_mid_epoch_replays_the_remaining_batches(k, drop_last):
    x, y = ids_data()
    first = TensorBatcher(x, y, B, shuffle=True, drop_last=drop_last, seed=5)
    list(first)  # epoch 0
    it = iter(first)  # epoch 1, interrupted after k batches
    done = [next(it)[1] for _ in range(k)]
    state = first.sampler.state_dict()
    rest = [b for _, b in it]
    following = epoch_ids(first)  # epoch 2

    second = TensorBatcher(x, y, B, shuffle=True, drop_last=drop_last, seed=99)
    second.sampler.load_state_dict(state, start=k * B)
    resumed = epoch_ids(second)
    assert len(resumed) == len(rest)
    assert all(torch.equal(a, b) for a, b in zip(resumed, rest, strict=True))
    # the interrupted and the resumed parts together make the whole epoch, once each
    whole = torch.cat(done + resumed).tolist()
    expected = len(first) * B if drop_last else N
    assert len(whole) == len(set(whole)) == expected
    # and the epoch after the resumed one is the one the uninterrupted run drew
    assert all(torch.equal(a, b) for a, b in zip(epoch_ids(second), following, strict=True))


def test_device_argument_moves_data_once():
    x, y = ids_data()
    batcher = TensorBatcher(x, y, B, shuffle=True, device="cpu")
    bx, by = next(iter(batcher))
    assert bx.device.type == "cpu" and by.device.type == "cpu"


def test_make_loader_kinds():
    x, y = ids_data()
    split = Split(x, y)
    assert isinstance(make_loader(split, B), TensorBatcher)
    assert isinstance(make_loader(split, B, kind="tensor"), TensorBatcher)
    loader = make_loader(split, B, kind="dataloader", shuffle=True, seed=4)
    assert isinstance(loader, DataLoader)
    lazy = make_loader(LazySplit(TensorDataset(x, y), y), B, shuffle=True, seed=4)
    assert isinstance(lazy, DataLoader)


@pytest.mark.parametrize("lazy", [False, True])
def test_dataloader_covers_every_sample_once_and_is_seeded(lazy):
    x, y = ids_data()
    split = LazySplit(TensorDataset(x, y), y) if lazy else Split(x, y)
    a = make_loader(split, B, kind="dataloader", shuffle=True, seed=4)
    b = make_loader(split, B, kind="dataloader", shuffle=True, seed=4)
    orders = []
    for _ in range(2):
        oa, ob = torch.cat(epoch_ids(a)), torch.cat(epoch_ids(b))
        assert sorted(oa.tolist()) == list(range(N))
        assert torch.equal(oa, ob)
        orders.append(oa)
    assert not torch.equal(orders[0], orders[1])
    in_order = make_loader(split, B, kind="dataloader", shuffle=False)
    assert torch.equal(torch.cat(epoch_ids(in_order)), torch.arange(N))
