"""SIGTERM handled like Ctrl-C, and the few steps that neither may cut in half.

A cluster scheduler ends a job at its time limit with SIGTERM (then SIGKILL a while later).
Python's default for SIGTERM is to die at once: no `finally` runs, so a lock file, a cache's
temporary folder and an unfinished checkpoint folder would be left behind, and nothing says how
to go on. `sigterm_as_interrupt()` (entered by every command, see commands/support.py) makes
SIGTERM raise `Terminated`, a KeyboardInterrupt, in the main thread: every path that cleans up
after Ctrl-C cleans up after SIGTERM too, and the command says what is kept and how to resume,
with the conventional exit status 143 (128 + 15).

Details that matter:
- Forked children (decode pools, DataLoader workers) inherit the handler; in a child it restores
  the default and re-sends the signal to itself, so a worker still dies as before (a pool's own
  `terminate()` sends SIGTERM to its workers).
- A SIGTERM that was ignored when the process started (`SIG_IGN`, as a parent may choose) stays
  ignored, as Python does for SIGINT.
- `was_terminated()` tells the command layer that the failure it is reporting came after a
  SIGTERM (a DataLoader worker killed by the same signal may fail the loop first).
- `signals_deferred()` holds SIGINT and SIGTERM back for a few system calls (the renames that
  swap a checkpoint into place), so that an interrupt cannot land between them.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGTERM_EXIT = 128 + signal.SIGTERM  # 143: what a shell reports for a process ended by SIGTERM
_received: list[int] = []  # pids that took a SIGTERM (one entry: this process, not a forked child)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise KeyboardInterrupt."""


def was_terminated() -> bool:
    """Whether this process received SIGTERM while `sigterm_as_interrupt` was in force."""
    return os.getpid() in _received


def _handler(owner: int):
    def handle(signum, frame) -> None:
        if os.getpid() != owner:  # a forked child: die of the signal, as without the handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        first = not was_terminated()
        _received.append(owner)
        if first:  # a second SIGTERM while cleaning up must not cut the clean-up short
            raise Terminated()

    return handle


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield
        return
    _received.clear()
    signal.signal(signal.SIGTERM, _handler(os.getpid()))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends (for a few renames that belong together)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
