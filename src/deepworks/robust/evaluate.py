"""Attack a trained run: clean vs robust accuracy at one or more eps, with example images.

``deepworks attack RUN --method pgd --eps 0.05,0.1,0.2`` calls :func:`attack_run`. It rebuilds the
run's model and its identical data split, attacks in the raw input space (the run's scaler is
applied inside the model, see :class:`~deepworks.attacks.common.InputSpaceModel`), and writes

    RUN/attacks/<method>/results.json   the figures per eps, and the settings
    RUN/attacks/<method>/results.csv    one row per eps
    RUN/attacks/<method>/examples.png   clean / adversarial / perturbation (image data only)

Every input is checked before anything is computed or written: a bad method, eps, split or run
directory is one line and leaves the run as it was.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from deepworks.attacks.common import InputSpaceModel, build_attack, require_classes, run_attack
from deepworks.data.bundle import invert_scaler
from deepworks.errors import ConfigError
from deepworks.registry import ATTACKS, accepted_kwargs
from deepworks.rundir import RunDir
from deepworks.utils import atomic_write_bytes, atomic_write_text, csv_text, resolve_device

EXAMPLES = 8  # adversarial examples drawn in examples.png


def parse_eps(text: str | float | Sequence[float]) -> list[float]:
    """``"0.05,0.1"`` (or a number, or a list) -> [0.05, 0.1]; a one-line error otherwise."""
    if isinstance(text, (int, float)):
        return [float(text)]
    if not isinstance(text, str):
        return [float(e) for e in text]
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(
            f"--eps {text!r}: give numbers separated by commas, e.g. 0.05,0.1"
        ) from exc
    if not values:
        raise ConfigError("--eps: give at least one budget, e.g. --eps 0.1")
    return values


def attack_run(
    run_dir: str | Path,
    method: str = "pgd",
    eps: str | float | Sequence[float] = 0.1,
    split: str = "test",
    n: int | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 256,
    clip_min: float | None = None,
    clip_max: float | None = None,
    which: str = "best",
    options: dict[str, Any] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Attack a run's model on one of its splits at each eps; write and return the figures.

    Args:
        run_dir: A run directory made by ``deepworks train`` (a classification run).
        method: A registered attack (``deepworks list attacks``): fgsm, pgd, cw, square.
        eps: Budgets, "0.05,0.1" or a list, in raw input units.
        split: test, val or train.
        n: Attack only the first n samples of the split.
        out: Folder for the files (default ``RUN/attacks/<method>``).
        seed: Seed of the attack's random draws.
        clip_min: Smallest valid raw input (default: the training inputs' minimum).
        clip_max: Largest valid raw input (default: the training inputs' maximum).
        which: Checkpoint to load: best or last.
        options: The attack's own options, e.g. ``{"steps": 20}``; None values are left out,
            an option the attack does not take is an error.
        on_progress: Called as ``on_progress(eps_label, done, total)`` after each batch.

    Returns:
        ``{"method", "split", "samples", "clip", "options", "results": [{"eps", ...}], "out"}``.
    """
    from deepworks.run import build_data, graded_info, load_run

    factory = ATTACKS.get(method, where="--method")  # an unknown name: choices, close match
    eps_list = parse_eps(eps)
    if split not in ("test", "val", "train"):
        raise ConfigError(f"--split {split!r}: choose test, val or train")
    if n is not None and n < 1:
        raise ConfigError(f"--n {n}: attack at least 1 sample")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    run_dir = RunDir.open(run_dir)
    cfg, model, _ = load_run(run_dir, which)
    info = run_dir.data_info()
    require_classes(info.get("task_type"), where=f"{run_dir}")
    accepted, _ = accepted_kwargs(factory)
    given = {k: v for k, v in (options or {}).items() if v is not None}
    for key in given:
        if key not in accepted:
            takes = [k for k in accepted if k not in ("eps", "clip_min", "clip_max")]
            raise ConfigError(
                f"--{key}: the {method} attack has no {key} option "
                f"(its options: {', '.join(takes) or 'none'})"
            )
    kwargs = given

    data = build_data(cfg)
    part = getattr(data, split)
    if part is None or not hasattr(part, "x"):
        raise ConfigError(f"--split {split}: the run has no in-memory {split} split")
    scaler = info.get("scaler")
    space = InputSpaceModel(model, scaler)
    raw_train = invert_scaler(data.train.x, scaler)
    lo = float(raw_train.min()) if clip_min is None else float(clip_min)
    hi = float(raw_train.max()) if clip_max is None else float(clip_max)
    attacks = []
    for e in eps_list:  # every budget is checked before any is run
        attack = build_attack(method, e, lo, hi, where=f"attack {method!r}", **kwargs)
        attack.check_eps(part.x[0].numel())
        attacks.append(attack)

    x, y = invert_scaler(part.x, scaler), part.y
    if n is not None:
        x, y = x[:n], y[:n]
    device = resolve_device(cfg.train.device)
    space = space.to(device)
    results, examples = [], None
    for e, attack in zip(eps_list, attacks, strict=True):
        label, done = f"eps {e:g}", 0

        def progress(k: int, label: str = label) -> None:
            nonlocal done
            done += k
            if on_progress is not None:
                on_progress(label, done, len(y))

        t0 = time.perf_counter()
        res = run_attack(space, x, y, attack, batch_size, seed, on_batch=progress)
        seconds = time.perf_counter() - t0
        results.append(_figures(e, x, y, res, seconds))
        examples = (e, res)
    report = {
        "method": method,
        "norm": attacks[0].norm,
        "split": split,
        "samples": len(y),
        "clip": [lo, hi],
        "seed": seed,
        "options": kwargs,
        "graded": graded_info(run_dir.path, which),  # the step and epoch of the weights
        "results": results,
    }
    folder = Path(out) if out is not None else run_dir.attacks_dir(method)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "results.json", folder / "results.csv"]
    atomic_write_text(written[0], json.dumps(report, indent=1))
    atomic_write_text(written[1], csv_text(results))
    if data.is_image and examples is not None:
        e, res = examples
        written.append(folder / "examples.png")
        atomic_write_bytes(written[2], _examples_png(x, y, res, e, lo, hi, data.class_names))
    run_dir.record("attack", written)
    report["out"] = str(folder)
    return report


