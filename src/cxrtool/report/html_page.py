"""`cxrtool report`: one self-contained HTML page describing a run.

The page inlines every image (base64), so it can be mailed or archived on its own: the run's
resolved config and manifest, learning curves and the per-epoch table, the evaluation (ROC
curves, per-label table with intervals, shortcut baselines), CAM examples and box scores,
embedding maps and cluster scores, and the chain of parent runs (pretrain -> finetune). Sections
whose artifacts do not exist yet are listed as "not run yet" with the command that makes them.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import read_yaml
from ..errors import CxrError
from ..owned import claim_file, claim_folder
from ..runs import RunPaths, atomic_write_text, holds_locks, legacy_run_files, read_json, resolve_run
from ..safeio import restore_cells

MAX_CAM_EXAMPLES = 8
MAX_TABLE_ROWS = 60


@dataclass
class ReportConfig:
    run: Path | None = None
    out: Path | None = None  # default RUN/report.html
    overwrite: bool = False  # replace an existing --out file (never a cache's or a run's own file)


def _img(path: Path, alt: str, width: str = "100%") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" style="max-width:{width}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
    )


def _number(v) -> str:
    """Whole numbers without decimals (counts), others to three places."""
    return f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.3f}"


def _table(frame: pd.DataFrame, max_rows: int = MAX_TABLE_ROWS) -> str:
    shown = frame.head(max_rows)
    body = shown.to_html(index=False, float_format=_number, na_rep="–", border=0, classes="t")
    more = f"<p class=note>{len(frame) - max_rows} more rows in the CSV.</p>" if len(frame) > max_rows else ""
    return f"<div class=wide>{body}</div>{more}"


def _csv(path: Path) -> pd.DataFrame | None:
    try:
        return restore_cells(pd.read_csv(path)) if path.is_file() else None
    except (pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _missing(what: str, command: str) -> str:
    return f"<p class=note>{html.escape(what)} not run yet: <code>{html.escape(command)}</code></p>"


def _pngs(folder: Path, limit: int | None = None) -> list[Path]:
    if not folder.is_dir():
        return []
    found = sorted(folder.rglob("*.png"))
    return found[:limit] if limit else found


def _summary_rows(manifest: dict[str, Any], paths: RunPaths) -> list[tuple[str, str]]:
    rows = [
        ("run", str(paths.root)),
        ("kind", str(manifest.get("kind", "?"))),
        ("architecture", str(manifest.get("arch", "?"))),
        ("data", str(manifest.get("data", "?"))),
        ("data hash", str(manifest.get("data_hash", "?"))),
        ("created", str(manifest.get("created", "?"))),
    ]
    env = manifest.get("environment", {})
    rows.append(
        (
            "software",
            ", ".join(f"{k} {v}" for k, v in env.items() if v and k in ("cxrtool", "torch", "torchvision", "python")),
        )
    )
    if env.get("git_commit"):
        rows.append(("commit", env["git_commit"]))
    return rows


def _parents(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The chain of parent runs (nearest first), as recorded in each manifest."""
    chain, seen = [], set()
    parent = manifest.get("parent")
    while parent and parent not in seen and len(chain) < 10:
        seen.add(parent)
        parent_dir = Path(parent)
        if parent_dir.is_file() or (parent_dir / "card.json").is_file():  # a checkpoint: its run is two up
            parent_dir = parent_dir.parent.parent if parent_dir.name in ("best", "last") else parent_dir.parent
        try:
            pm = read_json(parent_dir / "manifest.json")
        except CxrError:
            chain.append((str(parent), {}))
            break
        chain.append((str(parent_dir), pm))
        parent = pm.get("parent")
    return chain


def _start_of(paths: RunPaths) -> str:
    """How a run without a parent started: ImageNet weights, a weights file, or random initialisation."""
    weights = None
    if paths.config.is_file():
        weights = (read_yaml(paths.config, "run config") or {}).get("weights")
    if weights in (None, "none"):
        return "trained from random initialisation"
    return "started from ImageNet weights" if weights == "imagenet" else f"started from the weights file {weights}"


def _section_training(paths: RunPaths) -> str:
    parts = []
    if paths.curves.is_file():
        parts.append(_img(paths.curves, "learning curves", "900px"))
    metrics = _csv(paths.metrics)
    if metrics is not None:
        parts.append(_table(metrics))
    folds = paths.root / "cv_summary.csv"
    if (frame := _csv(folds)) is not None:
        parts.append("<h3>Cross-validation folds</h3>" + _table(frame))
    return "".join(parts) or _missing("Training", "cxrtool pretrain / finetune")


def _section_eval(paths: RunPaths) -> str:
    folders = sorted(p for p in paths.root.glob("eval*") if p.is_dir())
    if not folders:
        return _missing("Evaluation", f"cxrtool evaluate {paths.root}")
    parts = []
    for folder in folders:
        parts.append(f"<h3>{html.escape(folder.name)}</h3>")
        metrics_json = folder / "metrics.json"
        if metrics_json.is_file():
            data = read_json(metrics_json)
            keys = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
            if keys:
                parts.append(_table(pd.DataFrame([keys])))
        for name in ("per_label.csv", "shortcuts.csv", "external.csv"):
            if (frame := _csv(folder / name)) is not None:
                parts.append(f"<h4>{html.escape(name)}</h4>" + _table(frame))
        for png in _pngs(folder):
            parts.append(_img(png, png.stem, "900px"))
    return "".join(parts)


