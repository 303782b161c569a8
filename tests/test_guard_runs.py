"""Run-side robustness (issue 14): locks, dead first epochs, RUN arguments, umask, damaged cards and
checkpoints, YAML types, plain output in logs and Ctrl-C messages. Each test reproduces a case that
used to lose data, trust something corrupt or show a traceback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from helpers import TINY_PRETRAIN, pretrain_cli
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.commands.support import user_errors
from cxrtool.errors import CxrError

runner = CliRunner()


def _errors(res) -> list[str]:
    return [l for l in res.output.splitlines() if l.strip()]


def _one_line(res, *needles: str) -> str:
    lines = _errors(res)
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synth_data) -> Path:
    out = tmp_path_factory.mktemp("guard") / "run"
    res = pretrain_cli(synth_data, out)
    assert res.exit_code == 0, res.output
    return out


# ---------------------------------------------------------------- YAML types


def test_yaml_values_are_checked_against_the_field_types(tmp_path, synth_data):
    bad = tmp_path / "bad.yaml"
    bad.write_text('oversample: "no"\nepochs: 1.7\nlabels: [Effusion, no]\nlr: true\n')
    res = runner.invoke(app, ["pretrain", "--data", str(synth_data.root), "--config", str(bad), "-q"])
    assert res.exit_code == 2
    lines = _errors(res)
    assert len(lines) == 4 and all(l.startswith(f"error: {bad}: ") for l in lines), res.output
    assert any("oversample: expected true or false" in l for l in lines)
    assert any("epochs: expected a whole number, got 1.7" in l for l in lines)
    assert any("labels: expected a list of text" in l for l in lines)
    assert any("lr: expected a number" in l for l in lines)


def test_yaml_accepts_what_a_dumped_config_holds(tmp_path):
    from cxrtool.config import build_config
    from cxrtool.train import FinetuneConfig

    good = tmp_path / "good.yaml"
    good.write_text(
        "lr: 1\nepochs: 3\noversample: true\nlabels: Effusion,Mass\nout: null\nimage_size: null\n"
        "parent: none\ndata: some/where\n"
    )
    cfg = build_config(FinetuneConfig, good)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.epochs == 3 and cfg.oversample is True
    assert cfg.labels == ["Effusion", "Mass"] and cfg.out is None and cfg.data == Path("some/where")


# ---------------------------------------------------------------- umask


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_artifacts_follow_the_umask(tmp_path, umask, mode):
    import torch

    from cxrtool.atomic import atomic_write_json
    from cxrtool.models import create_model
    from cxrtool.models.checkpoint import model_card, save_checkpoint

    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        model = create_model("tiny-cnn", 2)
        save_checkpoint(
            tmp_path / "best", model, model_card(model, ["A", "B"], 32, 32), state={"epoch": 1, "t": torch.zeros(2)}
        )
    finally:
        os.umask(old)
    for path in [tmp_path / "a.json", *sorted((tmp_path / "best").iterdir())]:
        assert path.stat().st_mode & 0o777 == mode, path


def test_every_file_of_a_run_has_the_mode_open_would_give(finished_run):
    from cxrtool.owned import current_umask

    files = [p for p in finished_run.rglob("*") if p.is_file()]
    assert len(files) >= 8  # config, manifest, metrics, curves, and two checkpoints' files
    assert {p.stat().st_mode & 0o777 for p in files} == {0o666 & ~current_umask()}


# ---------------------------------------------------------------- locks


def _hold_lock_in_child(directory: Path) -> subprocess.Popen:
    code = (
        "import sys, time\nfrom cxrtool.locks import hold_lock\n"
        "with hold_lock(sys.argv[1], what='run'):\n    print('held', flush=True)\n    time.sleep(120)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_writer_of_a_run_stops_at_once_naming_the_first(tmp_path, synth_data, finished_run):
    out = tmp_path / "run"
    child = _hold_lock_in_child(out)
    try:
        _one_line(pretrain_cli(synth_data, out), str(out), f"pid {child.pid}", "another cxrtool is writing")
        assert not (out / "manifest.json").exists()
        # --resume and evaluate into a locked folder stop the same way.
        _one_line(runner.invoke(app, ["pretrain", str(out), "--resume", "-q"]), str(out))
        busy = tmp_path / "eval"
        evaluator = _hold_lock_in_child(busy)
        try:
            res = runner.invoke(app, ["evaluate", str(finished_run), "--out", str(busy), "--bootstrap", "0", "-q"])
            _one_line(res, str(busy), f"pid {evaluator.pid}")
        finally:
            evaluator.kill()
            evaluator.wait()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # The holder was killed: its lock is stale, taken over, and the run starts.
    res = pretrain_cli(synth_data, out)
    assert res.exit_code == 0, res.output
    assert "taking over the lock" in res.output
    assert (out / "checkpoints" / "best" / "card.json").is_file() and not (out / ".cxrtool.lock").exists()


# ---------------------------------------------------------------- a run killed in its first epoch


def _dead_run(finished: Path, dead: Path) -> Path:
    """What a pretrain killed during its first epoch leaves: config, manifest, a stale lock, a temp folder."""
    dead.mkdir(parents=True)
    shutil.copy(finished / "config.yaml", dead / "config.yaml")
    shutil.copy(finished / "manifest.json", dead / "manifest.json")
    (dead / ".cxrtool.lock").write_text(json.dumps({"pid": 999999, "command": "cxrtool pretrain"}))
    (dead / "checkpoints" / ".best.tmp-999999").mkdir(parents=True)
    return dead


def test_a_run_killed_in_its_first_epoch_restarts_with_the_same_command(tmp_path, synth_data, finished_run):
    dead = _dead_run(finished_run, tmp_path / "dead")
    _one_line(
        runner.invoke(app, ["pretrain", str(dead), "--resume", "-q"]),
        str(dead),
        "no epoch of this run finished",
        "without --resume",
    )
    res = pretrain_cli(synth_data, dead)
    assert res.exit_code == 0, res.output
    assert "starting this run again: it holds no finished epoch" in res.output
    assert (dead / "checkpoints" / "last" / "card.json").is_file()
    assert not (dead / "checkpoints" / ".best.tmp-999999").exists()


def test_a_finished_run_is_never_overwritten_without_asking(tmp_path, synth_data, finished_run):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = (out / "checkpoints" / "best" / "model.safetensors").read_bytes()
    _one_line(pretrain_cli(synth_data, out), str(out), "--resume", "--overwrite")
    assert (out / "checkpoints" / "best" / "model.safetensors").read_bytes() == before
    (out / "notes.txt").write_text("mine")
    _one_line(pretrain_cli(synth_data, out, "--overwrite"), "notes.txt")  # the user's file: never deleted
    (out / "notes.txt").unlink()
    res = pretrain_cli(synth_data, out, "--overwrite", "--seed", "3")
    assert res.exit_code == 0 and "replacing the finished run" in res.output, res.output
    assert json.loads((out / "manifest.json").read_text())["seed"] == 3


# ---------------------------------------------------------------- predict / cam RUN argument


@pytest.fixture()
def newest_elsewhere(tmp_path, finished_run, monkeypatch):
    """A working folder whose ./runs holds a complete run (what a wrong guess would use) and an image."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    shutil.copytree(finished_run, tmp_path / "runs" / "pretrain-tiny-cnn-1")
    Image.new("L", (40, 40), 128).save(tmp_path / "x.png")
    return tmp_path / "runs" / "pretrain-tiny-cnn-1"


