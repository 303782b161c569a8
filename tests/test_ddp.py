"""`torchrun --nproc_per_node 2 -m cxrtool pretrain ...` on the CPU (gloo): one run, written once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch.distributed as dist
from helpers import synthetic_cache


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_cpu_processes_train_one_run(tmp_path):
    data = synthetic_cache(tmp_path / "data", n_patients=40, size=32, seed=2)
    out = tmp_path / "runs" / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cxrtool",
        "pretrain",
        "--data",
        str(data.root),
        "--arch",
        "tiny-cnn",
        "--weights",
        "none",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CXRTOOL_QUIET": "0"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]  # rank 1 created nothing
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2] and metrics["val_loss"].notna().all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["train_images"] == len(data.rows("train"))
    assert (out / "checkpoints" / "best" / "model.safetensors").is_file()
    assert (out / "checkpoints" / "last" / "state.json").is_file()
    # Only rank 0 reports: the per-epoch summary line appears once per epoch.
    assert proc.stderr.count("epoch 2: train loss") == 1
