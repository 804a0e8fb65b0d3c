"""Finiteness checks of the loss and gradient norm without a host sync per step.

``bool(torch.isfinite(loss))`` costs nothing on the CPU, but on a GPU it makes the host wait for
the step to finish, every step, and the next step cannot be queued behind it. A
:class:`FiniteWatch` keeps the check on the device instead:

- each step records, on the device, the first step whose value was NaN or infinite, and the
  value itself;
- its :attr:`found_inf` is handed to the fused optimizer (the same hook ``GradScaler`` uses), and
  that step's update is skipped in the kernel: from the first bad step on, the weights and the
  optimizer state stay those of the last finite step;
- the Trainer reads the record (one host sync) every ``train.check_finite_every`` steps, before
  every checkpoint and at the end of the epoch, then stops (or raises) naming the step at which it
  happened, exactly as the per-step check would have.
"""

from __future__ import annotations

import torch

NEVER = 2**62  # "no non-finite value yet"


class FiniteWatch:
    """The first step at which a watched scalar became non-finite, kept on the device.

    Args:
        device: Where the record lives (the training device).
        names: What each ``kind`` passed to :meth:`note` is called in :meth:`read`'s answer.

    Example:
        >>> watch = FiniteWatch(torch.device("cpu"))
        >>> watch.note(torch.tensor(1.0), step=1); watch.note(torch.tensor(float("inf")), step=2)
        >>> watch.read()
        (2, inf, 'loss')
    """

    def __init__(self, device: torch.device, names: tuple[str, ...] = ("loss", "gradient norm")):
        self.names = names
        self.first = torch.full((), NEVER, dtype=torch.int64, device=device)
        self.value = torch.zeros((), device=device)
        self.kind = torch.zeros((), dtype=torch.int64, device=device)

    @torch.no_grad()
    def note(self, value: torch.Tensor, step: int, kind: int = 0) -> None:
        """Record ``value`` (of kind ``names[kind]``) at ``step``: queued on the device, no sync."""
        value = value.detach().float()
        new = torch.isfinite(value).logical_not_() & (self.first == NEVER)
        self.first = torch.where(new, step, self.first)
        self.value = torch.where(new, value, self.value)
        self.kind = torch.where(new, kind, self.kind)

    @property
    def found_inf(self) -> torch.Tensor:
        """1.0 once any value was non-finite, else 0.0: what fused optimizers skip a step on."""
        return (self.first != NEVER).float()

    def read(self) -> tuple[int, float, str] | None:
        """(step, value, name) of the first non-finite value, or None. Waits for the device."""
        first = int(self.first)
        if first == NEVER:
            return None
        return first, float(self.value), self.names[int(self.kind)]


def skips_on_found_inf(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` honours a ``found_inf`` tensor (fused Adam, AdamW, SGD,
    Adagrad): only then can a non-finite step be left out without the host knowing."""
    return bool(
        getattr(optimizer, "_step_supports_amp_scaling", False) and optimizer.defaults.get("fused")
    )
