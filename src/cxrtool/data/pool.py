"""Worker processes: how many to start by default, and pools for decoding images that are quiet on
Ctrl-C and gone with their parent.

`default_workers` is the one rule for every `--workers` default (prepare, training, inference);
`cap_workers` is the one limit on a `--workers` given: at most the usable cores (more processes
only take turns on them, each with its own memory), with a one-line note when it lowers it.

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

from ..progress import notice

# Jobs that `default_workers` knows, with the rule for each (its docstring says why).
WORKER_JOBS = ("prepare", "decode", "train", "read")


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one, else the count.

    A container or `taskset` may allow fewer cores than the machine has; workers beyond those
    only take turns.
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_workers(job: str, device_type: str = "cpu") -> int:
    """Worker processes when `--workers` is not given, by job (the docs quote these rules):

    - "prepare" (decode raw files into the cache): every usable core, at most 8, at least 1;
    - "decode" (inference over image files: predict, evaluate/cam on files): every usable core,
      at most 16; decoding a PNG or DICOM costs more than the network's forward pass;
    - "train" (the training loader over the cache): half the usable cores, at most 4; reading a
      memmap is cheap and the training step is the bottleneck;
    - "read" (inference over cache rows): on CUDA every usable core, at most 8, because a GPU
      outruns a single reading thread; elsewhere 0 (read in the main process), because reading
      rows costs little next to a CPU forward pass and starting workers would cost more.
    """
    cores = usable_cores()
    if job == "prepare":
        return min(cores, 8)
    if job == "decode":
        return min(cores, 16)
    if job == "train":
        return min(cores // 2, 4)
    if job == "read":
        return min(cores, 8) if device_type == "cuda" else 0
    raise ValueError(f"default_workers: unknown job {job!r}; one of {', '.join(WORKER_JOBS)}")


def cap_workers(workers: int, option: str = "--workers") -> int:
    """`workers` lowered to the usable cores, with a one-line note when that lowers it."""
    cores = usable_cores()
    if workers > cores:
        notice(f"{option} {workers}: this process may use {cores} CPU core(s); starting {cores} worker(s)")
        return cores
    return workers


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)  # orphaned: nothing to report to, and nothing to clean (the parent owns the files)


def worker_init(parent: int) -> None:
    """Pool initializer: ignore SIGINT, die of SIGTERM, die quietly on a broken pipe, exit when orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent's SIGTERM handler (signals.py) is inherited through fork. A worker must die of the
    # signal Pool.terminate sends it; with a Python handler, a SIGTERM delivered to the watcher
    # thread below never interrupts the main thread waiting for a task, and terminate hangs.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def start_pool(workers: int):
    """A multiprocessing pool of `workers` processes set up by `worker_init` (fork where available)."""
    # fork is cheap and needs nothing re-imported; the pool starts before any progress thread.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    # SIGINT is ignored while the workers start, so none can take one before its initializer runs.
    previous = (
        signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        return multiprocessing.get_context(method).Pool(workers, initializer=worker_init, initargs=(os.getpid(),))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
