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
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrtool.cam import METHODS, CamConfig, low_res_maps, run_cam, upsample, feature_grid
from cxrtool.cam.overlay import save_overlay
from cxrtool.data.cache import PreparedData, write_cache
from cxrtool.data.sources.synthetic import SyntheticConfig, generate_arrays
from cxrtool.models import create_model
from cxrtool.models.checkpoint import model_card, save_checkpoint
from cxrtool.progress import set_quiet
from cxrtool.runs import write_manifest

FINDINGS = ["Cardiomegaly", "Effusion", "Mass"]


def machine() -> str:
    try:
        name = next(l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                    if l.startswith("Model name"))
    except Exception:
        name = platform.processor() or "unknown CPU"
    return f"{name}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


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


def make_run(data: PreparedData, root: Path, epochs: int, seed: int = 0) -> Path:
    """tiny-cnn trained with a plain Adam loop (epochs=0: as initialised), saved as a run."""
    torch.manual_seed(seed)
    rows = data.rows("train")
    x = torch.from_numpy(np.asarray(data.images[rows])).float().div(255).unsqueeze(1)
    y = torch.from_numpy(np.nan_to_num(data.targets(rows)))
    model = create_model("tiny-cnn", len(data.labels))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 16):
            b = perm[i : i + 16]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    card = model_card(model, data.labels, image_size=data.size, cache_size=data.size)
    save_checkpoint(root / "checkpoints" / "best", model, card)
    write_manifest(root, kind="pretrain", arch="tiny-cnn", data=str(data.root))
    return root


def localisation(epochs: int, patients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = SyntheticConfig(n_patients=patients, max_followups=1, size=128, seed=0,
                              prevalence={f: 0.35 for f in FINDINGS})
        images, frame, boxes = generate_arrays(cfg, findings=FINDINGS)
        split = np.where(np.random.default_rng(0).random(len(frame)) < 0.6, "train", "test")
        index = pd.DataFrame({"id": frame["image"], "patient": frame["patient"], "view": frame["view"], "split": split,
                              "source": "synthetic", "source_path": frame["image"]})
        for f in FINDINGS:
            index[f] = frame[f]
        write_cache(tmp / "data", images, index, FINDINGS, boxes=boxes.rename(columns={"image": "id"}))
        data = PreparedData(tmp / "data")
        t = time.perf_counter()
        runs = {"trained": make_run(data, tmp / "trained", epochs), "untrained": make_run(data, tmp / "untrained", 0)}
        train_s = time.perf_counter() - t
        rows = []
        for name, run in runs.items():
            for method in METHODS:
                for align in (True, False):
                    with contextlib.redirect_stdout(io.StringIO()):  # keep only this script's tables on stdout
                        out = run_cam(CamConfig(run=run, data=data.root, split="test", method=method, align=align,
                                                overlays=False, maps=False, out=tmp / f"{name}-{method}-{align}", device="cpu"))
                    for r in out["box_scores"].to_dict("records"):
                        rows.append({"network": name, "method": method, "aligned": "yes" if align else "no", **r})
        table = pd.DataFrame(rows)
        print(f"\n{len(data.rows('train'))} training images, {epochs} epochs ({train_s:.0f} s); "
              f"test positives per class: " + ", ".join(f"{c} {n}" for c, n in table[table['network'] == 'trained']
                                                         .drop_duplicates('class')[['class', 'images']].values))
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
