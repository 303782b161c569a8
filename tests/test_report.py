"""`cxrtool report`: a self-contained page that shows what exists and says what does not."""

from __future__ import annotations

import re
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from typer.testing import CliRunner

from cxrtool.cli import app


def _png(path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)


def test_report_inlines_artifacts_and_lists_missing_sections(tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "eval").mkdir()
    _png(run / "eval" / "roc.png")
    pd.DataFrame({"label": ["Mass"], "auroc": [0.8771], "ci_low": [0.7], "ci_high": [0.95]}).to_csv(
        run / "eval" / "per_label.csv", index=False
    )
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1  # the ROC plot, inlined
    assert "0.877" in page and "Mass" in page  # the per-label table
    assert "Class activation maps not run yet" in page and "Embedding maps not run yet" in page
    assert not re.search(r'src="(?!data:)', page)  # nothing referenced outside the file


def test_report_on_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in result.output
