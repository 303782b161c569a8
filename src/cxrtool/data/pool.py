"""Worker process pools for decoding images: quiet on Ctrl-C, gone with their parent.

Ctrl-C in a terminal sends SIGINT to every process of the foreground group, workers included; a
worker that took it would print its own KeyboardInterrupt traceback while the main process is
already reporting the interrupt. So workers ignore SIGINT (the main process stops them). A main
process killed outright (SIGKILL, an out-of-memory kill) leaves its workers orphaned: they notice
within half a second and exit silently, rather than finish their tasks and print BrokenPipeError
when writing results to a parent that is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)  # orphaned: nothing to report to, and nothing to clean (the parent owns the files)


def worker_init(parent: int) -> None:
    """Pool initializer: ignore SIGINT, die quietly on a broken pipe, exit when orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def start_pool(workers: int):
    """A multiprocessing pool of `workers` processes set up by `worker_init` (fork where available)."""
    # fork is cheap and needs nothing re-imported; the pool starts before any progress thread.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    # SIGINT is ignored while the workers start, so none can take one before its initializer runs.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
    try:
        return multiprocessing.get_context(method).Pool(workers, initializer=worker_init, initargs=(os.getpid(),))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
