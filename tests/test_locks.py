"""Directory locks (cxrtool.locks): one writer at a time, stale locks of killed writers taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from cxrtool.errors import CxrError
from cxrtool.locks import LOCK_NAME, hold_lock, read_holder

HOLDER = textwrap.dedent(r"""
    import os, sys, time
    from cxrtool.locks import hold_lock
    with hold_lock(sys.argv[1], what="cache"):
        if len(sys.argv) > 2 and os.fork() == 0:   # a forked worker that outlives its parent
            os.write(1, f"child {os.getpid()}\n".encode())
            time.sleep(60)
            os._exit(0)
        os.write(1, b"locked\n")
        time.sleep(60)
""")


def start_holder(directory, *extra):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), *extra], stdout=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline() for _ in range(2 if extra else 1)]
    assert any(line.startswith("locked") for line in lines), lines
    child = next((int(l.split()[1]) for l in lines if l.startswith("child")), None)
    return proc, child


def test_a_second_writer_stops_at_once_naming_the_first(tmp_path):
    proc, _ = start_holder(tmp_path)
    try:
        with pytest.raises(CxrError) as err, hold_lock(tmp_path):
            pass
        message = str(err.value)
        assert f"pid {proc.pid}" in message and "another cxrtool is writing this cache" in message
        assert "started" in message and "\n" not in message
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_writers_lock_is_taken_over_and_released_after(tmp_path):
    proc, _ = start_holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_holder(tmp_path)["pid"] == proc.pid  # the file stays, the OS lock does not
    with hold_lock(tmp_path) as stale:
        assert stale is not None and stale["pid"] == proc.pid
        assert read_holder(tmp_path)["pid"] == os.getpid()
        with hold_lock(tmp_path):  # nested in the same process: allowed
            pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_forked_workers_of_a_killed_writer_do_not_keep_its_lock(tmp_path):
    proc, child = start_holder(tmp_path, "fork")
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with hold_lock(tmp_path) as stale:
            assert stale["pid"] == proc.pid
    finally:
        os.kill(child, signal.SIGKILL)
