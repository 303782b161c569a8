"""`cxrtool evaluate` on a run trained once per seed (`finetune --seeds N`): the spread over seeds.

Each seed's run (RUN/seed-k) is evaluated as any run is, into its own RUN/seed-k/eval. The top
evaluation (RUN/eval) is seed-1's, so that every number with an interval belongs to one trained
model (seed-1 is the run a plain `finetune --seed S` makes), plus a "seeds" section: each seed's
AUROC per label and their mean, sample SD, min and max. The two uncertainties answer different
questions: the patient-bootstrap interval is how much seed-1's AUROC would move with other test
patients; the spread over seeds is how much it moves when the same recipe is trained again on the
same data. predictions.csv is seed-1's, so `compare` pairs the arm through that run. Written
beside the usual per_label files: seeds.csv (one row per seed, then mean, sd, min, max).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_json, atomic_write_text
from ..errors import CxrError
from ..formatting import fmt, fmt_ci
from ..progress import info, print_table
from ..runs import read_manifest
from ..safeio import csv_text
from .config import EvaluateConfig
from .outputs import default_out, prepare_out
from .paired import spread
from .tables import print_tables, write_tables


def seeds_section(names: list[str], seeds: list[int] | None, per_seed: list[dict]) -> dict:
    """metrics.json's "seeds": each seed's AUROC per label (and mean) and their spread."""
    labels = list(per_seed[0]["labels"])
    auroc = {l: [(m["labels"].get(l) or {}).get("auroc") for m in per_seed] for l in labels}
    means = [m.get("mean_auroc") for m in per_seed]
    return {
        "runs": names,
        "seeds": seeds,
        "headline": names[0],
        "auroc": auroc,
        "spread": {l: spread(v) for l, v in auroc.items()},
        "mean_auroc": means,
        "mean_spread": spread(means),
        "note": (
            "spread over runs that differ only in their seed (training randomness); the intervals are "
            f"{names[0]}'s patient bootstrap (sampling of test patients)"
        ),
    }


def seeds_frame(section: dict) -> pd.DataFrame:
    rows = [
        {"run": name, "seed": seed, **{l: v[i] for l, v in section["auroc"].items()}, "mean": section["mean_auroc"][i]}
        for i, (name, seed) in enumerate(zip(section["runs"], section["seeds"] or [None] * len(section["runs"])))
    ]
    columns = {**section["spread"], "mean": section["mean_spread"]}
    for stat in ("mean", "sd", "min", "max"):
        rows.append({"run": stat, "seed": None, **{l: s.get(stat) for l, s in columns.items()}})
    frame = pd.DataFrame(rows)
    frame["seed"] = frame["seed"].astype("Int64")  # whole seeds, blank on the summary rows
    return frame


def _cell(value) -> str:
    if value is None or value is pd.NA:
        return ""
    return fmt(value) if isinstance(value, float) else str(value)


def seeds_markdown(metrics: dict) -> str:
    """Per label: seed-1's AUROC with its bootstrap interval beside the spread over the seeds."""
    section = metrics["seeds"]
    n = len(section["runs"])
    lines = [
        f"## Spread over {n} seeds (training variance)",
        "",
        f"| label | {section['headline']} AUROC [95% patient-bootstrap CI] | over {n} seeds: mean ± SD (min-max) |",
        "| --- | --- | --- |",
    ]
    for label, s in section["spread"].items():
        e = metrics["labels"].get(label) or {}
        if not s.get("n"):
            continue
        ci = fmt_ci(e.get("auroc"), e.get("auroc_low"), e.get("auroc_high"), missing="n/a")
        lines.append(
            f"| {label} | {ci} | {fmt(s['mean'])} ± {fmt(s.get('sd'), missing='n/a')} ({fmt(s['min'])}-{fmt(s['max'])}) |"
        )
    lines += ["", section["note"] + "."]
    return "\n".join(lines)


def evaluate_seeds_run(cfg: EvaluateConfig, run: Path, evaluate_one: Callable[[EvaluateConfig, Path], dict]) -> dict:
    """Evaluate every seed's run with `evaluate_one`, then write RUN/eval (seed-1's, plus the spread)."""
    manifest = read_manifest(run)
    names = list(manifest.get("seed_runs") or [])
    missing = [n for n in names if not (run / n / "manifest.json").is_file()]
    if not names or missing:
        raise CxrError(f"{run}: a seeds run without its sub-run {(missing or ['seed-1'])[0]}; train it again")
    out = prepare_out(cfg, run)
    per_seed = []
    for name in names:
        sub_out = Path(cfg.out) / name if cfg.out else default_out(run / name, cfg.split)
        info(f"evaluating {run / name} -> {sub_out}")
        per_seed.append(evaluate_one(dataclasses.replace(cfg, run=run / name, out=sub_out), run / name))
    first_out = Path(cfg.out) / names[0] if cfg.out else default_out(run / names[0], cfg.split)
    section = seeds_section(names, manifest.get("seeds"), per_seed)
    metrics = {**per_seed[0], "run": str(run), "what": f"{per_seed[0]['what']} ({names[0]} of {len(names)} seeds)"}
    metrics["seeds"] = section
    atomic_write_text(out / "predictions.csv", (first_out / "predictions.csv").read_text())
    frame = seeds_frame(section)
    atomic_write_text(out / "seeds.csv", csv_text(frame, index=False))
    write_tables(out, metrics)
    with open(out / "per_label.md", "a", encoding="utf-8") as md:  # per_label.md was just written by write_tables
        md.write("\n" + seeds_markdown(metrics) + "\n")
    atomic_write_json(out / "metrics.json", metrics)
    print_tables(metrics)
    print_table(
        f"Test AUROC over {len(names)} seeds (training variance; the intervals above are {names[0]}'s)",
        list(frame.columns),
        [[_cell(v) for v in r] for r in frame.itertuples(index=False)],
    )
    info(f"wrote {out}")
    return metrics
