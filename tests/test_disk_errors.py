"""A full disk, a read-only folder, a file as `--out`, file names that are not UTF-8, too small an input.

Issue 21's items 14, 16, 17, 18, 19 and 23, each reproduced: before, a full disk killed `prepare`
with SIGBUS (leaving `.prepare-tmp` to keep the disk full), a checkpoint save or a lock ended in a
traceback, a read-only cache could not be used even where nothing had to be written, and
`densenet121` took `--image-size 16` only to fail inside the network. Each case must now be one
`error:` line naming the path (or option) and what to do, with nothing half-written left behind.

Full disks and read-only file systems are simulated by making the system call fail with the
errno the kernel gives (ENOSPC, EROFS): no test needs to mount anything. Where a folder is made
read-only with chmod, a test run as root (which ignores permissions) patches the call instead.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_PRETRAIN, cli, one_line, pretrain_cli

from cxrtool.data.cache import PreparedData
from cxrtool.data.sources.synthetic import SyntheticConfig, write_raw
from cxrtool.models.archs import arch_names, get_spec
from cxrtool.models.registry import create_model


def prepare(raw, out, *extra):
    return cli("prepare", "nih", raw, "--out", out, "--size", 32, "--workers", 1, "--test-frac", 0.3, "-q", *extra)


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def erofs(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(args[0]) if args else None)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "synthetic"
    write_raw(out, SyntheticConfig(n_patients=10, size=64, seed=5))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, synth_data) -> Path:
    out = tmp_path_factory.mktemp("disk") / "run"
    res = pretrain_cli(synth_data, out)
    assert res.exit_code == 0, res.output
    return out


# ---------------------------------------------------------------- 14. a full disk during prepare


def test_full_disk_when_reserving_the_images_is_one_line_and_leaves_nothing(raw, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "posix_fallocate", enospc, raising=False)
    out = tmp_path / "c"
    res = prepare(raw, out)
    assert res.exit_code == 2
    line = one_line(res)
    assert str(out) in line and ".prepare-tmp" not in line
    assert "disk is full" in line and "free space" in line
    assert not out.exists()  # made by this prepare and left empty: removed, no .prepare-tmp keeps the disk full


def test_too_little_free_space_is_refused_before_the_images_are_created(raw, tmp_path, monkeypatch):
    import cxrtool.data.npyfile as npyfile

    monkeypatch.setattr(npyfile, "free_bytes", lambda folder: 1000)
    made = []
    real = np.lib.format.open_memmap
    monkeypatch.setattr(np.lib.format, "open_memmap", lambda *a, **k: made.append(a) or real(*a, **k))
    out = tmp_path / "c"
    res = prepare(raw, out)
    assert res.exit_code == 2
    line = one_line(res)
    assert line.startswith(f"error: {out}: not enough disk space") and "MB free" in line
    assert made == []  # refused before any file was created
    assert not out.exists()


def test_full_disk_while_writing_the_index_removes_the_temporary_folder(raw, tmp_path, monkeypatch):
    import cxrtool.atomic as atomic

    real = atomic.atomic_write

    def full(path, write):
        if Path(path).name == "index.csv":
            return real(path, lambda p: enospc())
        return real(path, write)

    monkeypatch.setattr(atomic, "atomic_write", full)
    out = tmp_path / "c"
    res = prepare(raw, out)
    assert res.exit_code == 2
    assert "index.csv" in one_line(res)
    assert not out.exists()


# ---------------------------------------------------------------- 18. a full disk while saving a checkpoint


@pytest.mark.parametrize("error", ["safetensors", "oserror"])
def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, synth_data, monkeypatch, error):
    from safetensors import SafetensorError

    import cxrtool.models.checkpoint as checkpoint

    out = tmp_path / "run"
    assert pretrain_cli(synth_data, out).exit_code == 0
    before = (out / "checkpoints" / "last" / "model.safetensors").read_bytes()

    def full(*args, **kwargs):
        if error == "safetensors":  # what safetensors raises on a full disk
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        enospc()

    monkeypatch.setattr(checkpoint, "save_file", full)
    res = pretrain_cli(synth_data, out, "--resume", epochs=2)
    assert res.exit_code == 2
    line = one_line(res)
    assert str(out / "checkpoints") in line and "disk is full" in line and "previous one is kept" in line
    assert (out / "checkpoints" / "last" / "model.safetensors").read_bytes() == before
    left = [p.name for p in (out / "checkpoints").iterdir()]
    assert sorted(left) == ["best", "last"]  # no .tmp-PID folder filling the disk further
    assert not (out / ".cxrtool.lock").exists()


# ---------------------------------------------------------------- 16. locks on read-only or full disks


def _make_read_only(folder: Path, monkeypatch) -> None:
    """chmod the folder read-only; as root (permissions ignored) make the lock file's creation fail with EROFS."""
    folder.chmod(0o555)
    if os.geteuid() == 0:
        import cxrtool.locks as locks

        real_open = os.open

        def ro_open(path, flags, *args, **kwargs):
            if Path(path).parent == folder and flags & os.O_CREAT:
                erofs()
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(locks.os, "open", ro_open)