@pytest.mark.parametrize("command", ["predict", "cam"])
def test_a_mistyped_or_incomplete_run_is_an_error_not_another_model(tmp_path, newest_elsewhere, finished_run, command):
    _one_line(runner.invoke(app, [command, "runs/pretrain-tyop", "x.png", "-q"]), "runs/pretrain-tyop")
    dead = _dead_run(finished_run, tmp_path / "runs" / "dead")
    _one_line(runner.invoke(app, [command, str(dead), "x.png", "-q"]), str(dead))
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line(runner.invoke(app, [command, str(empty), "x.png", "-q"]), str(empty))
    assert not (newest_elsewhere / "cam").exists()


def test_the_model_used_is_always_named_on_stderr(newest_elsewhere):
    res = runner.invoke(app, ["predict", "x.png", "-q"])
    assert res.exit_code == 0, res.output
    assert f"model: {Path('runs/pretrain-tiny-cnn-1/checkpoints/best')}" in res.stderr
    assert "model:" not in res.stdout


def test_predict_out_to_an_unwritable_place_is_one_line(tmp_path, newest_elsewhere):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    _one_line(runner.invoke(app, ["predict", "x.png", "--out", str(blocker / "p.csv"), "-q"]), "--out", "p.csv")


# ---------------------------------------------------------------- damaged cards and checkpoints


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda card: {**card, "arch": "resnet999"}, "unknown architecture 'resnet999' in the card"),
        (lambda card: {k: v for k, v in card.items() if k != "labels"}, "'labels' must be"),
        (lambda card: [card], "not a model card"),
    ],
)
def test_a_bad_card_is_blamed_on_the_card_file(tmp_path, finished_run, change, needle):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    card_path = run / "checkpoints" / "best" / "card.json"
    card_path.write_text(json.dumps(change(json.loads(card_path.read_text()))))
    line = _one_line(runner.invoke(app, ["evaluate", str(run), "--bootstrap", "0", "-q"]), str(card_path), needle)
    assert "--arch" not in line


