"""`prepare` against hostile but fair use (issue 14): concurrent writers, truncated or mixed caches,
a user's own files in --out, label typos and conflicting rows, decompression bombs, symlink loops,
Ctrl-C. Each case: one clear line, a non-zero exit where the command could not do what was asked,
and nothing corrupt left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import slow_decoding_child
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
    assert str(err.value) == (
        f"cache {out} is incomplete: images.u8.npy is {full - 1000} bytes, the manifest says {full}; "
        "run prepare again with --overwrite"
    )
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


# ---------------------------------------------------------------- 3. label typos, conflicting rows


def relabelled(raw, root, edit):
    """A copy of the raw NIH-layout set whose label file is passed through `edit` (images linked)."""
    root.mkdir()
    (root / "images").symlink_to(raw / "images", target_is_directory=True)
    lines = (raw / "Data_Entry_2017.csv").read_text().splitlines()
    (root / "Data_Entry_2017.csv").write_text("\n".join(edit(lines)) + "\n")
    return root


def test_a_misspelt_finding_is_reported_and_never_becomes_a_negative(raw, tmp_path):
    def typo(lines):
        assert lines[1].startswith("00000001_000.png,Cardiomegaly|Effusion,")
        lines[1] = lines[1].replace("Cardiomegaly|Effusion", "Cardiomegaly|Efusion")
        lines[2] = lines[2].replace("Cardiomegaly|Effusion", "Efusion")
        return lines

    root = relabelled(raw, tmp_path / "typo", typo)
    res = prepare(root, tmp_path / "c", "--findings", "Cardiomegaly,Effusion,Mass")
    assert res.exit_code == 0, res.output
    warning = next(l for l in res.output.splitlines() if "not labels" in l)
    assert "'Efusion' x2" in warning and "00000001_000.png" in warning and "Data_Entry_2017.csv" in warning
    index = PreparedData(tmp_path / "c").index.set_index("id")
    assert index.loc["00000001_000.png", "Cardiomegaly"] == 1  # the known positive stays
    for image in ("00000001_000.png", "00000001_001.png"):
        assert np.isnan(index.loc[image, "Effusion"]) and np.isnan(index.loc[image, "Mass"])  # not 0
    assert index.loc["00000001_002.png", "Effusion"] == 1 and index.loc["00000001_002.png", "Mass"] == 0


def test_an_image_listed_twice_with_different_findings_is_skipped_and_listed(raw, tmp_path):
    def conflict(lines):
        return [*lines, lines[3].replace(",Effusion,", ",Mass,"), lines[4]]  # 1 conflicting, 1 exact repeat

    root = relabelled(raw, tmp_path / "dup", conflict)
    res = prepare(root, tmp_path / "c")
    assert res.exit_code == 0, res.output
    assert any("00000001_002.png" in l and "different findings" in l for l in res.output.splitlines())
    data = PreparedData(tmp_path / "c")
    assert "00000001_002.png" not in set(data.index["id"]) and data.index["id"].is_unique
    skipped = pd.read_csv(data.root / "skipped.csv").set_index("id")
    assert "'Effusion' / 'Mass'" in skipped.loc["00000001_002.png", "reason"]


def test_a_header_only_label_file_gets_a_clear_line_naming_it(raw, tmp_path):
    root = relabelled(raw, tmp_path / "empty", lambda lines: lines[:1])
    res = prepare(root, tmp_path / "c")
    assert res.exit_code == 2 and "Data_Entry_2017.csv: the label file has a header but no rows" in one_line(res)
    csv = tmp_path / "list.csv"
    csv.write_text("image,covid\n")
    res = cli("prepare", "folder", csv, "--label-cols", "covid", "--out", tmp_path / "f", "-q")
    assert res.exit_code == 2 and "list.csv: the CSV has a header but no rows" in one_line(res)


def test_folder_rows_with_conflicting_labels_for_one_file_are_skipped(raw, tmp_path):
    names = sorted(p.name for p in (raw / "images").iterdir())[:4]
    csv = tmp_path / "list.csv"
    csv.write_text(
        "image,covid\n"
        + "".join(f"images/{n},{i % 2}\n" for i, n in enumerate(names))
        + f"images/{names[0]},1\nimages/{names[1]},1\n"
    )  # names[0] conflicts, names[1] repeats
    (tmp_path / "images").symlink_to(raw / "images", target_is_directory=True)
    res = cli(
        "prepare",
        "folder",
        csv,
        "--label-cols",
        "covid",
        "--out",
        tmp_path / "f",
        "--size",
        32,
        "--workers",
        1,
        "--val-frac",
        0,
        "--test-frac",
        0,
    )
    assert res.exit_code == 0, res.output
    assert any("different labels" in l and names[0] in l for l in res.output.splitlines())
    data = PreparedData(tmp_path / "f")
    assert f"images/{names[0]}" not in set(data.index["source_path"])
    assert set(pd.read_csv(data.root / "skipped.csv")["source_path"]) == {f"images/{names[0]}"}


def test_a_misspelt_covid_finding_is_unknown_not_negative(tmp_path):
    from PIL import Image

    from cxrtool.data.sources.covid import PrepareCovidConfig, read_covid

    (tmp_path / "images").mkdir()
    rows = ["patientid,finding,view,modality,folder,filename"]
    for i, finding in enumerate(["COVID-19", "COVD-19", "No Finding", "Streptococcus", "Pnuemonia/Viral"]):
        Image.fromarray(np.full((16, 16), i * 40, np.uint8)).save(tmp_path / "images" / f"{i}.png")
        rows.append(f"p{i},{finding},PA,X-ray,images,{i}.png")
    (tmp_path / "metadata.csv").write_text("\n".join(rows) + "\n")
    table = read_covid(PrepareCovidConfig(root=tmp_path, out=tmp_path / "c", findings=["COVID-19", "Pneumonia"]))
    values = table.rows.set_index("id")[["COVID-19", "Pneumonia"]]
    assert values.loc["0.png"].tolist() == [1, 1] and values.loc["2.png"].tolist() == [0, 0]
    assert values.loc["3.png"].tolist() == [0, 1]
    assert (
        values.loc["1.png"].isna().all()
        and np.isnan(values.loc["4.png", "COVID-19"])
        and values.loc["4.png", "Pneumonia"] == 1
    )
    assert len(table.warnings) == 1 and "'covd-19' x1" in table.warnings[0] and "'pnuemonia' x1" in table.warnings[0]


# ---------------------------------------------------------------- 4. decompression bombs


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file that declares a width x height image (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("side", [25_000, 60_000])  # over Pillow's old warning and its error limit
def test_a_decompression_bomb_is_an_unreadable_file_with_its_reason(tmp_path, side):
    import warnings

    from cxrtool.data.imageio import ImageReadError, read_gray

    bomb = header_only_png(tmp_path / "bomb.png", side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw DecompressionBombWarning either
        with pytest.raises(
            ImageReadError, match=rf"image is {side} x {side} = \d+ megapixels, over the 50 megapixel limit"
        ):
            read_gray(bomb)


def test_a_bomb_among_the_images_is_skipped_by_prepare_and_predict(raw, tmp_path, trained_run):
    root = relabelled(raw, tmp_path / "bomb", lambda lines: lines)
    (root / "images").unlink()
    (root / "images").mkdir()
    names = sorted(p.name for p in (raw / "images").iterdir())
    for name in names[1:]:
        (root / "images" / name).symlink_to(raw / "images" / name)
    header_only_png(root / "images" / names[0], 60_000, 60_000)
    out = tmp_path / "c"
    res = cli("prepare", "nih", root, "--out", out, "--size", 32, "--workers", 2, "--test-frac", 0.3, "-q")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and not (out / ".prepare-tmp").exists()
    skipped = pd.read_csv(out / "skipped.csv").set_index("id")
    assert "over the 50 megapixel limit" in skipped.loc[names[0], "reason"]
    assert len(PreparedData(out)) == len(names) - 1

    res = cli(
        "predict",
        "--run",
        trained_run,
        root / "images" / names[0],
        root / "images" / names[1],
        "--out",
        tmp_path / "p.csv",
        "--batch-size",
        2,
        "--device",
        "cpu",
        "-q",
    )
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "p.csv")["file"].tolist() == [str(root / "images" / names[1])]
    assert "megapixel limit" in res.output


# ---------------------------------------------------------------- 5. symlink loops


def test_directory_link_loops_under_the_root_are_walked_once(raw, tmp_path):
    root = relabelled(raw, tmp_path / "loops", lambda lines: lines)
    (root / "more" / "deeper").mkdir(parents=True)
    (root / "more" / "deeper" / "up").symlink_to("../..", target_is_directory=True)  # loop 1
    (root / "more" / "deeper" / "root").symlink_to(root, target_is_directory=True)  # loop 2
    (root / "more" / "again").symlink_to(root / "images", target_is_directory=True)  # a second way in
    script = (
        "import json, sys; from cxrtool.data.sources.nih import image_files; "
        "print(json.dumps({k: str(v) for k, v in image_files(sys.argv[1]).items()}))"
    )
    walked = subprocess.run(
        [sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=60
    )  # hung before
    files = json.loads(walked.stdout)
    assert sorted(files) == sorted(p.name for p in (raw / "images").iterdir())
    assert all(Path(p).parent == root / "images" for p in files.values())  # the first path in sorted order
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxrtool",
            "prepare",
            "nih",
            str(root),
            "--out",
            str(tmp_path / "c"),
            "--size",
            "32",
            "--workers",
            "1",
            "--test-frac",
            "0.3",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(PreparedData(tmp_path / "c")) == len(files)


# ---------------------------------------------------------------- 6. Ctrl-C and killed prepares

# Ctrl-C as in a terminal's foreground job: a shell starts background jobs (a suite run with `&`)
# with SIGINT ignored, and this child would inherit that.
SLOW_PREPARE = slow_decoding_child("signal.signal(signal.SIGINT, signal.default_int_handler)")


def start_slow_prepare(raw, out):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_PREPARE,
            "prepare",
            "nih",
            str(raw),
            "--out",
            str(out),
            "--size",
            "32",
            "--workers",
            "2",
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for _ in range(2):  # both workers are decoding
        assert proc.stdout.readline() == "decoding\n"
    return proc


def test_ctrl_c_during_prepare_is_one_line_and_keeps_nothing(raw, tmp_path):
    out = tmp_path / "c"
    proc = start_slow_prepare(raw, out)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
        _, stderr = proc.communicate(timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "prepare was interrupted; nothing was kept" in lines[0] and "run the same command again" in lines[0]
    assert "--resume" not in stderr and "epoch" not in stderr
    assert not out.exists()  # made by this prepare, left empty: removed


def test_workers_of_a_killed_prepare_exit_quietly(raw, tmp_path):
    proc = start_slow_prepare(raw, tmp_path / "c")
    try:
        os.kill(proc.pid, signal.SIGKILL)  # the main process only: its workers are orphaned
        _, stderr = proc.communicate(timeout=30)  # returns once every worker has closed the pipes
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    res = prepare(raw, tmp_path / "c")  # the next prepare takes over and finishes
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "c" / ".prepare-tmp").exists()


def _sigterm_disposition():
    return signal.getsignal(signal.SIGTERM)


def test_decoding_workers_die_of_sigterm_even_under_the_commands_handler():
    """Pool.terminate sends SIGTERM: a worker that kept the command's Python handler could hang it."""
    from cxrtool.data.pool import start_pool
    from cxrtool.signals import sigterm_as_interrupt

    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)  # the command's handler
        pool = start_pool(1)
        try:
            assert pool.apply(_sigterm_disposition) == signal.SIG_DFL
        finally:
            pool.terminate()
            pool.join()
