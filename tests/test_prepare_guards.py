"""`prepare` against hostile but fair use (issue 14): concurrent writers, truncated or mixed caches,
a user's own files in --out, label typos and conflicting rows, decompression bombs, symlink loops,
Ctrl-C. Each case: one clear line, a non-zero exit where the command could not do what was asked,
and nothing corrupt left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.cache import PreparedData
from cxrtool.data.sources.synthetic import SyntheticConfig, write_raw
from cxrtool.errors import CxrError

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def prepare(raw, out, *extra):
    return cli("prepare", "nih", raw, "--out", out, "--size", 32, "--workers", 1, "--test-frac", 0.3, "-q", *extra)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "synthetic"
    write_raw(out, SyntheticConfig(n_patients=10, size=64, seed=5))
    return out


def one_line(res) -> str:
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


# ---------------------------------------------------------------- 1. one writer at a time


def test_a_second_prepare_into_the_same_out_stops_at_once_naming_the_first(raw, tmp_path):
    from test_locks import start_holder

    out = tmp_path / "c"
    holder, _ = start_holder(out)
    try:
        res = prepare(raw, out)
        assert res.exit_code == 2
        line = one_line(res)
        assert f"pid {holder.pid}" in line and "another cxrtool is writing this cache" in line
        assert sorted(p.name for p in out.iterdir()) == [".cxrtool.lock"]  # nothing of ours written
    finally:
        holder.kill()
        holder.wait()
    res = prepare(raw, out)  # the killed writer's lock is stale: taken over
    assert res.exit_code == 0, res.output
    assert len(PreparedData(out)) > 0 and not (out / ".cxrtool.lock").exists()


# ---------------------------------------------------------------- 2. complete or absent


def test_a_truncated_image_file_is_reported_on_open_and_a_rerun_rebuilds_it(raw, tmp_path):
    out = tmp_path / "c"
    assert prepare(raw, out).exit_code == 0
    images = out / "images.u8.npy"
    full = images.stat().st_size
    with open(images, "r+b") as fh:
        fh.truncate(full - 1000)
    with pytest.raises(CxrError) as err:
        PreparedData(out)
    assert str(err.value) == (f"cache {out} is incomplete: images.u8.npy is {full - 1000} bytes, the manifest says {full}; "
                              "run prepare again with --overwrite")
    res = cli("pretrain", "--data", out, "--arch", "tiny-cnn", "--epochs", 1, "--out", tmp_path / "run", "-q")
    assert res.exit_code == 2 and "images.u8.npy is" in one_line(res)
    res = cli("prepare", "nih", raw, "--out", out, "--size", 32, "--workers", 1, "--test-frac", 0.3)
    assert res.exit_code == 0 and "is ready" not in res.output and "incomplete" in res.output
    assert images.stat().st_size == full and len(PreparedData(out).images) == len(PreparedData(out))


def test_an_index_changed_after_prepare_is_refused(raw, tmp_path):
    a = tmp_path / "a"
    assert prepare(raw, a).exit_code == 0
    text = (a / "index.csv").read_text()
    assert ",1.0" in text
    (a / "index.csv").write_text(text.replace(",1.0", ",0.0", 1))  # same size, one label flipped
    with pytest.raises(CxrError, match=r"index.csv / labels.json do not match the manifest's data_hash"):
        PreparedData(a)


def test_a_failed_prepare_leaves_no_temporary_folder_and_no_empty_out(raw, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Data_Entry_2017.csv").write_text((raw / "Data_Entry_2017.csv").read_text())
    (bad / "images").mkdir()
    for name in pd.read_csv(raw / "Data_Entry_2017.csv")["Image Index"][:3]:
        (bad / "images" / name).write_bytes(b"not an image at all, just bytes")
    out = tmp_path / "c"
    res = prepare(bad, out)
    assert res.exit_code == 2 and "none of the 3 images could be read" in one_line(res)
    assert not out.exists()


# ---------------------------------------------------------------- 7. a user's own files


@pytest.mark.parametrize("name", ["index.csv", "labels.json"])
def test_a_users_own_cache_named_file_is_not_overwritten_without_asking(raw, tmp_path, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("my own notes\n")
    res = prepare(raw, out)
    assert res.exit_code == 2 and name in one_line(res) and "--overwrite" in res.output
    assert (out / name).read_text() == "my own notes\n" and sorted(os.listdir(out)) == [name]
    assert prepare(raw, out, "--overwrite").exit_code == 0
    assert len(PreparedData(out)) > 0
