"""FGSM and PGD robust accuracy: deepworks against torchattacks on a digits CNN.

    python bench/attacks.py                 # trains examples/digits_cnn_robust.yaml first
    python bench/attacks.py RUN_DIR         # or attacks a run you have (inputs in [0, 1])

Both libraries attack the same model (eval mode) on the same test digits at ε ∈ {0.05, 0.1,
0.2}. FGSM is deterministic, so the two must agree exactly. PGD starts from a random point in the
ε-ball: each library runs ``STARTS`` independent random starts (20 steps, α = 2.5 ε / 20), and the
table gives the mean robust accuracy of each and their difference in percentage points.
Robust accuracy counts a sample only if it is classified correctly before and after the attack.
"""

from __future__ import annotations

import sys
import tempfile

import torch

from deepworks.recipes import train
from deepworks.robust import robust_accuracy
from deepworks.run import build_data, load_run

EPS = (0.05, 0.1, 0.2)
STEPS = 20
STARTS = 5


def robust(model, x, y, x_adv) -> float:
    with torch.no_grad():
        clean, adv = model(x).argmax(1), model(x_adv).argmax(1)
    return float(((clean == y) & (adv == y)).float().mean())


def main(run_dir: str | None) -> None:
    import torchattacks  # the reference (pip install --no-deps torchattacks)

    if run_dir is None:
        out = tempfile.mkdtemp(prefix="deepworks-attacks-")
        run_dir = str(train("examples/digits_cnn_robust.yaml", out=out, progress=False).dir)
    cfg, model, _ = load_run(run_dir)
    model.eval()
    data = build_data(cfg)
    x, y = data.test.x, data.test.y
    if data.scaler is not None or x.min() < 0 or x.max() > 1:
        raise SystemExit(f"{run_dir}: needs inputs in [0, 1] (data.scale: none)")
    print(f"{run_dir}: {len(x)} test samples, clean accuracy {robust(model, x, y, x):.4f}")
    print(
        "| ε | FGSM deepworks | FGSM torchattacks | PGD-20 deepworks | PGD-20 torchattacks "
        "| Δ PGD (points) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for eps in EPS:
        fgsm_dw = robust_accuracy(model, x, y, "fgsm", eps)
        fgsm_ta = robust(model, x, y, torchattacks.FGSM(model, eps=eps)(x, y))
        alpha = 2.5 * eps / STEPS
        pgd_dw, pgd_ta = [], []
        for start in range(STARTS):
            pgd_dw.append(robust_accuracy(model, x, y, "pgd", eps, steps=STEPS, seed=start))
            torch.manual_seed(1000 + start)  # torchattacks draws its start from the global RNG
            attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=STEPS, random_start=True)
            pgd_ta.append(robust(model, x, y, attack(x, y)))
        dw, ta = sum(pgd_dw) / STARTS, sum(pgd_ta) / STARTS
        print(
            f"| {eps} | {fgsm_dw:.4f} | {fgsm_ta:.4f} | {dw:.4f} | {ta:.4f} | "
            f"{100 * (dw - ta):+.2f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
