"""SIGTERM is handled like Ctrl-C, and `--resume` refuses options it would drop (issue 21, items 8 and 25).

A cluster scheduler ends a job at its time limit with SIGTERM, to every process of the job. Before,
`pretrain` and `prepare` died at once (exit 143, no message) and left their lock and
`.prepare-tmp` behind. Here the real command runs in its own session and the whole group gets
SIGTERM, as a scheduler sends it: one line says what was kept and how to go on, the lock and the
temporary folders are gone, the finished epochs are intact and `--resume` continues them.

`--resume` used to drop `--lr`, `--arch`, `--data`, `--image-size` and `--batch-size` without a
word; only `--epochs`, `--workers` and `--device` may change now, the rest must match the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import typer
from helpers import TINY_PRETRAIN, pretrain_cli, slow_decoding_child
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.sources.synthetic import SyntheticConfig, write_raw
from cxrtool.models.checkpoint import load_checkpoint

runner = CliRunner()

# The command as a scheduler's job runs it: SIGTERM at its default (a shell may start a background
# job with some signals ignored, and the child would inherit that), then the real CLI.
AS_A_JOB = textwrap.dedent(r"""
    import signal, sys
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from cxrtool.cli import app
    app(sys.argv[1:], prog_name="cxrtool")
""")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CXRTOOL_QUIET": "1"}


def start_job(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", AS_A_JOB, *map(str, args)],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,  # its own process group: SIGTERM goes to the command and its workers
        **popen,
    )


def terminate_group(proc: subprocess.Popen) -> str:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return stderr


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_sigterm_during_pretrain_keeps_finished_epochs_and_resume_continues(synth_data, tmp_path):
    out = tmp_path / "run"
    # --workers 1: a DataLoader worker gets the same SIGTERM as the command, as under a scheduler
    args = list(TINY_PRETRAIN)
    args[args.index("--workers") + 1] = "1"
    proc = start_job("pretrain", "--data", synth_data.root, "--out", out, "--epochs", 500, "--early-stop", 0, *args)
    card = out / "checkpoints" / "last" / "card.json"
    deadline = time.monotonic() + 240
    while not card.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert card.is_file(), proc.stderr.read() if proc.poll() is not None else "no epoch finished in time"
    time.sleep(0.5)  # well inside a later epoch, or saving it
    stderr = terminate_group(proc)
    assert proc.returncode == 143, stderr
    lines = errors(stderr)
    assert len(lines) == 1, stderr
    assert "stopped by SIGTERM" in lines[0] and f"cxrtool pretrain {out} --resume" in lines[0]
    assert not (out / ".cxrtool.lock").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best", "last"]  # no .tmp-/.old- folders
    _, kept = load_checkpoint(out / "checkpoints" / "last")  # complete: its card's file sizes match
    done = int(kept["epoch"])
    assert done >= 1 and len(pd.read_csv(out / "metrics.csv")) >= done

    res = pretrain_cli(synth_data, out, "--resume", epochs=done + 1)
    assert res.exit_code == 0, res.output
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == list(range(1, done + 2))
    assert json.loads(card.read_text())["epoch"] == done + 1


SLOW_DECODE = slow_decoding_child("signal.signal(signal.SIGTERM, signal.SIG_DFL)")


def test_sigterm_during_prepare_is_one_line_and_keeps_nothing(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, SyntheticConfig(n_patients=6, size=64, seed=5))
    out = tmp_path / "c"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_DECODE,
            *map(str, ["prepare", "nih", raw, "--out", out, "--size", 32, "--workers", 2]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    try:
        for _ in range(2):  # both workers are decoding: the temporary folder and the lock exist
            assert proc.stdout.readline() == "decoding\n"
        assert (out / ".prepare-tmp").is_dir() and (out / ".cxrtool.lock").is_file()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    stderr = terminate_group(proc)
    assert proc.returncode == 143, stderr
    lines = errors(stderr)
    assert len(lines) == 1 and len(stderr.strip().splitlines()) == 1, stderr
    assert "prepare was stopped by SIGTERM; nothing was kept" in lines[0] and "run the same command again" in lines[0]
    assert not out.exists()  # made by this prepare: removed with its .prepare-tmp and lock


def test_sigterm_handler_is_in_force_only_inside_a_command():
    from cxrtool.commands.support import user_errors
    from cxrtool.signals import Terminated

    seen = []

    @user_errors
    def command():
        seen.append(signal.getsignal(signal.SIGTERM))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(typer.Exit) as stop:
        command()
    assert stop.value.exit_code == 143
    assert seen and seen[0] not in (signal.SIG_DFL, signal.SIG_IGN, None)
    assert signal.getsignal(signal.SIGTERM) == before  # restored afterwards
    assert issubclass(Terminated, KeyboardInterrupt)  # every Ctrl-C clean-up runs for it too


# ---------------------------------------------------------------- --resume and changed options


@pytest.fixture
def one_epoch(synth_data, tmp_path) -> Path:
    out = tmp_path / "run"
    res = pretrain_cli(synth_data, out)
    assert res.exit_code == 0, res.output
    return out


def test_resume_refuses_changed_options_naming_each(one_epoch, synth_data, tmp_path):
    other = tmp_path / "other-data"
    other.mkdir()
    res = runner.invoke(
        app,
        [
            "pretrain",
            str(one_epoch),
            "--resume",
            "--epochs",
            "2",
            "--lr",
            "0.5",
            "--arch",
            "resnet18",
            "--data",
            str(other),
            "--image-size",
            "48",
            "--batch-size",
            "4",
            "-q",
        ],
    )
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    line = lines[0]
    for flag, mine, theirs in [
        ("--lr", "0.5", "0.001"),
        ("--arch", "resnet18", "tiny-cnn"),
        ("--image-size", "48", "32"),
        ("--batch-size", "4", "16"),
    ]:
        assert f"{flag} {mine} (the run has {theirs})" in line, line
    assert f"--data {other}" in line and "Only --epochs, --workers, --device may change" in line
    assert "--epochs 2" not in line
    assert len(pd.read_csv(one_epoch / "metrics.csv")) == 1  # nothing trained


def test_resume_refuses_a_changed_value_from_a_config_file(one_epoch, tmp_path):
    config = tmp_path / "changed.yaml"
    config.write_text("lr: 0.02\nepochs: 2\n")
    res = runner.invoke(app, ["pretrain", str(one_epoch), "--resume", "--config", str(config), "-q"])
    assert res.exit_code == 2
    assert "--lr 0.02 (the run has 0.001)" in res.output and "--epochs" not in res.output.split("Only")[0]


def test_resume_accepts_the_same_options_again_and_a_new_epoch_count(one_epoch, synth_data):
    # The command that started the run, with --resume added and more epochs: it continues.
    res = pretrain_cli(synth_data, one_epoch, "--resume", "--lr", "0.001", "--batch-size", "16", epochs=2)
    assert res.exit_code == 0, res.output
    assert pd.read_csv(one_epoch / "metrics.csv")["epoch"].tolist() == [1, 2]
