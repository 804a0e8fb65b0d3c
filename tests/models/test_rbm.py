"""The RBM model: free energy and conditionals against brute-force enumeration, scikit-learn's
BernoulliRBM with the same weights, the CD-1 update against a hand computation, and Gibbs
sampling against the exact distribution of a tiny RBM."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import yaml
from sklearn.neural_network import BernoulliRBM

from deepworks.models import create_model
from deepworks.models.rbm import RBM
from deepworks.registry import MODELS


def tiny_rbm(visible: int = 4, hidden: int = 3, seed: int = 0, scale: float = 1.0) -> RBM:
    torch.manual_seed(seed)
    rbm = RBM(in_features=visible, hidden=hidden)
    with torch.no_grad():  # weights large enough that the distribution is far from uniform
        rbm.weight.normal_(0, scale)
        rbm.visible_bias.normal_(0, scale)
        rbm.hidden_bias.normal_(0, scale)
    return rbm.double()


def all_states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def test_registered_as_generative_with_shapes_and_config_round_trip():
    assert MODELS.get("rbm").family == "generative"
    torch.manual_seed(0)
    rbm = create_model("rbm", in_features=64, hidden=20)
    x = torch.rand(5, 1, 8, 8)  # images are flattened
    assert rbm(x).shape == (5, 20)
    assert rbm.forward_features(x).shape == (5, 20)
    assert rbm.p_v(rbm(x)).shape == (5, 64)
    assert rbm.free_energy(x).shape == (5,)
    v = rbm.gibbs(x, k=3)
    assert v.shape == (5, 64) and set(v.unique().tolist()) <= {0.0, 1.0}
    samples = rbm.sample(6, steps=5)
    assert samples.shape == (6, 64) and samples.min() >= 0 and samples.max() <= 1
    config = rbm.get_config()
    assert config == {"in_features": 64, "hidden": 20, "init_std": 0.01}
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    rebuilt = RBM.from_config(config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in rbm.state_dict().items()
    }
    assert rbm.weight.shape == (20, 64)  # W (n_hidden, n_visible)


def test_backward_gives_finite_gradients_to_every_parameter():
    rbm = create_model("rbm", in_features=12, hidden=5)
    v0 = torch.rand(4, 12)
    loss = rbm.free_energy(v0).mean() - rbm.free_energy(rbm.gibbs(v0)).mean()
    loss.backward()
    for name, p in rbm.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_free_energy_matches_brute_force_sum_over_hidden_states():
    rbm = tiny_rbm()
    hs = all_states(3)  # (8, 3)
    v = torch.cat([all_states(4), torch.rand(5, 4, dtype=torch.float64)])  # binary and grey
    with torch.no_grad():
        # F(v) = -log Σ_h exp(-E(v, h)), E enumerated for every (v, h) pair
        energies = torch.stack([rbm.energy(v, h.expand(len(v), 3)) for h in hs], dim=1)
        brute = -torch.logsumexp(-energies, dim=1)
        torch.testing.assert_close(rbm.free_energy(v), brute)
        # the conditionals: p(h_j = 1 | v) = Σ_h h_j exp(-E) / Σ_h exp(-E)
        weights = torch.softmax(-energies, dim=1)  # p(h | v), (N, 8)
        torch.testing.assert_close(rbm.p_h(v), weights @ hs)
        # p(v) = exp(-F(v)) / Z sums to one over the 16 binary states; p(v | h) likewise
        binary = all_states(4)
        log_z = torch.logsumexp(-rbm.free_energy(binary), 0)
        assert float(torch.exp(-rbm.free_energy(binary) - log_z).sum()) == pytest.approx(1.0)
        e_vh = torch.stack([rbm.energy(binary, h.expand(16, 3)) for h in hs], dim=0)  # (8, 16)
        p_v_given_h = torch.softmax(-e_vh, dim=1) @ binary  # (8, 4)
        torch.testing.assert_close(rbm.p_v(hs), p_v_given_h)


def sklearn_twin(rbm: RBM, seed: int) -> BernoulliRBM:
    twin = BernoulliRBM(n_components=rbm.hidden, random_state=seed)
    twin.components_ = rbm.weight.detach().double().numpy().copy()
    twin.intercept_hidden_ = rbm.hidden_bias.detach().double().numpy().copy()
    twin.intercept_visible_ = rbm.visible_bias.detach().double().numpy().copy()
    twin.n_features_in_ = rbm.in_features
    return twin


def test_same_weights_as_sklearn_same_features_free_energy_and_pseudo_likelihood():
    rbm = tiny_rbm(visible=10, hidden=6, seed=1, scale=0.5)
    twin = sklearn_twin(rbm, seed=7)
    rng = np.random.default_rng(0)
    x = (rng.random((30, 10)) < 0.4).astype(np.float64)
    v = torch.from_numpy(x)
    with torch.no_grad():
        np.testing.assert_allclose(rbm(v).numpy(), twin.transform(x), rtol=1e-10)
        np.testing.assert_allclose(rbm.free_energy(v).numpy(), twin._free_energy(x), rtol=1e-10)
        h = torch.from_numpy((rng.random((30, 6)) < 0.5).astype(np.float64))
        # sklearn samples v = uniform < p(v | h): the same uniforms with our p(v | h)
        sampled = twin._sample_visibles(h.numpy(), np.random.RandomState(5))
        uniforms = np.random.RandomState(5).uniform(size=(30, 10))
        np.testing.assert_array_equal(sampled, uniforms < rbm.p_v(h).numpy())
        # score_samples flips unit rng.randint(0, V, N) of each sample: the same flips here
        index = torch.from_numpy(np.random.RandomState(7).randint(0, 10, 30))
        ours = rbm.pseudo_log_likelihood(v, index=index).numpy()
    np.testing.assert_allclose(ours, twin.score_samples(x), rtol=1e-10)


def test_cd1_surrogate_loss_step_is_the_cd_update():
    """One SGD step on mean F(v0) - mean F(v1) with v1 fixed is the CD-1 update rule."""
    rbm = tiny_rbm(visible=5, hidden=3, seed=2, scale=0.5)
    W, b, c = (p.detach().numpy().copy() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    rng = np.random.default_rng(1)
    v0 = rng.random((4, 5))  # data (grey levels)
    v1 = (rng.random((4, 5)) < 0.5).astype(np.float64)  # a fixed Gibbs sample
    lr, batch = 0.1, len(v0)

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    ph0, ph1 = sigmoid(v0 @ W.T + c), sigmoid(v1 @ W.T + c)  # p(h | v), (B, H)
    want_W = W + lr * (ph0.T @ v0 - ph1.T @ v1) / batch
    want_b = b + lr * (v0 - v1).sum(0) / batch
    want_c = c + lr * (ph0 - ph1).sum(0) / batch

    optimizer = torch.optim.SGD(rbm.parameters(), lr=lr)
    loss = (
        rbm.free_energy(torch.from_numpy(v0)).mean() - rbm.free_energy(torch.from_numpy(v1)).mean()
    )
    loss.backward()
    optimizer.step()
    np.testing.assert_allclose(rbm.weight.detach().numpy(), want_W, rtol=1e-12)
    np.testing.assert_allclose(rbm.visible_bias.detach().numpy(), want_b, rtol=1e-12)
    np.testing.assert_allclose(rbm.hidden_bias.detach().numpy(), want_c, rtol=1e-12)


def test_gibbs_chains_sample_the_exact_distribution():
    rbm = tiny_rbm(visible=3, hidden=2, seed=3)
    states = all_states(3)
    with torch.no_grad():
        exact = torch.softmax(-rbm.free_energy(states), 0).numpy()  # p(v) over the 8 states
    g = torch.Generator().manual_seed(0)
    v = rbm.gibbs(torch.zeros(20_000, 3, dtype=torch.float64), k=30, generator=g)
    codes = (v @ torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)).long()
    empirical = np.bincount(codes.numpy(), minlength=8) / len(codes)
    assert 0.5 * np.abs(empirical - exact).sum() < 0.02  # total variation distance
    # and the same seed gives the same chains
    g2 = torch.Generator().manual_seed(0)
    again = rbm.gibbs(torch.zeros(20_000, 3, dtype=torch.float64), k=30, generator=g2)
    assert torch.equal(v, again)


def test_bad_sizes_are_one_line_errors():
    from deepworks.errors import ConfigError

    with pytest.raises(ConfigError, match=r"hidden: 0 is out of range \(must be >= 1\)") as info:
        create_model("rbm", in_features=64, hidden=0)
    assert "\n" not in str(info.value)
