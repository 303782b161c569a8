"""`cxrtool demo`: the whole pipeline on generated X-rays, offline, in minutes on a laptop CPU.

It writes a synthetic raw dataset in the NIH layout, prepares it twice (five findings for
pretraining; the held-back "COVID-19" pattern for transfer), pretrains a small network, finetunes
it to COVID-19, evaluates both with patient-bootstrap intervals, draws and scores class activation
maps against the known lesion boxes, maps the latent and pixel spaces, writes an HTML report per
run, and prints a summary. Each step is an ordinary library call, the same one a command makes,
so the demo doubles as an end-to-end check. `quick` shrinks everything for CI (about 15 s on an idle 2-core machine; docs/performance.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cam.run import CamConfig, run_cam
from .config import require
from .data.pool import cap_workers
from .data.prepare import PrepareNihConfig, prepare_nih
from .data.sources.synthetic import PRETRAIN_FINDINGS, SyntheticConfig, write_raw
from .embed.config import EmbedConfig
from .embed.pipeline import run_embed
from .errors import CxrError
from .evaluate.pipeline import EvaluateConfig, evaluate_run
from .formatting import fmt, fmt_ci
from .locks import LOCK_NAME
from .optionspec import option
from .owned import RECORD, note_written
from .progress import info, print_table, result
from .report.html_page import ReportConfig, build_report
from .run_locks import holds_locks, own_output
from .train.api import finetune, pretrain
from .train.config import FinetuneConfig, TrainConfig


@dataclass
class DemoConfig:
    out: Path = option(Path("cxrtool-demo"), help="Folder for the demo's data, runs and reports.")
    quick: bool = option(False, help="A smaller run for CI (about 15 s on 2 idle cores).")
    seed: int = option(0, help="Random seed for the data and the training.")
    device: str = option("auto", help="auto, cpu, cuda or mps.")
    workers: int = option(2, help="Processes for decoding images in prepare.")
    overwrite: bool = option(False, help="Replace an existing demo folder.")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        require(self.workers >= 1, f"--workers: {self.workers}; give 1 or more")
        self.workers = cap_workers(self.workers)


@dataclass(frozen=True)
class DemoSizes:
    """How big each step is; `quick` is for CI, the default fits a 5-minute budget on 2 cores."""

    patients: int
    size: int
    pretrain_epochs: int
    finetune_epochs: int
    bootstrap: int
    methods: str

    @classmethod
    def of(cls, quick: bool) -> DemoSizes:
        if quick:
            # 150 patients: a test split of about 80 images, enough for the latent-vs-pixels k-NN
            # comparison on unseen images (with 100, about 50 test images, it was within noise).
            return cls(patients=150, size=64, pretrain_epochs=6, finetune_epochs=6, bootstrap=200, methods="som,tsne")
        return cls(patients=300, size=96, pretrain_epochs=20, finetune_epochs=15, bootstrap=1000, methods="all")


def _claim_out(cfg: DemoConfig) -> Path:
    """Lock and claim the demo folder; --overwrite removes only what an earlier demo recorded writing."""
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise CxrError(f"{out}: is a file, not a folder; choose another --out")
    owned = own_output(out, "demo", "demo")  # a folder holding a file no cxrtool command wrote is refused
    if any(p.name not in (LOCK_NAME, RECORD) for p in out.iterdir()):
        if not cfg.overwrite:
            raise CxrError(f"{out}: exists and is not empty; pass --overwrite to replace it or choose another --out")
        owned.clear()
    # The raw images and the caches are written by other means than the atomic-write helpers:
    # their folders, which the demo creates, are recorded whole.
    for folder in ("raw", "data"):
        note_written(out / folder, folder=True)
    return out


def _step(n: int, total: int, text: str) -> float:
    info(f"[bold cyan]demo {n}/{total}[/bold cyan] {text}")
    return time.perf_counter()


def _interval(metrics: dict[str, Any], key: str = "mean_auroc") -> str:
    return fmt_ci(metrics.get(key), metrics.get(f"{key}_low"), metrics.get(f"{key}_high"), missing="not computable")


@holds_locks
def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every stage; returns the summary (also printed) with the paths of what was written."""
    sizes = DemoSizes.of(cfg.quick)
    out = _claim_out(cfg)
    started = time.perf_counter()
    total = 8

    _step(1, total, f"generating {sizes.patients} synthetic patients ({sizes.size} px) in the NIH layout")
    raw = out / "raw"
    write_raw(raw, SyntheticConfig(n_patients=sizes.patients, size=sizes.size, seed=cfg.seed))

    _step(2, total, "preparing two caches: five findings for pretraining, COVID-19 (held back) for transfer")
    common = dict(root=raw, size=sizes.size, workers=cfg.workers, seed=cfg.seed, val_frac=0.2, test_frac=0.25)
    nih = prepare_nih(PrepareNihConfig(out=out / "data" / "synth-nih", findings=list(PRETRAIN_FINDINGS), **common))
    covid = prepare_nih(PrepareNihConfig(out=out / "data" / "synth-covid", findings=["COVID-19"], **common))

    _step(3, total, f"pretraining tiny-cnn from scratch for {sizes.pretrain_epochs} epochs")
    train_common = dict(
        arch="tiny-cnn",
        weights="none",
        image_size=sizes.size,
        batch_size=32,
        device=cfg.device,
        seed=cfg.seed,
        workers=0,
        augment="flip",
        early_stop=0,
    )
    pre_run = pretrain(
        TrainConfig(
            data=nih.root,
            out=out / "runs" / "pretrain-tiny-cnn",
            epochs=sizes.pretrain_epochs,
            lr=3e-3,
            select="auroc",
            **train_common,
        )
    )

    _step(4, total, f"finetuning it to COVID-19 for {sizes.finetune_epochs} epochs")
    ft_common = {k: v for k, v in train_common.items() if k not in ("arch", "weights", "image_size")}
    ft_run = finetune(
        FinetuneConfig(
            data=covid.root,
            parent=str(pre_run),
            out=out / "runs" / "finetune-covid",
            epochs=sizes.finetune_epochs,
            lr=1e-3,
            select="auroc",
            oversample=True,
            **ft_common,
        )
    )

    _step(5, total, "evaluating both runs on held-out patients (patient bootstrap)")
    pre_metrics = evaluate_run(EvaluateConfig(run=pre_run, bootstrap=sizes.bootstrap, device=cfg.device, seed=cfg.seed))
    ft_metrics = evaluate_run(EvaluateConfig(run=ft_run, bootstrap=sizes.bootstrap, device=cfg.device, seed=cfg.seed))

    _step(6, total, "class activation maps on the test split, scored against the lesion boxes")
    cam = run_cam(
        CamConfig(
            run=pre_run,
            data=nih.root,
            split="test",
            top=1,
            method="cam",
            boxes=nih.root / "boxes.csv",
            device=cfg.device,
            max_images=None if not cfg.quick else 60,
        )
    )

    _step(7, total, f"mapping latent and pixel spaces of the test images ({sizes.methods})")
    # Scored on the test split: images the network never trained on, so the latent space's
    # structure is not memorisation of its training images.
    embed = run_embed(
        EmbedConfig(
            run=pre_run,
            split="test",
            space="both",
            method=sizes.methods,
            seed=cfg.seed,
            device=cfg.device,
            som_grid="6x6" if cfg.quick else "8x8",
        )
    )

    _step(8, total, "writing the HTML reports")
    reports = [build_report(ReportConfig(run=r)) for r in (pre_run, ft_run)]

    summary = _summary(pre_metrics, ft_metrics, cam, embed)
    summary.update(
        pretrain_run=pre_run, finetune_run=ft_run, reports=reports, seconds=time.perf_counter() - started, out=out
    )
    _print_summary(summary)
    return summary