def _figures(eps: float, x, y, res: dict[str, torch.Tensor], seconds: float) -> dict[str, float]:
    clean_ok = res["clean_pred"] == y
    adv_ok = res["adv_pred"] == y
    delta = (res["x_adv"] - x).flatten(1)
    flipped = clean_ok & ~adv_ok
    return {
        "eps": eps,
        "clean_accuracy": float(clean_ok.float().mean()),
        "robust_accuracy": float((clean_ok & adv_ok).float().mean()),
        # of the samples the model got right, the fraction the attack flipped
        "success_rate": float(flipped.sum() / clean_ok.sum().clamp_min(1)),
        "mean_linf": float(delta.abs().amax(1).mean()),
        "mean_l2": float(delta.norm(dim=1).mean()),
        "seconds": round(seconds, 3),
    }


def _examples_png(x, y, res, eps: float, lo: float, hi: float, names) -> bytes:
    """PNG of up to EXAMPLES samples: flipped ones first, then the rest."""
    from deepworks.report.robustness import examples_figure

    flipped = ((res["clean_pred"] == y) & (res["adv_pred"] != y)).nonzero().squeeze(1).tolist()
    chosen = set(flipped[:EXAMPLES])
    idx = (flipped + [i for i in range(min(len(y), 2 * EXAMPLES)) if i not in chosen])[:EXAMPLES]
    fig = examples_figure(
        x[idx].numpy(),
        res["x_adv"][idx].numpy(),
        y[idx].numpy(),
        res["clean_pred"][idx].numpy(),
        res["adv_pred"][idx].numpy(),
        eps,
        (lo, hi),
        names,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white", bbox_inches="tight")
    return buf.getvalue()
