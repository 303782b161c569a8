"""`cxrtool report`: one self-contained HTML page describing a run.

The page opens with the answer: a headline block per evaluation (what was scored, the main AUROC
with its interval, the warnings that matter in words; report.evaluation). Then each evaluation's
detail (forest plot, per-label table, metadata-only baselines, ROC and reliability;
report.eval_section), training (learning curves, per-epoch table), CAM examples and box scores,
embedding maps and cluster scores (report.sections), and last the run's description, its chain of
parent runs (pretrain -> finetune) and its resolved config. Every image is inlined (base64), so
the page can be mailed or archived on its own; sections whose artifacts do not exist yet say
"not run yet" with the command that makes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text, read_json
from ..config import read_yaml
from ..errors import CxrError
from ..formatting import fmt, fmt_sig
from ..models.provenance import STALE, evaluation_status
from ..optionspec import option
from ..owned import claim_file, claim_folder
from ..progress import warn
from ..run_locks import holds_locks
from ..runs import RunPaths, legacy_run_files, resolve_run, run_of
from . import sections
from .eval_section import section as eval_section
from .evaluation import Evaluation, headline
from .markup import details, esc, key_values, missing, note, page


@dataclass
class ReportConfig:
    run: Path | None = option(None, help="Run directory (same as the argument).")
    out: Path | None = option(None, help="HTML file to write (default RUN/report.html).")  # default RUN/report.html
    overwrite: bool = option(
        False, help="Replace an existing --out file (never a cache's or a run's own file)."
    )  # replace an existing --out file (never a cache's or a run's own file)


def _summary_rows(manifest: dict[str, Any], paths: RunPaths) -> list[tuple[str, str]]:
    rows = [
        ("Run", str(paths.root)),
        ("Kind", str(manifest.get("kind", "?"))),
        ("Architecture", str(manifest.get("arch", "?"))),
        ("Data", str(manifest.get("data", "?"))),
        ("Data hash", str(manifest.get("data_hash", "?"))),
        ("Created", str(manifest.get("created", "?"))),
    ]
    env = manifest.get("environment", {})
    rows.append(
        (
            "Software",
            ", ".join(f"{k} {v}" for k, v in env.items() if v and k in ("cxrtool", "torch", "torchvision", "python")),
        )
    )
    if env.get("git_commit"):
        rows.append(("Commit", env["git_commit"]))
    return rows


def _parents(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The chain of parent runs (nearest first), as recorded in each manifest."""
    chain, seen = [], set()
    parent = manifest.get("parent")
    while parent and parent not in seen and len(chain) < 10:
        seen.add(parent)
        parent_dir = Path(parent)
        if parent_dir.is_file():  # a weights file: its checkpoint folder
            parent_dir = parent_dir.parent
        parent_dir = run_of(parent_dir) or parent_dir
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


def evaluations(paths: RunPaths) -> tuple[list[Evaluation], list[str]]:
    """The run's evaluations (eval/, eval-<split>/), the test split's first, and why any could not be read."""
    folders = sorted((p for p in paths.root.glob("eval*") if p.is_dir()), key=lambda p: (p.name != "eval", p.name))
    found, problems = [], []
    for folder in folders:
        try:
            if (ev := Evaluation.read(folder)) is not None:
                found.append(ev)
                # An evaluation of earlier weights (the run was trained further) is named as stale.
                state, why = evaluation_status(folder, ev.metrics)
                if state == STALE:
                    warn(why)
                    problems.append(why)
        except CxrError as exc:  # one damaged folder does not hide the rest of the run
            problems.append(str(exc))
    return found, problems


def _no_evaluation(paths: RunPaths) -> str:
    """The headline of a run not evaluated yet: the best validation AUROC of training, said as such."""
    line = ""
    frame = sections.read_csv(paths.metrics)
    if frame is not None and "val_auroc_mean" in frame and frame["val_auroc_mean"].notna().any():
        best = frame.loc[frame["val_auroc_mean"].idxmax()]
        line = (
            f"<p class=answer>Best mean validation AUROC during training: {esc(fmt(best['val_auroc_mean']))} "
            f"(epoch {esc(fmt_sig(best.get('epoch')))})</p><p class=warn>The validation split chose that epoch: "
            "the number is optimistic; evaluate on the test split for the answer.</p>"
        )
    return (
        f"<section class=headline id=headline><h2>Not evaluated yet</h2>{line}"
        f"{missing('Evaluation', f'cxrtool evaluate {paths.root}')}</section>"
    )


def _parents_html(manifest: dict[str, Any], paths: RunPaths) -> str:
    items = "".join(
        f"<li><code>{esc(p)}</code> ({esc(m.get('kind', '?'))}, {esc(m.get('arch', '?'))}, "
        f"data {esc(m.get('data', '?'))})</li>"
        for p, m in _parents(manifest)
    )
    return f"<ul>{items or f'<li>none: {esc(_start_of(paths))}</li>'}</ul>"


def render(run: Path, out: Path) -> str:
    """The page (HTML text) of the run, as it would be written to `out` (links are relative to it)."""
    paths = RunPaths(run)
    manifest = read_json(paths.manifest)
    evals, problems = evaluations(paths)
    answer = "".join(headline(ev) for ev in evals) or _no_evaluation(paths)
    # A stale evaluation is shown, and its note says so; an unreadable one is not shown.
    answer += "".join(note(why if ": stale: " in why else f"Not shown: {why}") for why in problems)
    lead = (
        f"{manifest.get('kind', 'run')} of {manifest.get('arch', '?')} on {manifest.get('data', '?')}, "
        f"created {manifest.get('created', '?')}"
    )
    detail = "".join(eval_section(ev, out) for ev in evals) or missing("Evaluation", f"cxrtool evaluate {run}")
    config_text = paths.config.read_text() if paths.config.is_file() else "(no config.yaml)"
    body = f"""<h1>cxrtool report: {esc(run.name)}</h1><p class=sub>{esc(lead)}</p>
{answer}
<h2>Evaluation</h2>{detail}
<h2>Training</h2>{sections.training(paths, out)}
<h2>Class activation maps</h2>{sections.cam(paths)}
<h2>Embeddings</h2>{sections.embed(paths)}
<h2>About this run</h2>{key_values(_summary_rows(manifest, paths))}
<h3>Parent runs</h3>{_parents_html(manifest, paths)}
{details("Configuration (config.yaml)", f"<pre>{esc(config_text)}</pre>")}
<p class=note>Numbers on small test sets are uncertain: read the intervals, not only the estimates.</p>"""
    return page(f"cxrtool report: {run.name}", body)


@holds_locks
def build_report(cfg: ReportConfig) -> Path:
    """Write RUN/report.html (or cfg.out) and return its path."""
    run = resolve_run(cfg.run)
    out = Path(cfg.out) if cfg.out else run / "report.html"
    if cfg.out is None:  # the run's own page, rewritten each time and recorded as the run's
        claim_folder(run, "report", check=False, legacy=legacy_run_files)
    claim_file(out, "report", overwrite=cfg.overwrite or cfg.out is None)
    text = render(run, out)
    atomic_write_text(out, text)
    return out
