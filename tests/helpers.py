"""Shared builders for tests: small synthetic caches, a quickly trained run directory, a tiny CLI pretrain.

These build data straight from arrays (no PNG round trip) so that every test module can get a
cache or a trained run in seconds; `prepare` and the trainer have their own end-to-end tests.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.cache import PreparedData, write_cache
from cxrtool.data.sources.synthetic import PRETRAIN_FINDINGS, SyntheticConfig, generate_arrays
from cxrtool.models import create_model
from cxrtool.models.checkpoint import model_card, save_checkpoint
from cxrtool.runs import write_manifest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str, monkeypatch):
    """benchmarks/<name>.py as a module, importable as when run as a script (its sibling modules too)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A pretrain small enough for a test: a tiny CNN from random weights on 32-px images, on the CPU.
TINY_PRETRAIN = [
    "--arch",
    "tiny-cnn",
    "--weights",
    "none",
    "--image-size",
    "32",
    "--workers",
    "0",
    "--device",
    "cpu",
    "-q",
]


def synthetic_cache(
    out: Path,
    n_patients: int = 80,
    size: int = 64,
    seed: int = 0,
    labels: list[str] | None = None,
    shortcut: float = 0.0,
) -> PreparedData:
    """A cache of generated images with a seeded 60/20/20 patient split."""
    labels = labels or PRETRAIN_FINDINGS
    images, frame, boxes = generate_arrays(
        SyntheticConfig(n_patients=n_patients, size=size, seed=seed, shortcut=shortcut)
    )
    rng = np.random.default_rng(seed)
    patients = frame["patient"].unique()
    draw = dict(zip(patients, rng.random(len(patients))))
    split = frame["patient"].map(lambda p: "train" if draw[p] < 0.6 else ("val" if draw[p] < 0.8 else "test"))
    index = pd.DataFrame(
        {
            "id": frame["image"],
            "patient": frame["patient"],
            "view": frame["view"],
            "split": split,
            "source": "synthetic",
            "source_path": "images/" + frame["image"],
            "sex": frame["sex"],
            "age": frame["age"],
        }
    )
    for label in labels:
        index[label] = frame[label]
    boxes = boxes.rename(columns={"image": "id"})
    write_cache(out, images, index, labels, manifest={"source": "synthetic"}, boxes=boxes)
    return PreparedData(out)


def quick_train(data: PreparedData, run_dir: Path, arch: str = "tiny-cnn", epochs: int = 15, seed: int = 0) -> Path:
    """Train `arch` with a plain loop and save a run directory (manifest, checkpoints/best)."""
    torch.manual_seed(seed)
    rows = data.rows("train")
    x = torch.from_numpy(np.asarray(data.images[rows])).float().div(255).unsqueeze(1)
    y = torch.from_numpy(np.nan_to_num(data.targets(rows)))
    model = create_model(arch, len(data.labels))
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
    card = model_card(
        model,
        data.labels,
        image_size=data.size,
        cache_size=data.size,
        data_hash=data.data_hash,
        data_dir=str(data.root),
    )
    save_checkpoint(Path(run_dir) / "checkpoints" / "best", model, card)
    save_checkpoint(Path(run_dir) / "checkpoints" / "last", model, card)
    write_manifest(run_dir, kind="pretrain", arch=arch, data=str(data.root), data_hash=data.data_hash, seed=seed)
    return Path(run_dir)


def cv_run_from(trained_run: Path, data: PreparedData, run_dir: Path, k: int = 3):
    """A cross-validation run directory whose out-of-fold predictions are `trained_run`'s on every
    image of `data`, folds by patient number mod k. Returns (run_dir, probs, truth, folds)."""
    from cxrtool.inference import predict_probs
    from cxrtool.models.checkpoint import load_checkpoint

    model, card = load_checkpoint(trained_run)
    rows = np.arange(len(data))
    probs = predict_probs(model, data, rows, card["image_size"])
    truth = data.targets(rows)
    patients = data.index["patient"]
    folds = patients.astype(int) % k
    oof = pd.DataFrame({"id": data.index["id"], "patient": patients, "fold": folds})
    for j, label in enumerate(data.labels):
        oof[f"prob_{label}"] = probs[:, j]
    for j, label in enumerate(data.labels):
        oof[f"true_{label}"] = truth[:, j]
    run_dir = Path(run_dir)
    run_dir.mkdir()
    oof.to_csv(run_dir / "oof_predictions.csv", index=False)
    write_manifest(run_dir, kind="cv", arch="tiny-cnn", data=str(data.root))
    return run_dir, probs, truth, folds


def pretrain_cli(data: PreparedData, out: Path, *extra: str, epochs: int = 1):
    """`cxrtool pretrain` of a tiny CNN on `data` into `out` (`extra`: more options); the CliRunner result."""
    return CliRunner().invoke(
        app, ["pretrain", "--data", str(data.root), "--out", str(out), "--epochs", str(epochs), *TINY_PRETRAIN, *extra]
    )


def cli(*args):
    """`cxrtool ARGS...` through the CliRunner (paths and numbers given as they are)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(res) -> str:
    """The single line a user mistake prints (asserted: one line, no traceback, a clean exit)."""
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return lines[0]


def slow_decoding_child(signal_setup: str) -> str:
    """A `python -c` script: `cxrtool ARGV` whose decoding workers print "decoding" and then stall.

    `signal_setup` is a line run first (the signal disposition the test needs the child to start
    with); the patch is made before the pool forks, so the workers inherit it.
    """
    return f"""import os, signal, sys, time
{signal_setup}
import cxrtool.data.imageio as imageio
real = imageio.read_gray_from
def slow(fh, path):
    os.write(1, b"decoding\\n")
    time.sleep(60)
    return real(fh, path)
imageio.read_gray_from = slow
from cxrtool.cli import app
app(sys.argv[1:], prog_name="cxrtool")
"""
