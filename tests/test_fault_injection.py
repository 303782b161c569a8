"""Fault injection: a whole small pipeline, each step killed (SIGKILL) at random points.

prepare -> pretrain -> resume -> evaluate run as real `cxrtool` processes; each step is started
several times and killed after a random delay. After every kill the user's next command must
either work on complete data or refuse with one `error:` line (no traceback), and whatever a
command accepted is checked independently of cxrtool (numpy, safetensors, json): a command that
exits 0 on a damaged artifact counts as "corrupt artifact trusted", which must stay 0.
The figure goes into docs/robustness.md. CXRTOOL_FAULT_KILLS sets the kills per step (default 2);
CXRTOOL_FAULT_SEED the random delays.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_PRETRAIN

pytestmark = pytest.mark.slow

KILLS_PER_STEP = int(os.environ.get("CXRTOOL_FAULT_KILLS", "2"))
SEED = int(os.environ.get("CXRTOOL_FAULT_SEED", "0"))
TINY = [*TINY_PRETRAIN, "--batch-size", "8"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CXRTOOL_QUIET": "1"}


def cxr(*args: str) -> list[str]:
    return [sys.executable, "-m", "cxrtool", *map(str, args)]


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)


def run_killed(args: list[str], delay: float, tally: Tally) -> bool:
    """Start `args`, SIGKILL it after `delay` seconds; True if it was killed (False: it finished first)."""
    tally.tries += 1
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and any worker it started
        proc.wait()
        return True


class Tally:
    def __init__(self) -> None:
        self.tries = self.kills = self.worked = self.refused = self.trusted_corrupt = 0

    def outcome(self, proc: subprocess.CompletedProcess, what: str) -> bool:
        """True if the command worked; a refusal must be one error line with exit status 2."""
        assert "Traceback" not in proc.stderr, f"{what}: traceback\n{proc.stderr}"
        if proc.returncode == 0:
            self.worked += 1
            return True
        errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
        others = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith(("error:", "warning:"))]
        assert proc.returncode == 2 and len(errors) == 1 and not others, f"{what}: {proc.returncode}\n{proc.stderr}"
        self.refused += 1
        return False


def cache_is_complete(data: Path) -> bool:
    """Independently of cxrtool: the index and the image array agree and can be read whole."""
    try:
        index = pd.read_csv(data / "index.csv")
        images = np.load(data / "images.u8.npy", mmap_mode="r")
        json.loads((data / "manifest.json").read_text())
        return images.shape[0] == len(index) and int(np.asarray(images[-1]).sum()) >= 0
    except Exception:
        return False


def checkpoint_is_complete(folder: Path) -> bool:
    from safetensors.torch import load_file

    try:
        card = json.loads((folder / "card.json").read_text())
        load_file(str(folder / "model.safetensors"))
        if (folder / "state.safetensors").exists():
            load_file(str(folder / "state.safetensors"))
            json.loads((folder / "state.json").read_text())
        return isinstance(card, dict) and bool(card.get("labels"))
    except Exception:
        return False


def evaluation_is_complete(folder: Path, test_rows: int) -> bool:
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        return isinstance(metrics, dict) and len(pd.read_csv(folder / "predictions.csv")) == test_rows
    except Exception:
        return False


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    proc = run(args)
    assert proc.returncode == 0, proc.stderr
    return time.perf_counter() - start


def test_killed_steps_leave_nothing_corrupt_that_is_trusted(tmp_path):
    rng = random.Random(SEED)
    tally = Tally()
    raw, data, base = tmp_path / "raw", tmp_path / "data", tmp_path / "base"
    assert run(cxr("prepare", "synthetic", raw, "--patients", "24", "--size", "48", "-q")).returncode == 0
    prepare = cxr("prepare", "nih", raw, "--out", data, "--size", "32", "--workers", "1", "-q")

    # 1. prepare: killed, then run again; pretrain must only ever see a complete cache.
    t_prepare = timed(prepare)
    for _ in range(KILLS_PER_STEP):
        shutil.rmtree(data)
        if not run_killed(prepare, rng.uniform(0.2, 0.8 * t_prepare), tally):
            continue
        tally.kills += 1
        if not tally.outcome(run(prepare), "prepare after a kill"):
            assert tally.outcome(run([*prepare, "--overwrite"]), "prepare --overwrite after a kill")
        assert cache_is_complete(data)
    pretrain = cxr("pretrain", "--data", data, "--out", base, "--epochs", "2", *TINY)
    t_pretrain = timed(pretrain)
    test_rows = int((pd.read_csv(data / "index.csv")["split"] == "test").sum())

    # 2. pretrain: killed at random points; the same command again (or --resume) finishes it, and
    #    evaluate on what was left either works on complete checkpoints or refuses.
    for k in range(KILLS_PER_STEP):
        out = tmp_path / f"run-{k}"
        command = cxr("pretrain", "--data", data, "--out", out, "--epochs", "2", *TINY)
        if not run_killed(command, rng.uniform(0.5, 0.8 * t_pretrain), tally):
            continue
        tally.kills += 1
        evaluated = run(cxr("evaluate", out, "--bootstrap", "0", "--out", tmp_path / f"eval-{k}", "-q"))
        if tally.outcome(evaluated, "evaluate a killed run"):
            tally.trusted_corrupt += not checkpoint_is_complete(out / "checkpoints" / "best")
        if not tally.outcome(run(command), "pretrain again after a kill"):
            assert tally.outcome(run(cxr("pretrain", out, "--resume", "-q")), "--resume after a kill")
        assert checkpoint_is_complete(out / "checkpoints" / "last")

    # 3. resume: a finished run continued for one more epoch, killed; resuming again must work.
    for k in range(KILLS_PER_STEP):
        out = tmp_path / f"resumed-{k}"
        shutil.copytree(base, out)
        resume = cxr("pretrain", out, "--resume", "--epochs", "3", "-q")
        if not run_killed(resume, rng.uniform(0.5, 0.6 * t_pretrain), tally):
            continue
        tally.kills += 1
        proc = run(resume)
        if tally.outcome(proc, "resume after a killed resume"):
            tally.trusted_corrupt += not checkpoint_is_complete(out / "checkpoints" / "last")
        assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == [1, 2, 3]

    # 4. evaluate: killed; a later evaluate (or report) must not take a partial folder for a finished one.
    evaluate = cxr("evaluate", base, "--bootstrap", "0", "-q")
    t_evaluate = timed([*evaluate, "--out", tmp_path / "eval-timing"])
    for k in range(KILLS_PER_STEP):
        target = tmp_path / f"evaluation-{k}"
        if not run_killed([*evaluate, "--out", target], rng.uniform(0.5, 0.8 * t_evaluate), tally):
            continue
        tally.kills += 1
        if (target / "metrics.json").exists():
            tally.trusted_corrupt += not evaluation_is_complete(target, test_rows)
        if not tally.outcome(run([*evaluate, "--out", target]), "evaluate again after a kill"):
            assert tally.outcome(run([*evaluate, "--out", target, "--overwrite"]), "evaluate --overwrite")
        assert evaluation_is_complete(target, test_rows)

    import resource

    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"\nfault injection: {tally.tries} kills tried, {tally.kills} landed before the command ended, "
        f"{tally.worked} commands worked, {tally.refused} refused with one line, "
        f"corrupt artifacts trusted: {tally.trusted_corrupt} ({cpu.ru_utime + cpu.ru_stime:.0f} s CPU)"
    )
    assert tally.kills >= KILLS_PER_STEP  # most delays fall inside the command
    assert tally.trusted_corrupt == 0
