"""User-facing errors.

A `CxrError` is a mistake the user can fix (a missing column, an unknown class name, an empty
split). The command line prints it as one line naming the file, row or option, and exits with
status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib


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
