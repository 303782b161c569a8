"""User-facing errors.

A `CxrError` is a mistake the user can fix (a missing column, an unknown class name, an empty
split). The command line prints it as one line naming the file, row or option, and exits with
status 2, without a traceback. Anything else is a bug and keeps its traceback, except the
file-system errors a user's machine causes (a full disk, a read-only mount, no permission): `fs_error`
turns one into a CxrError naming the path, the reason and what to do.
"""

from __future__ import annotations

import difflib
import errno


class CxrError(Exception):
    """A user mistake: shown as a single line, exit status 2."""

    exit_code = 2


class InputsMissing(CxrError):
    """Some inputs named on the command line do not exist; the others were processed: exit status 1.

    Like `cat a b`, the work is done for what exists and the status tells a script that not
    everything it named was there.
    """

    exit_code = 1


def did_you_mean(name: str, choices: list[str]) -> str:
    """Return ' Did you mean X?' for the closest of `choices`, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f" Did you mean {close[0]!r}?" if close else ""


# errno values that come from the user's file system rather than from a bug: each gets a reason
# and what to do, so that a full disk or a read-only mount is one line instead of a traceback.
_FS_REASONS = {
    "ENOSPC": "the disk is full (no space left on device): free space or choose a folder on another disk",
    "EDQUOT": "the disk quota is used up: free space or choose a folder on another disk",
    "EROFS": "the file system is read-only: choose a writable folder",
    "EACCES": "permission denied: change its permissions or choose another path",
    "EPERM": "operation not permitted: change its permissions or choose another path",
    "ENOTDIR": "a part of this path is a file, not a folder: choose another path",
    "EISDIR": "this is a folder where a file was expected: choose another path",
    "EEXIST": "a file of this name is in the way: choose another path",
}
FS_ERRNOS = frozenset(getattr(errno, name) for name in _FS_REASONS if hasattr(errno, name))


def fs_reason(exc: OSError) -> str:
    """What a file-system error means for the user and what to do ('the disk is full ...: free space ...')."""
    name = errno.errorcode.get(exc.errno or 0, "")
    return _FS_REASONS.get(name) or (exc.strerror or str(exc))


def fs_error(path: object, exc: OSError, doing: str = "") -> CxrError:
    """A one-line CxrError for an OSError at `path`: 'PATH: [DOING: ]REASON: WHAT TO DO'."""
    return CxrError(f"{path}: {doing + ': ' if doing else ''}{fs_reason(exc)}")
