"""Class activation maps: how fast they are made, and how well they find generated lesions.

speed: maps per second for each method on a batch of 16 random images (tiny-cnn at 128 px,
resnet18 and densenet121 at 224 px, one class, upsampled to 256 px), and overlay PNGs per second.
localisation: tiny-cnn trained on 128-px phantoms with three findings (Cardiomegaly, Effusion,
Mass), scored on the test split's boxes: pointing-game hit rate and IoU at 0.5 per class and
method, trained against the same network untrained, with and without the receptive-field
alignment. Prints markdown tables.

    python benchmarks/bench_cam.py [--part speed|localisation|all] [--epochs 12] [--patients 300]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrtool.cam import METHODS, CamConfig, feature_grid, low_res_maps, run_cam, upsample
from cxrtool.cam.overlay import save_overlay
from cxrtool.data.cache import PreparedData, write_cache
from cxrtool.data.sources.synthetic import SyntheticConfig, generate_arrays
from cxrtool.models import create_model
from cxrtool.progress import set_quiet

# The test suite's plain-loop trainer (tests/helpers.py): the same tiny network the localisation test uses.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import quick_train
from machine import cpu_name

FINDINGS = ["Cardiomegaly", "Effusion", "Mass"]


def machine() -> str:
    return f"{cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def speed(repeats: int = 3) -> None:
    print("| arch | input | method | maps/s |\n| --- | --- | --- | --- |")
    for arch, size in (("tiny-cnn", 128), ("resnet18", 224), ("densenet121", 224)):
        torch.manual_seed(0)
        model = create_model(arch, 14).eval()
        x = torch.rand(16, 1, size, size)
        grid = feature_grid(model, size)
        for method in METHODS:
            upsample(low_res_maps(model, x[:2], [1], method).maps, 256, grid, size)  # warm-up
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                upsample(low_res_maps(model, x, [1], method).maps, 256, grid, size)
                best = min(best, time.perf_counter() - t)
            print(f"| {arch} | {size} | {method} | {len(x) / best:.1f} |")
    image = (np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)
    cam = np.random.default_rng(1).random((256, 256)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        for i in range(20):
            save_overlay(Path(tmp) / f"{i}.png", image, cam, "Mass: p = 0.50", "x.png · cam", [(10, 10, 40, 40)])
        print(f"\noverlay PNGs (256 px): {20 / (time.perf_counter() - t):.1f} per second")


def localisation(epochs: int, patients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = SyntheticConfig(
            n_patients=patients, max_followups=1, size=128, seed=0, prevalence=dict.fromkeys(FINDINGS, 0.35)
        )
        images, frame, boxes = generate_arrays(cfg, findings=FINDINGS)
        split = np.where(np.random.default_rng(0).random(len(frame)) < 0.6, "train", "test")
        index = pd.DataFrame(
            {
                "id": frame["image"],
                "patient": frame["patient"],
                "view": frame["view"],
                "split": split,
                "source": "synthetic",
                "source_path": frame["image"],
            }
        )
        for f in FINDINGS:
            index[f] = frame[f]
        write_cache(tmp / "data", images, index, FINDINGS, boxes=boxes.rename(columns={"image": "id"}))
        data = PreparedData(tmp / "data")
        t = time.perf_counter()
        runs = {
            "trained": quick_train(data, tmp / "trained", epochs=epochs),
            "untrained": quick_train(data, tmp / "untrained", epochs=0),
        }
        train_s = time.perf_counter() - t
        rows = []
        for name, run in runs.items():
            for method in METHODS:
                for align in (True, False):
                    with contextlib.redirect_stdout(io.StringIO()):  # keep only this script's tables on stdout
                        out = run_cam(
                            CamConfig(
                                run=run,
                                data=data.root,
                                split="test",
                                method=method,
                                align=align,
                                overlays=False,
                                maps=False,
                                out=tmp / f"{name}-{method}-{align}",
                                device="cpu",
                            )
                        )
                    for r in out["box_scores"].to_dict("records"):
                        rows.append({"network": name, "method": method, "aligned": "yes" if align else "no", **r})
        table = pd.DataFrame(rows)
        print(
            f"\n{len(data.rows('train'))} training images, {epochs} epochs ({train_s:.0f} s); "
            f"test positives per class: "
            + ", ".join(
                f"{c} {n}"
                for c, n in table[table["network"] == "trained"].drop_duplicates("class")[["class", "images"]].values
            )
        )
        print("\npointing-game hit rate (IoU at 0.5 in brackets); chance = the boxes' share of the image\n")
        classes = [*FINDINGS, "all"]
        print("| network | method | aligned | " + " | ".join(classes) + " |")
        print("| --- | --- | --- | " + " | ".join("---" for _ in classes) + " |")
        for (network, method, aligned), part in table.groupby(["network", "method", "aligned"], sort=False):
            part = part.set_index("class")
            cells = [f"{part.loc[c, 'pointing_hit_rate']:.2f} ({part.loc[c, 'iou@0.5']:.2f})" for c in classes]
            print(f"| {network} | {method} | {aligned} | " + " | ".join(cells) + " |")
        chance = table.drop_duplicates("class").set_index("class")["box_fraction"]
        print("| chance | | | " + " | ".join(f"{chance[c]:.2f}" for c in classes) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=["speed", "localisation", "all"])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--patients", type=int, default=300)
    args = parser.parse_args()
    set_quiet(True)
    print(f"machine: {machine()}\n")
    if args.part in ("speed", "all"):
        speed()
    if args.part in ("localisation", "all"):
        localisation(args.epochs, args.patients)


if __name__ == "__main__":
    main()
