"""`predict` memory and speed against the number of files: streaming keeps the peak flat.

Writes N generated 512 x 512 PNGs, then runs `cxrtool.predict.pipeline.predict_files` (tiny network,
256-px cache size, batch 32) in a fresh process for each N and records the wall time and the
peak resident memory of that process (`getrusage`; the decoding workers are separate processes
that hold a batch or two each). Before the engine, predict decoded every file first, so the
peak grew by at least 64 KB (one 256-px image) per file; streamed, only the batches in flight
are held.

    python benchmarks/bench_predict.py [--counts 200,1000] [--workers 2]
    PYTHONPATH=OLD_CHECKOUT/src python benchmarks/bench_predict.py   # the same against another version
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from cxrtool.progress import set_quiet
from cxrtool.predict.pipeline import PredictConfig, predict_files
set_quiet(True)
folder, model, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    kw = {"workers": workers} if "workers" in PredictConfig.__dataclass_fields__ else {}  # older versions: no option
    table = predict_files(PredictConfig(inputs=[Path(folder)], run=Path(model), device="cpu", **kw))
print(json.dumps({"files": len(table), "seconds": time.perf_counter() - start,
                  "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_model(folder: Path) -> Path:
    import torch

    from cxrtool.models import create_model
    from cxrtool.models.checkpoint import model_card, save_checkpoint

    torch.manual_seed(0)
    model = create_model("tiny-cnn", 14)
    save_checkpoint(
        folder, model, model_card(model, [f"finding{j}" for j in range(14)], image_size=224, cache_size=256)
    )
    return folder


def write_images(folder: Path, n: int, start: int = 0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    ramp = np.linspace(0, 200, 512, dtype=np.float32)
    for i in range(start, n):
        noise = rng.integers(0, 40, (512, 512)).astype(np.float32)
        Image.fromarray((ramp[None, :] + noise).astype(np.uint8)).save(folder / f"img{i:06d}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", default="200,1000")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    counts = sorted(int(c) for c in a.counts.split(","))
    print(f"tiny-cnn, 512-px PNGs, cache size 256, input 224, batch 32, {a.workers} decoding workers, CPU\n")
    print("| files | seconds | files/s | peak RSS (MB) |")
    print("| ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        model = write_model(Path(tmp) / "model")
        for n in counts:
            folder = Path(tmp) / f"files-{n}"
            write_images(folder, n)
            out = (
                subprocess.run(
                    [sys.executable, "-c", CHILD, str(folder), str(model), str(a.workers)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            r = json.loads(out)
            print(
                f"| {r['files']:,} | {r['seconds']:.1f} | {r['files'] / r['seconds']:.1f} | {r['main_mb']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
