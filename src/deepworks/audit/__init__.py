"""``deepworks audit RUN``: one HTML report card per trained model.

The card gathers what a reviewer asks about a model before trusting it, measured on the run's own
test split, top to bottom:

1. the model: parameters, weights size, CPU latency (batch 1) and throughput (batch 256), and
   the test metrics;
2. calibration: ECE, MCE and the Brier score with a reliability diagram
   (:mod:`deepworks.evaluate.calibration`);
3. robustness: robust accuracy against the L-inf budget eps under PGD and FGSM
   (:mod:`deepworks.robust`), with adversarial examples for images;
4. explanations: integrated gradients (and Grad-CAM for conv nets) for a few inputs, with the
   model-parameter randomization sanity check's rank correlation beside them
   (:mod:`deepworks.explain`);
5. per-class errors: precision / recall / F1, the confusion matrix, the most confused pairs and
   the most confident mistakes;
6. what was run: the settings, the equivalent commands and the time each part took.

A summary row grades the headline figures (accuracy, ECE, robust accuracy at the middle eps,
the sanity check). Files: ``RUN/audit/audit.html`` and ``RUN/audit/audit.json`` (every figure).
"""

from deepworks.audit.core import PARTS, audit_run, grades

__all__ = ["PARTS", "audit_run", "grades"]
