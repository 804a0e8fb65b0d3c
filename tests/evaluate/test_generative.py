"""Sample-quality figures: the Fréchet distance against scipy's matrix square root, and the
reference classifier's features, accuracy and baselines on real digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from deepworks.data.pipeline import load_dataset
from deepworks.evaluate.generative import (
    frechet_distance,
    noise_like,
    reference_classifier,
    sample_quality,
)


def scipy_frechet(a, b):
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    mean = ((a.mean(0) - b.mean(0)) ** 2).sum()
    return mean + np.trace(ca + cb - 2 * linalg.sqrtm(ca @ cb).real)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    b = rng.normal(size=(250, 8)) @ rng.normal(size=(8, 8)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(scipy_frechet(a, b), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_gaussians_is_the_closed_form():
    # N(0, I) vs N(m, s² I) in d dims: |m|² + d (1 - s)²
    rng = np.random.default_rng(1)
    d, m, s = 4, 0.7, 2.0
    a = rng.normal(size=(200_000, d))
    b = rng.normal(size=(200_000, d)) * s + m
    assert frechet_distance(a, b) == pytest.approx(d * m**2 + d * (1 - s) ** 2, rel=0.02)


def test_frechet_distance_survives_singular_covariances():
    a = np.zeros((50, 5))
    a[:, 0] = np.arange(50)  # rank one
    assert np.isfinite(frechet_distance(a, a + 1.0))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0, scale="none")


def test_reference_classifier_is_accurate_cached_and_leaves_the_rng_alone(digits):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    ref = reference_classifier(digits)
    after = torch.rand(3)
    assert torch.equal(before, after)  # training it did not move the global generator
    assert ref.test_accuracy > 0.93
    assert reference_classifier(digits) is ref


def test_real_samples_score_near_the_floor_and_noise_far(digits):
    ref = reference_classifier(digits)
    real = sample_quality(digits.val.x, digits.val.y, digits.test.x, ref)
    assert real["fid"] < 0.2 * real["fid_noise"]
    assert real["class_accuracy"] > 0.9
    # a blurred copy of real digits lies between real data and noise
    blurred = digits.val.x.view(-1, 8, 8)
    blurred = (blurred + blurred.roll(1, 1) + blurred.roll(1, 2)) / 3
    mid = sample_quality(blurred.reshape(len(blurred), -1), None, digits.test.x, ref)
    assert real["fid"] < mid["fid"]
    assert "class_accuracy" not in mid


def test_noise_is_uniform_over_the_data_range(digits):
    noise = noise_like(digits.test.x, 500, seed=0)
    assert noise.shape == (500, 64)
    assert noise.min() >= 0.0 and noise.max() <= 1.0 and abs(noise.mean() - 0.5) < 0.01
