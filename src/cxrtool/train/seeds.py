"""Training variance: `cxrtool finetune --seeds N` trains the same arm N times, once per seed.

On a few hundred patients one trained model's test AUROC moves by several hundredths when only
the seed changes (the new head's initial weights, the order of the batches, the augmentation),
and the patient-bootstrap interval of one model does not include that: it resamples patients for
a fixed model. So `--seeds N` makes RUN/seed-1 ... RUN/seed-N, each a complete finetune run with
the same options and seeds S, S+1, ..., S+N-1 (S = --seed; seed-1 is exactly the run a plain
`finetune --seed S` makes). The top directory holds `manifest.json` (kind "seeds", the seeds and
sub-runs) and `seeds.json` (the seeds and their sub-runs), written once every seed has finished.
`cxrtool evaluate RUN` evaluates every seed and reports their spread beside seed-1's interval
(evaluate/seeds.py); `cxrtool compare` shows it beside the bootstrap interval. Cross-validation
per seed is not combined with this (give --seed to each `--folds` run instead).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from ..atomic import atomic_write_json
from ..config import dump_config
from ..errors import CxrError
from ..progress import info, result
from ..run_locks import new_run_dir
from ..runs import SEEDS_SUMMARY, RunPaths, read_manifest, write_manifest
from . import distributed as dist_utils
from .config import FinetuneConfig


def seed_runs(cfg: FinetuneConfig) -> list[tuple[str, int]]:
    """(sub-run name, seed) of each training: seed-1 with --seed, then one more per run."""
    return [(f"seed-{k}", cfg.seed + k - 1) for k in range(1, cfg.seeds + 1)]


def train_seeds(cfg: FinetuneConfig, train_one: Callable[[FinetuneConfig], Path], overwrite: bool = False) -> Path:
    """Train `cfg` once per seed into RUN/seed-k with `train_one`; returns the top directory."""
    if dist_utils.env_info().enabled:
        raise CxrError("--seeds: not supported under torchrun; start one torchrun per seed with --seed S")
    root = new_run_dir("seeds", cfg.arch or "finetune", cfg.out, overwrite=overwrite)
    runs = seed_runs(cfg)
    common = dict(
        kind="seeds",
        data=str(Path(cfg.data).resolve()),
        parent=cfg.parent,
        seeds=[s for _, s in runs],
        seed_runs=[n for n, _ in runs],
    )
    dump_config(dataclasses.replace(cfg, out=root), RunPaths(root).config)
    write_manifest(root, **common, complete=False)
    done = []
    for k, (name, seed) in enumerate(runs, start=1):
        info(f"seed {k}/{len(runs)}: --seed {seed} -> {root / name}")
        done.append(train_one(dataclasses.replace(cfg, seed=seed, seeds=1, out=root / name)))
    first = read_manifest(done[0])
    atomic_write_json(root / SEEDS_SUMMARY, {"seeds": [s for _, s in runs], "runs": [n for n, _ in runs]})
    write_manifest(root, **common, arch=first.get("arch"), data_hash=first.get("data_hash"), complete=True)
    result(f"run: {root} ({len(runs)} seeds; evaluate it with `cxrtool evaluate {root}`)")
    return root
