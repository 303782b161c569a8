"""Fixtures shared by the suite: quiet output, the real-data folder, small synthetic caches and runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CXRTOOL_QUIET", "1")

# The real X-rays (shared/data/README.md's layout); CXRTOOL_TEST_DATA points the tests elsewhere.
SHARED_DATA = Path(os.environ.get("CXRTOOL_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
NIH_SAMPLE = SHARED_DATA / "nih-chestxray14-sample"
COVID_SET = SHARED_DATA / "covid-chestxray-dataset"


@pytest.fixture(autouse=True)
def _quiet():
    from cxrtool.progress import set_quiet

    set_quiet(True)
    yield


@pytest.fixture(autouse=True)
def _release_run_locks():
    """Locks a test took by calling a library function directly (outside `holds_locks`) end with it."""
    yield
    from cxrtool.run_locks import release_locks

    release_locks()


@pytest.fixture(scope="session")
def nih_root() -> Path:
    if not (NIH_SAMPLE / "images").is_dir():
        pytest.skip(f"real NIH sample not found at {NIH_SAMPLE} (set CXRTOOL_TEST_DATA)")
    return NIH_SAMPLE


@pytest.fixture(scope="session")
def covid_root() -> Path:
    if not (COVID_SET / "metadata.csv").is_file():
        pytest.skip(f"real Cohen COVID-19 set not found at {COVID_SET} (set CXRTOOL_TEST_DATA)")
    return COVID_SET


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """A 64-px synthetic cache with the five pretraining findings (read-only for tests)."""
    from helpers import synthetic_cache

    return synthetic_cache(tmp_path_factory.mktemp("synth") / "data")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synth_data):
    """A tiny CNN trained on `synth_data`, as a run directory (read-only for tests)."""
    from helpers import quick_train

    return quick_train(synth_data, tmp_path_factory.mktemp("runs") / "pretrain-tiny")
