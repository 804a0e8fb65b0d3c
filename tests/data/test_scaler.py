"""``invert_scaler`` undoes ``apply_scaler`` for every scaling a run can store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepworks.data.bundle import apply_scaler, invert_scaler
from deepworks.data.pipeline import fit_scaler


@pytest.mark.parametrize("kind", ["standard", "minmax"])
@pytest.mark.parametrize("image", [False, True])
def test_invert_scaler_undoes_apply_scaler(kind, image):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(20, 2, 4, 4) if image else (20, 5)).astype(np.float32)
    scaler = fit_scaler(x, kind, is_image=image)
    scaled = apply_scaler(x, scaler)
    assert not torch.allclose(scaled, torch.from_numpy(x))
    back = invert_scaler(scaled.double(), scaler)
    assert back.dtype == torch.float64  # the input's dtype is kept
    np.testing.assert_allclose(back.numpy(), x, rtol=1e-5, atol=1e-5)


def test_no_scaler_is_the_identity():
    x = torch.arange(6.0).view(2, 3)
    assert invert_scaler(x, None) is x
    assert invert_scaler(x, {"kind": "none"}) is x
