"""The per-epoch log of a run: `metrics.csv` and the `curves.png` drawn from it.

`metrics.csv` has one row per finished epoch: `epoch`, `train_loss`, `val_loss`,
`val_auroc_<label>` for each label, `val_auroc_mean`, `lr` and `images_per_s` (training
throughput, loading and augmentation included). It is rewritten atomically after each epoch, and
a resumed run first drops rows newer than its checkpoint, so the file always matches the state
the run can continue from.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_write, atomic_write_text


def metric_columns(labels: list[str]) -> list[str]:
    return [
        "epoch",
        "train_loss",
        "val_loss",
        *[f"val_auroc_{l}" for l in labels],
        "val_auroc_mean",
        "lr",
        "images_per_s",
    ]


def read_metrics(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame()
    return pd.read_csv(path)


def write_metrics(path: Path, rows: list[dict], labels: list[str]) -> None:
    frame = pd.DataFrame(rows, columns=metric_columns(labels))
    atomic_write_text(Path(path), frame.to_csv(index=False, float_format="%.6g"))


def plot_curves(metrics: pd.DataFrame, path: Path, title: str = "") -> None:
    """Loss (train, validation) and validation AUROC (mean, per label) against the epoch."""
    # lazy: matplotlib, only when the curves are drawn
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metrics.empty:
        return
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(metrics["epoch"], metrics["train_loss"], "o-", label="train")
    ax_loss.plot(metrics["epoch"], metrics["val_loss"], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss (BCE summed over labels)", title="loss")
    ax_loss.legend()
    per_label = [c for c in metrics.columns if c.startswith("val_auroc_") and c != "val_auroc_mean"]
    for col in per_label if len(per_label) > 1 else []:
        ax_auc.plot(metrics["epoch"], metrics[col], "-", alpha=0.35, linewidth=1, label=col[len("val_auroc_") :])
    ax_auc.plot(metrics["epoch"], metrics["val_auroc_mean"], "o-", color="black", linewidth=2, label="mean")
    ax_auc.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax_auc.set(xlabel="epoch", ylabel="validation ROC AUC", title="validation AUROC", ylim=(0.0, 1.0))
    ax_auc.legend(fontsize=7, ncol=2 if len(per_label) > 6 else 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(Path(path), lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
