"""`cxrtool report`: a self-contained page that opens with the answer and says what does not exist.

Most tests write a small evaluation folder by hand (metrics.json as `evaluate` writes it), so that
each warning the headline must say can be set up exactly; one evaluates the tiny trained run.
The page's look in a real browser is checked in tests/test_report_browser.py.
"""

from __future__ import annotations

import base64
import json
import re
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.evaluate import figures
from cxrtool.report.compare_page import write_compare_page
from cxrtool.report.evaluation import Evaluation, headline

HOSTILE = '<script>alert("x")</script>'


def _png(path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)


def _entry(auroc, low, high, **extra):
    return {"n": 60, "positives": 12, "negatives": 48, "auroc": auroc, "auroc_low": low, "auroc_high": high, **extra}


def metrics_doc(**overrides) -> dict:
    """A metrics.json like evaluate's: three labels, one not estimable, shortcut baselines."""
    doc = {
        "what": "test split of data/nih",
        "images": 60,
        "patients": 31,
        "split": "test",
        "checkpoint": "best",
        "bootstrap": {"replicates": 1000, "unit": "patient", "seed": 0},
        "labels": {
            "Mass": _entry(0.8771, 0.71, 0.95, pr_auc=0.5, pr_auc_low=0.3, pr_auc_high=0.7, ece=0.1),
            "Effusion": _entry(0.9, 0.85, 0.95),
            "Hernia": {
                "n": 60,
                "positives": 1,
                "negatives": 59,
                "auroc": 0.62,
                "not_estimable": "1 positive patient, fewer than 5",
                "positive_patients": 1,
                "negative_patients": 30,
            },
        },
        "mean": {
            "estimate": 0.8886,
            "low": 0.8,
            "high": 0.94,
            "labels": ["Mass", "Effusion"],
            "left_out": {"Hernia": "not estimable"},
        },
        "shortcuts": {
            "fitted_on": "train",
            "columns": ["view", "age"],
            "predictors": {
                "view": {"Mass": {"auroc": 0.74, "auroc_low": 0.6, "auroc_high": 0.85}, "Effusion": {"auroc": 0.5}},
                "age": {"Mass": {"auroc": 0.55, "auroc_low": 0.4, "auroc_high": 0.7}, "Effusion": {"auroc": 0.52}},
            },
            "confounded": [],
            "warnings": [],
        },
    }
    doc.update(overrides)
    return doc


def _eval_run(tmp_path, trained_run, doc: dict, name: str = "eval"):
    run = tmp_path / "run"
    if not run.exists():
        shutil.copytree(trained_run, run)
    (run / name).mkdir()
    (run / name / "metrics.json").write_text(json.dumps(doc))
    return run


def _page(run) -> str:
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    return _text(run / "report.html")


def _text(path) -> str:
    """The page's HTML, with the non-breaking spaces that hold an interval together read as spaces."""
    return path.read_text().replace("&nbsp;", " ")


def test_page_opens_with_the_answer_and_its_warnings(tmp_path, trained_run):
    run = _eval_run(tmp_path, trained_run, metrics_doc())
    _png(run / "eval" / "roc.png")
    page = _page(run)
    # The headline comes before any section and holds the main AUROC with its interval in one phrase.
    first = page.index("class=headline")
    assert first < page.index("<h2>Evaluation</h2>") < page.index("<h2>Training</h2>")
    block = page[first : page.index("</section>", first)]
    assert "Mean AUROC over 2 of 3 labels: 0.889 [0.800, 0.940]" in block
    assert "60 images of 31 patients" in block
    assert (
        "Metadata alone reaches the model's interval" in block
        and "Mass: view alone 0.740 [0.600, 0.850], the model 0.877 [0.710, 0.950]" in block
    )
    assert "Not estimable:</b> Hernia (1 positive patient, fewer than 5)" in block
    # A forest plot and the ROC figure are inlined; nothing is fetched from outside the file.
    assert page.count("data:image/png;base64,") == 2  # the forest plot and the ROC figure
    assert not re.search(r'src="(?!data:)', page)
    # Human headings and intervals in one cell; no snake_case column names.
    assert "<th>AUROC [95% CI]</th>" in page and "auroc_low" not in page
    assert "<td>0.877 [0.710, 0.950]</td>" in page
    assert "<td>0.620 (not estimable)</td>" in page
    assert "No interval for Hernia: not estimable (1 positive patient, fewer than 5)." in page
    # The best shortcut beside the model, the full table folded away.
    assert "view: 0.740 [0.600, 0.850] (reaches the model)" in page
    assert "<summary>Every metadata-only predictor</summary>" in page


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"split": "val"}, "the val split is the one that chose the best epoch"),
        ({"split": "train"}, "scored on the training split"),
        ({"in_sample": True, "lineage": {"seen": 12, "images": 60}}, "12 of 60 scored images were seen in training"),
    ],
)
def test_headline_says_an_in_sample_score(tmp_path, overrides, words):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics_doc(**overrides)))
    assert words in headline(Evaluation.read(tmp_path / "eval"))


def test_headline_says_a_confounded_source_and_a_single_label_answer(tmp_path):
    doc = metrics_doc(labels={"COVID-19": _entry(0.99, 0.97, 1.0)}, mean={"estimate": 0.99, "labels": ["COVID-19"]})
    doc["shortcuts"]["confounded"] = ["COVID-19: all 20 positives come from one source (covid)"]
    doc["labels"]["COVID-19"]["within_source"] = {"covid": _entry(0.71, 0.55, 0.84)}
    doc["shortcuts"]["predictors"] = {}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(doc))
    block = headline(Evaluation.read(tmp_path / "eval"))
    assert "COVID-19 AUROC: 0.990 [0.970, 1.000]" in block
    assert "Confounded source:</b> COVID-19: all 20 positives come from one source (covid)" in block
    assert "COVID-19 within covid's images: 0.710 [0.550, 0.840]" in block


