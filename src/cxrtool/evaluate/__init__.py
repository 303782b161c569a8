"""Evaluation: scoring a run's checkpoint and reporting it honestly.

- `config`: the command's options (`EvaluateConfig`), checked where they are made.
- `pipeline`: the `evaluate` command's flow for one run (predict, score, write `RUN/eval/`).
- `cross_validation`: the same for a k-fold run (per-fold and pooled out-of-fold scores).
- `outputs`: the output folder and the scores and files both of those write.
- `metrics`: AUROC with missing labels, patient-bootstrap intervals, calibration.
- `thresholds`: operating points chosen on val and reported on test (`thresholds.json`).
- `shortcuts`: metadata-only baselines (what the labels can be told from without pixels).
- `published`: published per-finding AUROCs (CheXNet, Wang et al.) to compare against.
- `tables`: the tables written and printed; `figures`: ROC and reliability plots.
- `compare`: many runs (the arms of an experiment) side by side in one table.
"""
