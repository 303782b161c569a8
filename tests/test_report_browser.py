"""The report pages in a real browser: no console error, the answer on the first screen, nothing too wide.

Playwright drives the system's Chromium (Debian's `chromium` package, which .ci/run installs):
CI reaches package registries only, so Playwright's own browser download is never used. Where
either is missing the tests skip and say which. The window is 1280 x 800, a laptop's screen.
"""

from __future__ import annotations

import os
import shutil

import pytest
from test_report import _arms, _entry, _eval_run, metrics_doc
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.evaluate.pipeline import EvaluateConfig, evaluate_run
from cxrtool.report.compare_page import write_compare_page

WIDTH, HEIGHT = 1280, 800


def _chromium() -> str:
    for candidate in (os.environ.get("CXRTOOL_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.skip("no Chromium on PATH (apt-get install chromium, or set CXRTOOL_CHROMIUM to a Chrome/Chromium binary)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    executable = _chromium()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def run_page(trained_run, tmp_path_factory):
    """The page of the tiny run, evaluated on its test split (with shortcut baselines)."""
    run = shutil.copytree(trained_run, tmp_path_factory.mktemp("browser") / "run")
    # With published columns: the widest per-label table the page has.
    evaluate_run(EvaluateConfig(run=run, bootstrap=100, device="cpu", compare="chexnet"))
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    return run / "report.html"


def _open(browser, path):
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, errors


# Per table container that is too narrow for its table: by how much, and the table's first row.
OVERFLOW = """() => Array.from(document.querySelectorAll('.wide'))
  .filter(d => d.scrollWidth - d.clientWidth > 1)
  .map(d => (d.scrollWidth - d.clientWidth) + ' px: ' + d.querySelector('tr').innerText)"""
# Per figure: its shown width over its own pixel width (1: shown at its size, so its text is as drawn).
SCALES = """() => Array.from(document.querySelectorAll('img.zoom')).map(i => i.getBoundingClientRect().width / i.naturalWidth)"""


def _check(browser, path):
    page, errors = _open(browser, path)
    try:
        box = page.locator(".headline").first.bounding_box()
        assert box is not None and box["y"] < HEIGHT - 80, box  # the answer is on the first screen
        page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
        assert page.evaluate(OVERFLOW) == []  # no table runs out of its container, open or folded
        assert page.evaluate("() => document.documentElement.scrollWidth") <= WIDTH  # nor the page
        scales = page.evaluate(SCALES)
        assert scales and min(scales) >= 0.9, scales  # figures shown (about) at their own size
        page.locator("img.zoom").first.click()  # a click opens the figure full size, and closes it
        assert page.locator("#zoom").is_visible()
        page.locator("#zoom").click()
        assert not page.locator("#zoom").is_visible()
        assert errors == []
    finally:
        page.close()


def test_run_page_in_a_browser(browser, run_page):
    _check(browser, run_page)


def test_compare_page_in_a_browser(browser, tmp_path):
    _check(browser, write_compare_page(_arms(tmp_path / "cmp", with_diff=True)))


def test_widest_evaluation_fits_in_a_browser(browser, trained_run, tmp_path):
    """Long names, a long reason, published columns and five metadata predictors on one page."""
    doc = metrics_doc()
    doc["labels"]["Pleural_Thickening"] = _entry(0.8123, 0.7012, 0.9034, pr_auc=0.3, pr_auc_low=0.2, pr_auc_high=0.4)
    doc["labels"]["Consolidation"] = {
        "n": 60,
        "positives": 0,
        "negatives": 60,
        "not_computable": "one class only: no positive image in this split",
    }
    names = ["view", "sex", "age", "source", "all metadata"]
    doc["shortcuts"]["predictors"] = {
        n: {l: {"auroc": 0.6789, "auroc_low": 0.5123, "auroc_high": 0.8234} for l in doc["labels"]} for n in names
    }
    doc["compare"] = [
        {"key": k, "name": k, "citation": "c", "measured_on": "m", "auroc": dict.fromkeys(doc["labels"], 0.8)}
        for k in ("CheXNet 2017", "Wang et al. 2017", "Table 1 of the report")
    ]
    run = _eval_run(tmp_path, trained_run, doc)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    _check(browser, run / "report.html")