def test_prepare_into_a_read_only_cache_with_the_same_settings_works(raw, tmp_path, monkeypatch):
    out = tmp_path / "c"
    assert prepare(raw, out).exit_code == 0
    _make_read_only(out, monkeypatch)
    try:
        res = prepare(raw, out)
        assert res.exit_code == 0, res.output
        assert "ready" in res.output and "Traceback" not in res.output
        res = prepare(raw, out, "--val-frac", 0.3)  # other settings: one line, nothing written
        assert res.exit_code == 2
        line = one_line(res)
        assert str(out) in line and ("other settings" in line or "read-only" in line)
    finally:
        out.chmod(0o755)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_evaluate_of_a_read_only_run_is_one_line_and_works_with_another_out(run, tmp_path, monkeypatch):
    copy = tmp_path / "ro"
    import shutil

    shutil.copytree(run, copy)
    _make_read_only(copy, monkeypatch)
    if os.geteuid() == 0:  # the eval folder cannot be made either
        import cxrtool.locks as locks

        real_mkdir = Path.mkdir

        def ro_mkdir(self, *args, **kwargs):
            if self.parent == copy:
                erofs()
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(locks.Path, "mkdir", ro_mkdir)
    try:
        res = cli("evaluate", copy, "-q")
        assert res.exit_code == 2
        line = one_line(res)
        assert str(copy / "eval") in line and ("read-only" in line or "permission" in line)
        res = cli("evaluate", copy, "--out", tmp_path / "elsewhere", "-q")
        assert res.exit_code == 0, res.output
        assert (tmp_path / "elsewhere" / "metrics.json").is_file()
    finally:
        copy.chmod(0o755)


def test_resume_on_a_full_disk_is_one_line_and_leaves_no_lock(run, tmp_path, monkeypatch):
    import shutil

    import cxrtool.locks as locks

    copy = tmp_path / "full"
    shutil.copytree(run, copy)
    monkeypatch.setattr(locks.os, "pwrite", enospc)  # the lock file is made; its holder cannot be written
    res = pretrain_cli(PreparedData(Path(_recorded_data(copy))), copy, "--resume", epochs=2)
    assert res.exit_code == 2
    line = one_line(res)
    assert str(copy) in line and "cannot lock this run" in line and "disk is full" in line
    assert not (copy / ".cxrtool.lock").exists()


def _recorded_data(run: Path) -> str:
    import json

    return json.loads((run / "manifest.json").read_text())["data"]


# ---------------------------------------------------------------- 17. export and compare with a bad --out


@pytest.mark.parametrize("command", ["export", "compare"])
@pytest.mark.parametrize("case", ["file", "read-only"])
def test_export_and_compare_refuse_an_unusable_out_in_one_line(run, tmp_path, monkeypatch, command, case):
    out = tmp_path / "out"
    if case == "file":
        out.write_text("a user's file")
    else:
        out.mkdir()
        out.chmod(0o555)
        if os.geteuid() == 0:
            import cxrtool.locks as locks

            monkeypatch.setattr(locks.tempfile, "mkstemp", erofs)
    try:
        if command == "export":
            res = cli("export", run, "--format", "torchscript", "--out", out, "-q")
        else:
            res = cli("compare", "--arm", f"A={run}", "--label", "Effusion", "--out", out, "-q")
        assert res.exit_code == 2
        line = one_line(res)
        assert str(out) in line and "--out" in line
        assert ("is a file" in line) if case == "file" else ("read-only" in line or "permission" in line)
    finally:
        if out.is_dir():
            out.chmod(0o755)
    if case == "file":
        assert out.read_text() == "a user's file"


# ---------------------------------------------------------------- 19. file names that are not UTF-8


@pytest.fixture
def odd_named(tmp_path, synth_data) -> tuple[Path, Path]:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8, read back as a lone surrogate
    for file in (name, "plain.png"):
        Image.fromarray(np.asarray(synth_data.images[0])).save(folder / file)
    return folder, folder / name


def test_predict_writes_a_file_name_that_is_not_utf8_as_its_bytes(run, odd_named, tmp_path):
    folder, odd = odd_named
    out = tmp_path / "pred.csv"
    res = cli("predict", run, folder, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    assert os.fsencode(odd.name) in out.read_bytes()  # the real name: a script can open the file it names
    import pandas as pd

    files = pd.read_csv(out, encoding_errors="surrogateescape")["file"].tolist()
    assert len(files) == 2 and all(Path(f).is_file() or (folder / f).is_file() for f in files)


def test_cam_of_a_file_name_that_is_not_utf8_writes_its_index(run, odd_named, tmp_path):
    folder, odd = odd_named
    out = tmp_path / "cam"
    res = cli("cam", run, folder, "--class", "Effusion", "--out", out, "-q")
    assert res.exit_code == 0, res.output
    index = (out / "cams.csv").read_bytes()
    assert os.fsencode(odd.name) in index
    res = cli("cam", run, folder, "--class", "Mass", "--out", out, "-q")  # reads its own index back
    assert res.exit_code == 0, res.output
    assert (out / "cams.csv").read_bytes().count(os.fsencode(odd.name)) == 2


# ---------------------------------------------------------------- 23. an input too small for the network


@pytest.mark.parametrize("arch", arch_names())
def test_each_architecture_runs_at_its_recorded_minimum_size(arch):
    smallest = get_spec(arch).min_image_size
    model = create_model(arch, 2)
    model.train()
    model(torch.rand(2, 1, smallest, smallest)).sum().backward()  # a training step's batch
    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 1, smallest, smallest))
    if smallest > 8:  # the minimum is tight: one pixel less fails inside the network
        with pytest.raises(RuntimeError):
            model(torch.rand(1, 1, smallest - 1, smallest - 1))


def test_image_size_below_the_architectures_minimum_is_one_line(synth_data, tmp_path):
    args = [a for a in TINY_PRETRAIN if a not in ("tiny-cnn", "--arch")]
    size_at = args.index("--image-size") + 1
    args[size_at] = "16"
    res = cli("pretrain", "--data", synth_data.root, "--out", tmp_path / "r", "--arch", "densenet121", *args)
    assert res.exit_code == 2
    line = one_line(res)
    assert (
        "--image-size" in line
        and "densenet121" in line
        and f"at least {get_spec('densenet121').min_image_size}" in line
    )
    assert not (tmp_path / "r").exists()  # refused before the run directory was made