def _section_cam(paths: RunPaths) -> str:
    if not paths.cam.is_dir():
        return _missing("Class activation maps", "cxrtool cam IMAGE --class C")
    parts = []
    if (frame := _csv(paths.cam / "box_scores.csv")) is not None:
        parts.append("<h4>Box scores (pointing-game hit rate, IoU; box_fraction = chance)</h4>" + _table(frame))
    pngs = _pngs(paths.cam, MAX_CAM_EXAMPLES)
    if pngs:
        parts.append("<div class=grid>" + "".join(_img(p, p.stem) for p in pngs) + "</div>")
    return "".join(parts) or _missing("Class activation maps", "cxrtool cam IMAGE --class C")


def _embed_scores(scores: dict[str, Any]) -> pd.DataFrame:
    """One row per space and map: silhouette and k-NN accuracy (scores.json's `spaces`)."""
    rows = []
    for space, methods in (scores.get("spaces") or {}).items():
        for method, entry in methods.items():
            if isinstance(entry, dict):
                # `--split all` scores each split apart; the train split's latent scores are in-sample.
                for split, part in (entry.get("by_split") or {entry.get("scored_on"): entry}).items():
                    rows.append(
                        {
                            "space": space,
                            "map": "full (PCA)" if method == "full" else method,
                            "scored on": f"{split} (in-sample)" if part.get("in_sample") else split,
                            "silhouette": part.get("silhouette"),
                            "knn_accuracy": part.get("knn_accuracy"),
                        }
                    )
    return pd.DataFrame(rows)


def _section_embed(paths: RunPaths) -> str:
    if not paths.embed.is_dir():
        return _missing("Embedding maps", "cxrtool embed --method all")
    parts = []
    scores_path = paths.embed / "scores.json"
    if scores_path.is_file():
        scores = read_json(scores_path)
        frame = _embed_scores(scores)
        if len(frame):
            chance = scores.get("knn_chance")
            note = f" (k-NN chance level {chance:.3f})" if isinstance(chance, (int, float)) else ""
            parts.append(f"<h4>Cluster scores on {scores.get('n_images', '?')} images{note}</h4>" + _table(frame))
        near = scores.get("near_covid") or {}
        if near:
            parts.append("<h4>Findings nearest COVID-19 (centroid distance)</h4>" + _pre(json.dumps(near, indent=1)))
    pngs = _pngs(paths.embed)
    if pngs:
        parts.append('<div class="grid big">' + "".join(_img(p, p.stem) for p in pngs) + "</div>")
    return "".join(parts) or _missing("Embedding maps", "cxrtool embed --method all")


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table.t{border-collapse:collapse;font-size:.85em;margin:.5em 0}table.t td,table.t th{border:1px solid #ddd;padding:2px 6px;text-align:right}
table.t th{background:#f4f4f4}pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:8px}
.grid.big{grid-template-columns:repeat(auto-fill,minmax(520px,1fr))}.wide{overflow-x:auto}
figure{margin:0}figcaption{font-size:.75em;color:#666}.note{color:#777;font-style:italic}
"""


@holds_locks
def build_report(cfg: ReportConfig) -> Path:
    """Write RUN/report.html (or cfg.out) and return its path."""
    run = resolve_run(cfg.run)
    out = Path(cfg.out) if cfg.out else run / "report.html"
    if cfg.out is None:  # the run's own page, rewritten each time and recorded as the run's
        claim_folder(run, "report", check=False, legacy=legacy_run_files)
    claim_file(out, "report", overwrite=cfg.overwrite or cfg.out is None)
    paths = RunPaths(run)
    manifest = read_json(paths.manifest)
    summary = "".join(
        f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in _summary_rows(manifest, paths)
    )
    parents = _parents(manifest)
    parent_html = (
        "".join(
            f"<li><code>{html.escape(p)}</code> ({html.escape(str(m.get('kind', '?')))}, "
            f"{html.escape(str(m.get('arch', '?')))}, data {html.escape(str(m.get('data', '?')))})</li>"
            for p, m in parents
        )
        or f"<li>none: {html.escape(_start_of(paths))}</li>"
    )
    config_text = paths.config.read_text() if paths.config.is_file() else "(no config.yaml)"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>cxrtool report: {html.escape(run.name)}</title>
<style>{CSS}</style></head><body>
<h1>cxrtool report: {html.escape(run.name)}</h1>
<table class=t>{summary}</table>
<h2>Parent runs</h2><ul>{parent_html}</ul>
<h2>Training</h2>{_section_training(paths)}
<h2>Evaluation</h2>{_section_eval(paths)}
<h2>Class activation maps</h2>{_section_cam(paths)}
<h2>Embeddings</h2>{_section_embed(paths)}
<h2>Configuration</h2>{_pre(config_text)}
<p class=note>Numbers on small test sets are uncertain: read the intervals, not only the estimates.</p>
</body></html>
"""
    atomic_write_text(out, page)
    return out