def test_numbers_are_written_for_people(tmp_path, trained_run):
    run = _eval_run(tmp_path, trained_run, metrics_doc())
    pd.DataFrame({"epoch": [1, 2], "train_loss": [0.69314718, 0.5123456], "lr": [0.0001, 0.0001]}).to_csv(
        run / "metrics.csv", index=False
    )
    (run / "cam").mkdir()
    pd.DataFrame(columns=["class", "method", "images", "pointing_hit_rate"]).to_csv(
        run / "cam" / "box_scores.csv", index=False
    )
    (run / "embed").mkdir()
    near = {"latent": [["Effusion", 0.4213456789012345], ["Mass", 1.234567890123]]}
    (run / "embed" / "scores.json").write_text(json.dumps({"n_images": 40, "spaces": {}, "near_covid": near}))
    page = _page(run)
    assert "<td>1e-4</td>" in page and "0.000<" not in page  # the learning rate
    assert "<td>0.693</td>" in page and "<th>Learning rate</th>" in page
    assert "Effusion (0.421), Mass (1.23)" in page and "0.4213456" not in page
    assert "No box was scored" in page and "Pointing-game" not in page  # an empty table is a sentence


def test_hostile_names_are_shown_as_text(tmp_path, trained_run):
    doc = metrics_doc(what=HOSTILE)
    doc["labels"][HOSTILE] = doc["labels"].pop("Mass")
    doc["shortcuts"]["predictors"]["view"][HOSTILE] = doc["shortcuts"]["predictors"]["view"].pop("Mass")
    run = _eval_run(tmp_path, trained_run, doc)
    page = _page(run)
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert page.count("<script>") == 1  # the page's own zoom script only


def test_a_damaged_evaluation_is_named_and_the_others_shown(tmp_path, trained_run):
    run = _eval_run(tmp_path, trained_run, metrics_doc())
    (run / "eval-val").mkdir()
    (run / "eval-val" / "metrics.json").write_text('{"labels": [[[')
    page = _page(run)
    assert "Mean AUROC over 2 of 3 labels" in page  # eval/ still answers
    assert "Not shown: " in page and "eval-val/metrics.json: not valid JSON" in page


def test_report_without_evaluation_says_so_and_lists_missing_sections(tmp_path, trained_run):
    run = shutil.copytree(trained_run, tmp_path / "run")
    page = _page(run)
    assert "Not evaluated yet" in page and "cxrtool evaluate" in page
    assert "Class activation maps not run yet" in page and "Embedding maps not run yet" in page


def test_report_on_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in result.output


def test_figures_have_no_small_text_and_titles_fit(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(figures.plt, "close", shown.append)  # keep the figures to measure them
    cal = {"bins": [{"count": 5, "mean_prob": 0.2, "frac_pos": 0.1}], "ece": 0.1}
    long_title = "Reliability: test split of /tmp/a/rather/long/path/to/a/data/folder/synth-covid"
    figures.reliability_figure({"COVID-19": cal}, tmp_path / "r.png", title=long_title)
    fig = shown[0]
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]
    assert min(t.get_fontsize() * 110 / 72 for t in texts) >= 10
    width, height = fig.bbox.width, fig.bbox.height
    for t in fig.texts:  # the suptitle: wrapped inside the figure, never cut at its edges
        box = t.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width and box.y1 <= height, t.get_text()
    plt.close("all")


def _arms(tmp_path, with_diff: bool):
    rows = [
        {"arm": "transfer", "status": "ok", "label": "COVID-19", "test_auroc": 0.9, "test_low": 0.8, "test_high": 0.96},
        {"arm": "scratch", "status": "ok", "label": "COVID-19", "test_auroc": 0.8, "test_low": 0.7, "test_high": 0.88},
        {"arm": "imagenet", "status": "skipped: weights not cached", "label": "COVID-19"},
    ]
    rows[1].update(shortcut="view", shortcut_auroc=0.75, shortcut_low=0.6, shortcut_high=0.85)
    if with_diff:
        for r in rows:
            r["reference"] = "transfer"
        rows[1].update(diff=-0.1, diff_low=-0.18, diff_high=-0.02, diff_p=0.01)
    tmp_path.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(tmp_path / "arms.csv", index=False)
    return tmp_path


@pytest.mark.parametrize("with_diff", [False, True])
def test_compare_page_plots_the_arms_and_their_paired_differences(tmp_path, with_diff):
    out = _arms(tmp_path / "cmp", with_diff)
    page = _text(write_compare_page(out))
    assert "Highest COVID-19 test AUROC: transfer 0.900 [0.800, 0.960]" in page
    assert "Metadata alone reaches scratch's interval" in page and "imagenet</b>: skipped" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == (2 if with_diff else 1)  # the arms; and the differences when compare paired them
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert ("Δ vs transfer [95% CI]" in page) == with_diff
    assert ("-0.100 [-0.180, -0.020]" in page) == with_diff


def test_compare_writes_its_page_beside_its_tables(tmp_path, trained_run):
    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / "eval").mkdir()
    doc = metrics_doc(labels={"Mass": _entry(0.8, 0.7, 0.9)})
    (run / "eval" / "metrics.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["compare", "--arm", f"a={run}", "--label", "Mass", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    page = _text(tmp_path / "c" / "report.html")
    assert "Highest Mass test AUROC: a 0.800 [0.700, 0.900]" in page and 'href="arms.csv"' in page