def _summary(pre_metrics: dict, ft_metrics: dict, cam: dict, embed: dict) -> dict[str, Any]:
    hit_rate = None
    box_scores = cam.get("box_scores")
    if box_scores is not None and len(box_scores):
        overall = box_scores[box_scores["class"] == "all"]
        hit_rate = float((overall if len(overall) else box_scores)["pointing_hit_rate"].iloc[0])
    spaces = embed["scores"].get("spaces", {})
    knn = {space: (entry.get("full") or {}).get("knn_accuracy") for space, entry in spaces.items()}
    return {
        "pretrain_auroc": pre_metrics.get("mean_auroc"),
        "pretrain_auroc_text": _interval(pre_metrics),
        "covid_auroc": ft_metrics.get("mean_auroc"),
        "covid_auroc_text": _interval(ft_metrics),
        "cam_hit_rate": hit_rate,
        "knn_latent": knn.get("latent"),
        "knn_pixels": knn.get("pixels"),
        "knn_chance": embed["scores"].get("knn_chance"),
    }


def _print_summary(s: dict[str, Any]) -> None:
    print_table(
        "cxrtool demo: summary (generated data; intervals: 95% patient bootstrap)",
        ["result", "value"],
        [
            ["pretrain mean AUROC, 5 findings (test)", s["pretrain_auroc_text"]],
            ["finetune COVID-19 AUROC (test)", s["covid_auroc_text"]],
            ["CAM pointing-game hit rate (lesion boxes)", fmt(s["cam_hit_rate"])],
            ["k-NN accuracy, latent space (test)", fmt(s["knn_latent"])],
            ["k-NN accuracy, pixel space (test)", fmt(s["knn_pixels"])],
            ["k-NN chance level (test)", fmt(s["knn_chance"])],
        ],
    )
    result(f"reports: {', '.join(str(p) for p in s['reports'])}")
    result(f"demo finished in {s['seconds']:.0f} s; everything is under {s['out']}")
