"""GAE against a hand-written double loop and its λ = 0 / λ = 1 closed forms; truncation
bootstraps only where a final value is given; reward-to-go stops at episode ends."""

from __future__ import annotations

import pytest
import torch

from deepworks.rl.returns import discounted_returns, gae, normalize

T, E = 13, 3


def rollout(seed: int = 0, p_term: float = 0.15, p_trunc: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, E, generator=g)
    values = torch.randn(T, E, generator=g)
    terminated = torch.rand(T, E, generator=g) < p_term
    truncated = (torch.rand(T, E, generator=g) < p_trunc) & ~terminated
    last_value = torch.randn(E, generator=g)
    truncated_values = torch.randn(T, E, generator=g)
    return rewards, values, terminated, truncated, last_value, truncated_values


def gae_reference(rewards, values, terminated, truncated, last_value, gamma, lam, trunc_values):
    """Double loop in Python floats: for each start, sum (γλ)^k δ_{t+k} until the episode ends."""
    adv = torch.zeros(T, E, dtype=torch.float64)
    for e in range(E):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                if terminated[k, e]:
                    nxt = 0.0
                elif truncated[k, e]:
                    nxt = 0.0 if trunc_values is None else float(trunc_values[k, e])
                else:
                    nxt = float(values[k + 1, e]) if k + 1 < T else float(last_value[e])
                delta = float(rewards[k, e]) + gamma * nxt - float(values[k, e])
                total += weight * delta
                if terminated[k, e] or truncated[k, e]:
                    break
                weight *= gamma * lam
            adv[t, e] = total
    return adv


@pytest.mark.parametrize("with_truncated_values", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_gae_matches_double_loop(seed, with_truncated_values):
    rewards, values, term, trunc, last, trunc_values = rollout(seed)
    assert term.any() and trunc.any()  # the data exercises both kinds of episode end
    tv = trunc_values if with_truncated_values else None
    adv, ret = gae(rewards, values, term, trunc, last, 0.97, 0.9, truncated_values=tv)
    expected = gae_reference(rewards, values, term, trunc, last, 0.97, 0.9, tv)
    torch.testing.assert_close(adv.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ret, adv + values)


def test_gae_lambda_one_is_monte_carlo_return_minus_value():
    rewards, values, term, _, last, _ = rollout(2)
    no_trunc = torch.zeros_like(term)
    gamma = 0.9
    adv, ret = gae(rewards, values, term, no_trunc, last, gamma, 1.0)
    mc = torch.zeros(T, E)  # G_t bootstrapped from V(s_T) at the rollout end
    running = last.clone()
    for t in reversed(range(T)):
        running = rewards[t] + gamma * (~term[t]).float() * running
        mc[t] = running
    torch.testing.assert_close(adv, mc - values, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ret, mc, rtol=1e-5, atol=1e-5)


def test_gae_lambda_zero_is_one_step_td_error():
    rewards, values, term, _, last, _ = rollout(3)
    no_trunc = torch.zeros_like(term)
    gamma = 0.8
    adv, _ = gae(rewards, values, term, no_trunc, last, gamma, 0.0)
    next_values = torch.cat([values[1:], last[None]])
    td = rewards + gamma * next_values * (~term).float() - values
    torch.testing.assert_close(adv, td)


def test_truncation_bootstraps_from_the_final_value_and_stops_there():
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [2.0], [3.0]])
    term = torch.zeros(3, 1, dtype=torch.bool)
    trunc = torch.tensor([[False], [True], [False]])
    final = torch.tensor([[0.0], [10.0], [0.0]])  # V(final obs) of the truncated episode
    gamma, lam = 0.5, 1.0
    adv, _ = gae(rewards, values, term, trunc, torch.tensor([4.0]), gamma, lam, final)
    # step 1: 1 + 0.5·10 − 2 = 4; step 0: (1 + 0.5·2 − 0.5) + 0.5·4 = 3.5; step 2: 1 + 2 − 3 = 0
    torch.testing.assert_close(adv[:, 0], torch.tensor([3.5, 4.0, 0.0]))
    adv_cleanrl, _ = gae(rewards, values, term, trunc, torch.tensor([4.0]), gamma, lam)
    torch.testing.assert_close(adv_cleanrl[:, 0], torch.tensor([1.5 - 0.5, -1.0, 0.0]))


def test_discounted_returns_stop_at_episode_ends():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    done = torch.tensor([False, True, False, False, False])
    g = discounted_returns(rewards, done, 0.5)
    torch.testing.assert_close(g, torch.tensor([2.0, 2.0, 3.0 + 2.0 + 1.25, 4.0 + 2.5, 5.0]))
    both = discounted_returns(
        torch.stack([rewards, rewards], 1), torch.stack([done, torch.ones_like(done)], 1), 0.5
    )
    torch.testing.assert_close(both[:, 0], g)
    torch.testing.assert_close(both[:, 1], rewards)  # every step ends an episode


def test_normalize():
    x = torch.tensor([1.0, 2.0, 3.0, 10.0])
    y = normalize(x)
    assert abs(float(y.mean())) < 1e-6 and abs(float(y.std()) - 1.0) < 1e-6
    torch.testing.assert_close(normalize(torch.tensor([3.0])), torch.tensor([0.0]))
