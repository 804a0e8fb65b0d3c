"""The NaN/Inf check kept on the device (``train.check_finite_every``): the same stop, step and
checkpoints as the per-step check, without reading a tensor on the host every step."""

from __future__ import annotations

import pytest
import torch

import deepworks as dw
from deepworks.train.checkpoint import CheckpointDir, load_checkpoint
from deepworks.train.finite import FiniteWatch, skips_on_found_inf
from deepworks.train.trainer import NonFiniteError


class BadAt(torch.nn.Module):
    """Wraps a model; at one training step its loss (``what="loss"``) or only its gradient
    (``what="grad"``: sqrt of a parameter at 0, times 0) becomes NaN."""

    def __init__(self, inner: torch.nn.Module, step: int, what: str = "loss"):
        super().__init__()
        self.inner, self.step, self.what, self.calls = inner, step, what, 0
        self.zero = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.step:
                if self.what == "loss":
                    return out * float("nan")
                return out + 0 * self.zero.abs().sqrt()  # finite value, NaN gradient
        return out


def fit(tmp_path, step: int = 9, what: str = "loss", **train):
    torch.manual_seed(0)
    data = dw.load_dataset("iris", seed=0)
    model = BadAt(dw.create_model("mlp", in_features=4, num_classes=3, hidden=[8]), step, what)
    config = dict(epochs=5, batch_size=16, progress=False, checkpoint={"every_n_steps": 2})
    trainer = dw.Trainer(**(config | train), run_dir=tmp_path, seed=0)
    return trainer, trainer.fit(model, data)


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_watch_records_the_first_non_finite_value_only():
    watch = FiniteWatch(torch.device("cpu"))
    watch.note(torch.tensor(2.0), step=1)
    assert watch.read() is None and float(watch.found_inf) == 0.0
    watch.note(torch.tensor(1.0), step=2, kind=1)
    watch.note(torch.tensor(float("-inf")), step=3, kind=1)
    watch.note(torch.tensor(float("nan")), step=4)
    assert watch.read() == (3, float("-inf"), "gradient norm")
    assert float(watch.found_inf) == 1.0


def test_fused_optimizers_skip_on_found_inf_and_others_are_checked_every_step():
    p = [torch.nn.Parameter(torch.ones(2))]
    assert skips_on_found_inf(torch.optim.Adam(p, fused=True))
    assert not skips_on_found_inf(torch.optim.Adam(p))
    assert not skips_on_found_inf(torch.optim.RMSprop(p))


def test_deferred_stop_equals_the_per_step_stop(tmp_path):
    """NaN at step 9, read every 4 steps: the stop names step 9, the weights and optimizer state
    are bitwise those of the per-step check's stop (after step 8), and no checkpoint was written
    after step 8 although one is due every 2 steps."""
    each, r_each = fit(tmp_path / "each", check_finite_every=1)
    late, r_late = fit(tmp_path / "late", check_finite_every=4)
    assert each.watch is None and late.watch is not None
    assert r_late.stop_reason == r_each.stop_reason
    assert "non-finite loss (nan) at step 9" in r_late.stop_reason
    assert late.global_step == each.global_step == 8
    a, b = weights(each), weights(late)
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = each.optimizer.state_dict()["state"], late.optimizer.state_dict()["state"]
    for i in sa:
        assert all(torch.equal(sa[i][k], sb[i][k]) for k in sa[i])
    saved = CheckpointDir(tmp_path / "late/checkpoints").steps()
    assert max(int(p.name.split("-")[-1]) for p in saved) == 8
    tensors, _ = load_checkpoint(tmp_path / "late/checkpoints/last")
    assert all(torch.isfinite(t).all() for t in tensors["model"].values())


def test_deferred_raise_and_gradient_norm(tmp_path):
    with pytest.raises(NonFiniteError, match=r"non-finite loss \(nan\) at step 9 \(epoch 1\)"):
        fit(tmp_path / "raise", check_finite_every=5, on_nonfinite="raise")
    trainer, result = fit(tmp_path / "grad", what="grad", check_finite_every=5, grad_clip_norm=1.0)
    assert "non-finite gradient norm (nan) at step 9" in result.stop_reason
    assert trainer.global_step == 8
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_found_at_the_epoch_end_when_no_periodic_read_comes(tmp_path):
    """7 steps per epoch (iris: 105 training rows / 16), read every 50: the epoch end reads it,
    nothing of the epoch is logged, and the stop names the step of epoch 1 it happened at."""
    trainer, result = fit(tmp_path, step=11, check_finite_every=50, checkpoint=None)
    assert "at step 11 (epoch 1)" in result.stop_reason
    assert result.epochs_run == 1 and trainer.global_step == 10


def test_skip_batch_and_unfused_optimizers_keep_the_per_step_check(tmp_path):
    skip, result = fit(tmp_path / "skip", check_finite_every=4, on_nonfinite="skip_batch")
    assert skip.watch is None and result.epochs_run == 5
    rms, result = fit(tmp_path / "rms", check_finite_every=4, optimizer={"name": "rmsprop"})
    assert rms.watch is None and "at step 9" in result.stop_reason


def test_deferred_check_reads_the_host_only_every_n_steps(tmp_path, monkeypatch):
    """Count tensor-to-Python reads (bool, float, int, item) during fit: with the check kept on the
    device, 4x the steps adds only the periodic reads; checked every step, one per step."""
    reads = {"n": 0}
    for name in ("__bool__", "__float__", "__int__", "item"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, **k):
            reads["n"] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def count(every: int, batch_size: int) -> int:
        reads["n"] = 0
        data = dw.load_dataset("iris", seed=0)
        model = dw.create_model("mlp", in_features=4, num_classes=3, hidden=[8])
        dw.Trainer(
            epochs=1, batch_size=batch_size, progress=False, checkpoint=None,
            check_finite_every=every, log_every_n_steps=1000,
        ).fit(model, data)  # fmt: skip
        return reads["n"]

    # iris training split: 105 rows -> 105 steps at batch 1, 27 at batch 4
    grown = count(every=10, batch_size=1) - count(every=10, batch_size=4)
    assert grown <= 105 // 10 - 27 // 10 + 1
    per_step = count(every=1, batch_size=1) - count(every=1, batch_size=4)
    assert per_step >= 105 - 27