def test_truncated_checkpoint_files_are_reported_on_open(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    state = run / "checkpoints" / "last" / "state.safetensors"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    _one_line(runner.invoke(app, ["pretrain", str(run), "--resume", "--epochs", "2", "-q"]), str(state), "truncated")
    weights = run / "checkpoints" / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    _one_line(runner.invoke(app, ["evaluate", str(run), "--bootstrap", "0", "-q"]), str(weights), "truncated")


def test_a_damaged_state_without_size_marks_is_still_one_line(tmp_path, finished_run):
    from cxrtool.models.checkpoint import load_state

    folder = tmp_path / "last"
    shutil.copytree(finished_run / "checkpoints" / "last", folder)
    card = json.loads((folder / "card.json").read_text())
    card.pop("files")  # a checkpoint saved before cards listed their files
    (folder / "card.json").write_text(json.dumps(card))
    (folder / "state.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CxrError, match="unreadable training state"):
        load_state(folder)


# ---------------------------------------------------------------- plain output in logs


def test_output_to_a_file_is_plain_whole_lines(tmp_path, synth_data):
    """Captured (not a terminal): no bar redraws, no folding at 80 columns, one line per epoch."""
    env = {**os.environ, "CXRTOOL_QUIET": "0", "COLUMNS": "80", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "a-run-directory-with-a-long-name-so-that-lines-would-fold-at-eighty-columns"
    cmd = [
        sys.executable,
        "-m",
        "cxrtool",
        "pretrain",
        "--data",
        str(synth_data.root),
        "--out",
        str(out),
        "--epochs",
        "2",
        *TINY_PRETRAIN[:-1],
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr  # no redraws, no colour codes
    epochs = [l for l in lines if l.startswith("epoch ") and "train loss" in l]
    assert len(epochs) == 2 and all("images/s" in l for l in epochs)
    assert not any(l.strip() in ("images/s", "(best)") for l in lines)
    assert any(l == f"run: {out}" for l in lines)  # 100+ characters, not folded


# ---------------------------------------------------------------- Ctrl-C


def _interrupting_app(name: str) -> typer.Typer:
    demo = typer.Typer()

    @demo.command(name)
    @user_errors
    def command() -> None:
        raise KeyboardInterrupt

    @demo.command("other")
    def other() -> None:  # a second command so that Typer keeps the command name
        pass

    return demo


@pytest.mark.parametrize("name", ["evaluate", "cam", "embed", "predict"])
def test_ctrl_c_outside_training_does_not_talk_about_resume(name):
    res = runner.invoke(_interrupting_app(name), [name])
    assert res.exit_code == 130
    line = _errors(res)[0]
    assert "--resume" not in line and "epoch" not in line and "nothing half-written was kept" in line


def test_ctrl_c_in_training_says_what_is_true_of_the_run(tmp_path, finished_run):
    from cxrtool.run_locks import _note_training_run, forget_training_run, interrupted_message

    _note_training_run(finished_run)
    assert f"cxrtool pretrain {finished_run} --resume" in interrupted_message()
    dead = _dead_run(finished_run, tmp_path / "dead")
    _note_training_run(dead)
    message = interrupted_message()
    assert "before the first epoch" in message and "--resume" not in message
    forget_training_run()
    assert "--resume" not in interrupted_message()
