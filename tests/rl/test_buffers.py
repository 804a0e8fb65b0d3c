"""Replay buffers: uniform sampling over the filled part only, the ring overwrites the oldest,
prioritized sampling follows p^α / Σ p^α with the paper's weights, a state-dict round trip
(through safetensors) samples the same future; n-step targets against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from deepworks.rl.buffers import PrioritizedReplayBuffer, ReplayBuffer, SumTree, nstep_targets


def fill(buffer, start: int, count: int) -> None:
    """Add transitions whose observations are start, start + 1, ... (n_envs per call)."""
    n = buffer.n_envs
    for value in range(start, start + count, n):
        obs = torch.arange(value, value + n, dtype=torch.float32)[:, None].expand(n, 2)
        buffer.add(obs, torch.arange(n) % 3, obs[:, 0] * 10, obs + 0.5, obs[:, 0] % 4 == 0)


def test_uniform_over_filled_part_and_never_unfilled():
    buffer = ReplayBuffer(16, (2,))
    fill(buffer, 1, 7)  # 7 of 16 slots filled, observations 1..7; empty slots hold 0
    assert len(buffer) == 7
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([buffer.sample(500, g)["obs"][:, 0] for _ in range(14)])  # 7000 draws
    assert set(draws.long().tolist()) <= set(range(1, 8))
    counts = torch.bincount(draws.long(), minlength=8)[1:].double()
    expected = len(draws) / 7
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 22.46  # χ²(6 dof) at p = 0.001
    assert (counts > 0).all()
    batch = buffer.sample(64, g)  # the fields stay aligned
    torch.testing.assert_close(batch["rewards"], batch["obs"][:, 0] * 10)
    torch.testing.assert_close(batch["next_obs"], batch["obs"] + 0.5)
    torch.testing.assert_close(batch["terminated"], (batch["obs"][:, 0] % 4 == 0).float())


def test_ring_overwrites_the_oldest():
    buffer = ReplayBuffer(5, (2,), n_envs=2)
    fill(buffer, 0, 8)  # 8 transitions into 5 slots
    assert len(buffer) == 5 and buffer.pos == 3
    kept = set(buffer.state_dict()["obs"][:, 0].long().tolist())
    assert kept == {3, 4, 5, 6, 7}
    g = torch.Generator().manual_seed(1)
    assert set(buffer.sample(200, g)["obs"][:, 0].long().tolist()) == kept


def test_sum_tree_find_matches_cumulative_search():
    rng = np.random.default_rng(0)
    tree = SumTree(11)  # not a power of two: 5 padding leaves
    p = rng.uniform(0.1, 2.0, 11)
    tree.update(torch.arange(11), torch.from_numpy(p))
    assert tree.total == pytest.approx(p.sum())
    s = rng.uniform(0, p.sum(), 1000)
    expected = np.searchsorted(np.cumsum(p), s, side="right")
    assert (tree.find(torch.from_numpy(s)).numpy() == expected).all()
    tree.update(torch.tensor([3, 3, 7]), torch.tensor([5.0, 5.0, 0.0]))  # duplicates, a zero
    p[3], p[7] = 5.0, 0.0
    assert tree.total == pytest.approx(p.sum())
    expected = np.searchsorted(np.cumsum(p), s, side="right")
    assert (tree.find(torch.from_numpy(s)).numpy() == expected).all()


def test_sum_tree_boundaries_and_zero_leaves():
    tree = SumTree(4)
    tree.update(
        torch.arange(4), torch.tensor([1.0, 2.0, 0.0, 3.0])
    )  # intervals [0,1) [1,3) - [3,6)
    found = tree.find(torch.tensor([0.0, 0.999, 1.0, 2.5, 3.0, 5.999]))
    assert found.tolist() == [0, 0, 1, 1, 3, 3]  # a prefix sum on a boundary starts the next leaf


def frequencies(buffer, g, draws: int = 40_000) -> torch.Tensor:
    idx = torch.cat([buffer.sample(1000, g)["indices"] for _ in range(draws // 1000)])
    return torch.bincount(idx, minlength=len(buffer)).double() / draws


def test_prioritized_frequencies_weights_and_updates():
    alpha, beta = 0.6, 0.4
    buffer = PrioritizedReplayBuffer(8, (2,), alpha=alpha, beta=beta, eps=1e-3)
    fill(buffer, 0, 4)
    errors = torch.tensor([1.0, 2.0, 3.0, 4.0])
    buffer.update_priorities(torch.arange(4), -errors)  # the sign of δ does not matter
    g = torch.Generator().manual_seed(0)
    p = (errors + 1e-3) ** alpha
    target = p / p.sum()
    freq = frequencies(buffer, g)
    assert (freq - target.double()).abs().max() < 0.01

    batch = buffer.sample(256, g)
    probs = target.double()[batch["indices"]]
    w = (4 * probs) ** -beta
    torch.testing.assert_close(batch["weights"], (w / w.max()).float())
    assert float(batch["weights"].max()) == 1.0
    torch.testing.assert_close(batch["obs"][:, 0], batch["indices"].float())

    buffer.update_priorities(torch.tensor([0]), torch.tensor([20.0]))  # 0 becomes the likeliest
    p[0] = (20.0 + 1e-3) ** alpha
    freq = frequencies(buffer, g)
    assert (freq - (p / p.sum()).double()).abs().max() < 0.01
    assert freq[0] > 0.4

    fill(buffer, 4, 1)  # a new transition gets the largest priority seen, (20 + ε)^α
    assert float(buffer.tree.priorities(torch.tensor([4]))) == pytest.approx(float(p[0]))
    assert frequencies(buffer, g, 10_000)[4] > 0.2  # with priority 1 it would be ~0.08


@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_round_trip_samples_the_same_future(prioritized):
    kind = PrioritizedReplayBuffer if prioritized else ReplayBuffer
    make = lambda: kind(10, (2,), n_envs=2)  # noqa: E731
    buffer = make()
    fill(buffer, 0, 14)  # wrapped once: pos is 4
    if prioritized:
        buffer.update_priorities(torch.arange(10), torch.linspace(0.1, 3.0, 10))
    state = buffer.state_dict()
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    ints = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    assert all(type(v) is int for v in ints.values())
    restored = make()
    restored.load_state_dict(load(save(tensors)) | ints)  # through safetensors bytes

    g = torch.Generator().manual_seed(123)
    g2 = torch.Generator()
    g2.set_state(g.get_state())
    for b in (buffer, restored):
        fill(b, 100, 4)  # continues the ring at the same position
    for _ in range(3):
        a, b = buffer.sample(32, g), restored.sample(32, g2)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key])
    kept = set(restored.state_dict()["obs"][:, 0].long().tolist())
    assert kept == {8, 9, 10, 11, 12, 13, 100, 101, 102, 103}  # 4..7 were the oldest


def test_load_rejects_another_capacity():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(4, (2,)).load_state_dict(ReplayBuffer(5, (2,)).state_dict())


def test_nstep_targets_by_hand():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    terminated = torch.tensor([False, False, True, False, False])
    bootstrap = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])  # V(s_{t+1})
    targets, steps = nstep_targets(rewards, terminated, bootstrap, 0.5, 3)
    # t=0: 1 + .5·2 + .25·3 (terminal, no bootstrap); t=1: 2 + .5·3; t=2: 3;
    # t=3: 4 + .5·5 + .25·50 (end of data); t=4: 5 + .5·50
    torch.testing.assert_close(targets, torch.tensor([2.75, 3.5, 3.0, 19.0, 30.0]))
    assert steps.tolist() == [3, 2, 1, 2, 1]
    trunc = torch.tensor([True, False, False, False, False])  # a time limit after step 0
    targets, steps = nstep_targets(rewards, terminated, bootstrap, 0.5, 3, truncated=trunc)
    assert float(targets[0]) == 1.0 + 0.5 * 10.0 and int(steps[0]) == 1
    one, _ = nstep_targets(rewards, terminated, bootstrap, 0.5, 1)  # n = 1: one-step TD target
    torch.testing.assert_close(one, rewards + 0.5 * bootstrap * (~terminated).float())


def test_nstep_targets_per_env_columns():
    g = torch.Generator().manual_seed(0)
    rewards, bootstrap = torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g)
    terminated = torch.rand(9, 3, generator=g) < 0.3
    targets, steps = nstep_targets(rewards, terminated, bootstrap, 0.9, 4)
    assert targets.shape == steps.shape == (9, 3)
    for e in range(3):
        col, col_steps = nstep_targets(rewards[:, e], terminated[:, e], bootstrap[:, e], 0.9, 4)
        torch.testing.assert_close(targets[:, e], col)
        assert steps[:, e].tolist() == col_steps.tolist()
