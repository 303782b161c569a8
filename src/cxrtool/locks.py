"""Directory locks: one writer at a time for a cache or a run directory.

`hold_lock(directory, what="cache")` takes an OS file lock (`fcntl.flock`) on `directory/.cxrtool.lock`
for the duration of a `with` block. The lock dies with the process, so a writer killed with SIGKILL
never blocks the next one: its lock file stays behind with the old holder written in it, and the next
writer takes it over and says so. A second writer while the first is alive gets a `CxrError` at once
naming the first (pid, command line, start time). The lock file is removed on a clean exit.

Details that matter:
- Forked children (decode pools, DataLoader workers) inherit the open lock file; an at-fork hook closes
  it in every child so that orphaned workers of a killed writer do not keep the lock.
- Removing the lock file on release races with a writer that opened it just before: after locking, a
  writer checks that the file it locked is still the one at the path, and tries again if not.
- Taking the same directory's lock again inside the same process is a no-op (nested writers such as a
  command that calls a library function which locks too).
- Where `fcntl` does not exist (Windows) the lock is not taken.
- A folder where the lock file cannot be made (a read-only file system, no permission, a full
  disk) is one line saying why and what to do (`FolderNotWritable`), never a traceback; a reader
  that needs no lock there (a cache prepared with the same settings) catches it and goes on.
`require_writable(folder, option)` is the check a command makes of an output folder before its
work starts: a file where a folder is expected, a read-only or unwritable folder, one line.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from .errors import CxrError, fs_error
from .progress import warn

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".cxrtool.lock"

_held: dict[str, list[int]] = {}  # real path of the directory -> [fd, depth]

# The errors that mean "nobody (or not this user) can write here now", as opposed to a bug.
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class FolderNotWritable(CxrError):
    """The lock file (or a probe file) cannot be written in a folder: read-only, no permission, full."""


def _close_in_child() -> None:
    # A forked child must not hold its parent's locks (see the module docstring).
    for fd, _ in list(_held.values()):
        with suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def describe(holder: dict[str, Any]) -> str:
    """'pid 123, `cxrtool prepare ...`, started 2026-01-01 10:00:00 UTC' (what is known of it)."""
    parts = []
    if holder.get("pid"):
        parts.append(
            f"pid {holder['pid']}"
            + (f" on {holder['host']}" if holder.get("host") and holder["host"] != os.uname().nodename else "")
        )
    if holder.get("command"):
        parts.append(f"`{holder['command']}`")
    if holder.get("started"):
        parts.append(f"started {holder['started']}")
    return ", ".join(parts) or "unknown process"


def read_holder(directory: str | Path) -> dict[str, Any] | None:
    """What the lock file of `directory` says about its (last) holder, or None when there is none."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) and holder else None


def _command_line() -> str:
    argv = list(sys.argv)
    if argv:
        argv[0] = os.path.basename(argv[0])
    return " ".join(argv)[:300]


def _open_locked(path: Path, directory: Path, what: str) -> int:
    """Open and lock `path`, retrying when the file was replaced while we waited (see docstring)."""
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(directory) or {}
            raise CxrError(
                f"{directory}: another cxrtool is writing this {what} ({describe(holder)}); "
                f"wait for it to finish or use another folder"
            ) from None
        except OSError as exc:  # e.g. a file system without flock support
            os.close(fd)
            raise fs_error(directory, exc, f"cannot lock this {what}") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file after we opened it; lock the new one
    raise CxrError(f"{directory}: cannot lock this {what} (its lock file keeps changing)")


@contextmanager
def hold_lock(directory: str | Path, what: str = "cache") -> Iterator[dict[str, Any] | None]:
    """Hold the write lock of `directory` (created if absent) for the `with` block.

    Yields what was known of a previous holder that was killed (a stale lock taken over), else None.
    Raises CxrError naming the holder when a live process holds the lock.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(directory, exc, "cannot create this folder") from None
    key = os.path.realpath(directory)
    if fcntl is None:
        yield None
        return
    if key in _held:
        _held[key][1] += 1
        try:
            yield None
        finally:
            _held[key][1] -= 1
        return
    path = directory / LOCK_NAME
    try:
        fd = _open_locked(path, directory, what)
    except OSError as exc:  # the lock file cannot be created: read-only, no permission, full
        raise _unwritable(directory, exc, f"cannot lock this {what}") from None
    stale = read_holder(directory)
    if stale is not None:
        warn(f"{directory}: taking over the lock of an earlier writer that is no longer running ({describe(stale)})")
    me = {
        "pid": os.getpid(),
        "host": os.uname().nodename,
        "command": _command_line(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    except OSError as exc:  # a full disk: the lock file exists but its holder cannot be written
        with suppress(OSError):
            os.unlink(path)
        os.close(fd)
        raise _unwritable(directory, exc, f"cannot lock this {what}") from None
    _held[key] = [fd, 1]
    try:
        yield stale
    finally:
        _held.pop(key, None)
        with suppress(OSError):
            os.unlink(path)  # while still locked: a waiting writer re-checks the inode (see above)
        os.close(fd)


def _unwritable(directory: Path, exc: OSError, doing: str) -> CxrError:
    error = fs_error(directory, exc, doing)
    return FolderNotWritable(str(error)) if exc.errno in _UNWRITABLE else error


def require_writable(folder: str | Path, option: str = "--out") -> Path:
    """Check that files can be written in `folder` (or, while it does not exist, in the folder that
    would hold it) before a command's work starts; else one line naming it and `option`.

    A probe file is made and removed (permission bits alone do not tell: root ignores them, and a
    read-only mount or a full disk shows only when writing). Nothing is created for good: a command
    that then fails for another reason leaves no empty folder behind.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CxrError(f"{folder}: is a file, not a folder ({option}); give a folder (new or empty)")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise CxrError(f"{folder}: {existing} is a file, not a folder ({option}); give another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        try:
            os.write(fd, b"\n")  # a full disk may still create an empty file
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise _unwritable(folder, exc, f"cannot write here ({option})") from None
    return folder
