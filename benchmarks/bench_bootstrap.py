"""Time the patient bootstrap behind `cxrtool evaluate`: vectorised weights vs resampling rows.

`cxrtool.evaluate.metrics.label_report` computes ROC AUC and average precision for every replicate from
per-patient draw counts (a sparse product, vectorised over replicates). The obvious alternative
resamples row indices and calls scikit-learn once per replicate and label; both give the same
numbers (tests/test_metrics.py checks it). This times both on generated predictions the size of
a COVID-19 test set, an NIH test split and the full NIH test list, with 1,000 replicates. The
load average is printed too, since other work on the machine slows every figure down.

    python benchmarks/bench_bootstrap.py [--replicates 1000] [--sizes 300,5000,25000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from machine import cpu_name

os.environ.setdefault("CXRTOOL_QUIET", "1")


def generated(n_images: int, n_labels: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    patients = rng.integers(0, max(1, n_images // 3), n_images)  # about three images per patient
    y = (rng.random((n_images, n_labels)) < 0.1).astype(float)
    p = np.clip(0.3 * y + rng.random((n_images, n_labels)), 0, 1)
    return y, p, patients.astype(str)


def naive(y, p, patients, n_boot, seed):
    """Resample rows of drawn patients and call scikit-learn per replicate and label."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from cxrtool.evaluate.metrics import bootstrap_weights

    for weights in bootstrap_weights(patients, len(y), n_boot, seed):
        for w in weights.astype(int):
            idx = np.repeat(np.arange(len(y)), w)
            for j in range(y.shape[1]):
                yj = y[idx, j]
                if yj.min() != yj.max():
                    roc_auc_score(yj, p[idx, j])
                    average_precision_score(yj, p[idx, j])


def main() -> None:
    from cxrtool.evaluate.metrics import label_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--sizes", default="300,5000,25000")
    ap.add_argument("--labels", type=int, default=14)
    ap.add_argument("--naive-max", type=int, default=300, help="skip the slow baseline above this many images")
    args = ap.parse_args()
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores), load average {os.getloadavg()[0]:.1f}\n")
    print("| images | labels | replicates | label_report (s) | resample + scikit-learn (s) |")
    print("|---:|---:|---:|---:|---:|")
    for n in [int(s) for s in args.sizes.split(",")]:
        y, p, patients = generated(n, args.labels)
        t0 = time.perf_counter()
        label_report(y, p, [str(j) for j in range(args.labels)], patients, n_boot=args.replicates, seed=0)
        fast = time.perf_counter() - t0
        if n <= args.naive_max:
            t0 = time.perf_counter()
            naive(y, p, patients, args.replicates, 0)
            slow = f"{time.perf_counter() - t0:.1f}"
        else:
            slow = "(skipped)"
        print(f"| {n:,} | {args.labels} | {args.replicates} | {fast:.1f} | {slow} |")


if __name__ == "__main__":
    main()
