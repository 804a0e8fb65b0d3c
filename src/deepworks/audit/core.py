"""``audit_run(RUN)``: measure everything the card shows, then write ``RUN/audit/``.

Every input is checked before anything is computed (run directory, checkpoint, ``n``, attack,
every eps against the input range), and the two files are written only at the end, so a bad
option leaves the run directory as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from deepworks.audit import figures as figs
from deepworks.audit import parts
from deepworks.errors import ConfigError
from deepworks.rundir import RunDir
from deepworks.utils import atomic_write_text

PARTS = ("evaluation", "speed", "calibration", "robustness", "explanations", "errors", "card")


def _load(run_dir: RunDir, checkpoint: str):
    """(config, task, Loaded run) with the model in eval mode on the CPU."""
    from deepworks.explain.runs import Loaded, check_explainable
    from deepworks.run import build_data, load_run

    cfg, model, task = load_run(run_dir, checkpoint)
    check_explainable(run_dir.path, task, "deepworks audit")
    data = build_data(cfg)
    if data.test is None or not hasattr(data.test, "x"):
        raise ConfigError(
            f"{run_dir}: deepworks audit needs an in-memory test split; the run's data has "
            f"{'none' if data.test is None else 'a lazily read one'}"
        )
    info = run_dir.data_info()
    info.setdefault("scaler", data.scaler)
    model.eval()
    return cfg, task, Loaded(run_dir.path, model, data, info, cfg.seed)


def _attacks(run, method: str, eps: Sequence[float] | None) -> tuple[dict[str, list], list]:
    """Built attacks (``method``, and FGSM beside it) at each eps, each checked; the eps."""
    from deepworks.attacks.common import build_attack

    _, _, (lo, hi), _ = parts.attack_space(run)
    eps_list = parts.default_eps(lo, hi) if eps is None else sorted({e for e in eps if e != 0})
    if not eps_list:
        raise ConfigError("--eps: give at least one budget above 0, e.g. --eps 0.05,0.1")
    width = run.data.test.x[0].numel()
    built: dict[str, list] = {}
    for name in dict.fromkeys([method, "fgsm"]):
        built[name] = []
        for e in eps_list:
            attack = build_attack(name, e, lo, hi, where=f"attack {name!r}")
            attack.check_eps(width)
            built[name].append(attack)
    return built, eps_list


def audit_run(
    run_dir: str | Path,
    n: int = 500,
    eps: str | float | Sequence[float] | None = None,
    method: str = "pgd",
    inputs: int = 4,
    checkpoint: str = "best",
    seed: int = 0,
    bins: int = 15,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Audit a trained run and write ``RUN/audit/audit.html`` and ``RUN/audit/audit.json``.

    Args:
        run_dir: A classification or regression run made by ``deepworks train``.
        n: Test samples attacked for the robustness curve.
        eps: Attack budgets ("0.05,0.1" or a list): in raw input units for images, as fractions
            of each feature's training range for tabular data; default 0.05, 0.1 and 0.2 of the
            input range.
        method: The attack of the main curve (``deepworks list attacks``); FGSM is drawn beside.
        inputs: Test inputs explained.
        checkpoint: best or last.
        seed: Seed of the attacks' and the sanity check's random draws.
        bins: Confidence bins of the calibration figures.
        on_progress: Called as ``on_progress(part, done, total)`` as parts start and end.

    Returns:
        The figures written to ``audit.json``, with ``"html"`` the path of the card.
    """
    from deepworks.audit.card import render
    from deepworks.registry import ATTACKS
    from deepworks.robust.evaluate import parse_eps
    from deepworks.run import graded_info
    from deepworks.utils import resolve_device

    if checkpoint not in ("best", "last"):
        raise ConfigError(f"--checkpoint {checkpoint!r}: choose best or last")
    if n < 1:
        raise ConfigError(f"--n {n}: attack at least 1 test sample")
    if inputs < 1:
        raise ConfigError(f"--inputs {inputs}: explain at least 1 test input")
    if bins < 1:
        raise ConfigError(f"--bins {bins}: use at least 1 calibration bin")
    ATTACKS.get(method, where="--method")
    eps_given = None if eps is None else parse_eps(eps)
    t_load = time.perf_counter()
    run_dir = RunDir.open(run_dir)
    cfg, task, run = _load(run_dir, checkpoint)
    classes = not run.regression
    floats = run.data.test.x.is_floating_point()
    attacks, eps_list = _attacks(run, method, eps_given) if classes and floats else ({}, [])
    timings: dict[str, float] = {"load": round(time.perf_counter() - t_load, 3)}
    progress = on_progress or (lambda *_: None)

    @contextmanager
    def part(name: str) -> Iterator[None]:
        """Report the part as started, and time it (its pictures included)."""
        progress(name, PARTS.index(name), len(PARTS))
        t0 = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - t0, 3)

    names = [str(c) for c in (run.info.get("class_names") or run.data.class_names or [])]
    with part("evaluation"):
        result = parts.evaluate(cfg, run, task)
        preds = result.predictions
        names = names or [str(i) for i in range(preds["y_prob"].shape[1])] if classes else names
    with part("speed"):
        weights = _weights(run_dir, checkpoint)
        model = parts.model_facts(run, cfg.model.name, weights)
        model |= parts.speed(run.model, run.data.test.x[:256])
    pictures: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    audit: dict[str, Any] = {
        "run": str(run_dir),
        "task": task.name,
        "checkpoint": checkpoint,
        "checkpoint_dir": weights.parent.resolve().name,  # e.g. step-00000180
        "graded": graded_info(run_dir.path, checkpoint),  # its step and epoch
        "task_type": run.data.task_type,
        "data": {"name": cfg.data.name, "input_shape": list(run.data.test.x.shape[1:]),
                 "test_samples": len(run.data.test), "classes": len(names) or None,
                 "scaler": (run.info.get("scaler") or {}).get("kind", "none")},
        "model": model,
        "metrics": {k: float(v) for k, v in result.metrics.items() if _is_number(v)},
    }  # fmt: skip

    if classes:
        with part("calibration"):
            audit["calibration"] = parts.calibration_part(preds["y_prob"], preds["y_true"], bins)
            pictures["reliability"] = figs.reliability_png(audit["calibration"])
    else:
        notes["calibration"] = "Calibration needs class probabilities; this is a regression run."

    if attacks:
        done, total = 0, len(eps_list) * len(attacks) * min(n, len(run.data.test))

        def on_batch(k: int) -> None:
            nonlocal done
            done += k
            progress(f"robustness {done}/{total}", PARTS.index("robustness"), len(PARTS))

        with part("robustness"):
            device = resolve_device(cfg.train.device)
            rob, examples = parts.robustness_part(run, attacks, n, seed, device, 256, on_batch)
            _, _, (lo, hi), unit = parts.attack_space(run)
            options = {k: v for k, v in vars(attacks[method][0]).items()
                       if k not in ("eps", "clip_min", "clip_max")}  # fmt: skip
            rob |= {"method": method, "clip": [lo, hi], "eps": eps_list, "seed": seed,
                    "middle_eps": parts.middle(eps_list), "options": options,
                    "unit": unit}  # fmt: skip
            audit["robustness"] = _jsonable(rob)
            pictures["robustness"] = figs.robustness_png(rob)
            if run.data.is_image:
                pictures["adversarial"] = figs.adversarial_png(examples, (lo, hi), names)
    elif classes:
        notes["robustness"] = "The inputs are token ids; gradient attacks need real-valued inputs."
    else:
        notes["robustness"] = "Adversarial accuracy needs class labels; this is a regression run."

    if floats:
        with part("explanations"):
            methods = ["ig"] + (["grad_cam"] if model["has_conv"] and run.data.is_image else [])
            explained, arrays = parts.explain_part(run, methods, inputs, seed)
            audit["explanations"] = {"inputs": min(inputs, len(run.data.test)), "mode": "all",
                                     "methods": explained}  # fmt: skip
            for m in methods:
                pictures[f"explain_{m}"] = figs.explain_png(run, arrays, m, names)
    else:
        notes["explanations"] = "The inputs are token ids; attributions need real-valued inputs."

    with part("errors"):
        if classes and result.details and "confusion_matrix" in result.details:
            audit["errors"] = parts.errors_part(result.details, names)
            pictures["confusion"] = figs.confusion_png(audit["errors"])
            if run.data.is_image:
                png = figs.misclassified_png(run, preds, names)
                if png is not None:
                    pictures["misclassified"] = png
        elif not classes:
            pictures["residuals"] = figs.residuals_png(preds)
            notes["errors"] = (
                "A regression run has no classes: predicted against true values instead."
            )

    audit["grades"] = grades(audit)
    audit["notes"] = notes
    audit["settings"] = {"n": n, "eps": eps_list, "method": method, "inputs": inputs,
                         "checkpoint": checkpoint, "seed": seed, "bins": bins,
                         "device": str(resolve_device(cfg.train.device))}  # fmt: skip
    raw = audit.get("robustness", {}).get("unit") == "raw input units"
    audit["commands"] = _commands(run_dir, audit["settings"], raw)
    audit["pictures"] = sorted(pictures)
    audit["timings"] = timings
    progress("card", PARTS.index("card"), len(PARTS))
    t0 = time.perf_counter()
    page = render(audit, pictures)
    audit["timings"]["card"] = round(time.perf_counter() - t0, 3)
    folder = run_dir.audit_dir
    atomic_write_text(folder / "audit.html", page)
    atomic_write_text(folder / "audit.json", json.dumps(_jsonable(audit), indent=1))
    run_dir.record("audit", [folder / "audit.html", folder / "audit.json"])
    progress("done", len(PARTS), len(PARTS))
    return audit | {"html": str(folder / "audit.html")}


def grades(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary row: each headline figure with a verdict (good, fair, poor)."""
    out = []
    metrics = audit["metrics"]

    def add(name: str, value: float, verdict: str, text: str, detail: str = "") -> None:
        out.append({"name": name, "value": value, "verdict": verdict, "text": text,
                    "detail": detail})  # fmt: skip

    def level(value: float, good: float, fair: float, higher: bool = True) -> str:
        v, g, f = (value, good, fair) if higher else (-value, -good, -fair)
        return "good" if v >= g else "fair" if v >= f else "poor"

    if "test/accuracy" in metrics:
        acc = metrics["test/accuracy"]
        add("accuracy", acc, level(acc, 0.9, 0.7), f"{acc:.1%}", "test split")
    if "test/r2" in metrics:
        r2 = metrics["test/r2"]
        add("R²", r2, level(r2, 0.8, 0.5), f"{r2:.3f}", "test split")
    if "calibration" in audit:
        ece = audit["calibration"]["ece"]
        add("ECE", ece, level(ece, 0.05, 0.15, higher=False), f"{ece:.3f}", "lower is better")
    if "robustness" in audit:
        rob = audit["robustness"]
        mid = rob["middle_eps"]
        acc = next(r for r in rob["curves"][rob["method"]] if r["eps"] == mid)["robust_accuracy"]
        clean = next(r for r in rob["curves"][rob["method"]] if r["eps"] == 0)["robust_accuracy"]
        kept = acc / clean if clean else 0.0  # the share of clean accuracy the attack leaves
        label = f"robust acc ({rob['method'].upper()} ε={mid:g})"
        detail = f"{kept:.0%} of clean accuracy kept, {rob['samples']} test samples"
        add(label, acc, level(kept, 0.8, 0.5), f"{acc:.1%}", detail)
    for method, fig in (audit.get("explanations") or {}).get("methods", {}).items():
        verdict = "good" if fig["passed"] else "poor"
        text = "pass" if fig["passed"] else "fail"
        add(f"sanity ({method})", fig["rho"], verdict, text, f"ρ = {fig['rho']:.2f} (< 0.5 passes)")
    return out


def _weights(run_dir: RunDir, checkpoint: str) -> Path:
    return run_dir.checkpoint(checkpoint) / "model.safetensors"


def _commands(run_dir: Path, s: dict[str, Any], raw_eps: bool) -> list[str]:
    """Equivalent commands of the parts, to reproduce a figure on its own."""
    eps = ",".join(f"{e:g}" for e in s["eps"])
    cmds = [
        f"deepworks audit {run_dir} --n {s['n']} --eps {eps} --method {s['method']} "
        f"--inputs {s['inputs']} --checkpoint {s['checkpoint']}",
        f"deepworks evaluate {run_dir} --checkpoint {s['checkpoint']}",
    ]
    if raw_eps:  # deepworks attack measures eps in raw input units too
        for m in dict.fromkeys([s["method"], "fgsm"]):
            cmds.append(f"deepworks attack {run_dir} --method {m} --eps {eps} --n {s['n']} "
                        f"--seed {s['seed']} --checkpoint {s['checkpoint']}")  # fmt: skip
    cmds.append(
        f"deepworks explain {run_dir} --method ig --sanity --randomize all "
        f"--inputs {s['inputs']} --checkpoint {s['checkpoint']}"
    )
    return cmds


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to numbers and lists, tensors left out."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not _is_tensor(v)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _is_tensor(v: Any) -> bool:
    import torch

    return isinstance(v, torch.Tensor)
