"""The cache folder while `prepare` (or `combine`, `dedupe --drop-from`) writes it.

Three promises, kept here for every writer of a cache:
- One writer at a time: `writing_cache(out)` holds the folder's lock (cxrtool.locks) from the check
  of what is there until the manifest is written, so a second `prepare` into the same `--out` stops
  at once naming the first, instead of sharing its temporary folder.
- Nothing of the user's is overwritten without --overwrite: `check_output` refuses a folder that
  holds files and is not a cxrtool cache, even when they are called index.csv or labels.json. A
  folder is a cache when it has a manifest, or when it holds the temporary folder of an
  interrupted prepare (then its cache files are this tool's own, left unfinished).
- Complete or absent: whatever stops a writer (an error, a full disk, Ctrl-C, SIGTERM) removes its
  temporary folder, and if it had begun to replace the cache files (the manifest is then gone)
  removes those too. Ctrl-C becomes one line saying so (`PrepareInterrupted`, exit status 130;
  143 after SIGTERM).
- A cache on a read-only file system (or in a folder this user cannot write) that was prepared
  with the same settings is used as it is (`ready_unwritable`): no lock is needed where nobody
  can write; anything else there is refused with one line.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..atomic import read_json
from ..errors import CxrError
from ..locks import FolderNotWritable, hold_lock
from ..progress import result, warn
from ..signals import SIGTERM_EXIT, Terminated
from .cache import BOXES, DUPLICATES, IMAGES, INDEX, LABELS, MANIFEST, SKIPPED, PreparedData

TMP_DIR = ".prepare-tmp"
FINISHING = "finishing"  # in TMP_DIR while the cache files are being replaced (manifest removed)
CACHE_FILES = (IMAGES, INDEX, LABELS, MANIFEST, SKIPPED, DUPLICATES, BOXES, "counts.csv")  # counts: combine's


class PrepareInterrupted(CxrError):
    """Ctrl-C during a cache write: one line, the conventional exit status of SIGINT."""

    exit_code = 130


def discard_unfinished(out: Path) -> None:
    """Remove what an unfinished write left: the temporary folder, and half-replaced cache files."""
    tmp = out / TMP_DIR
    if (tmp / FINISHING).exists() and not (out / MANIFEST).exists():
        for name in CACHE_FILES:
            (out / name).unlink(missing_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def writing_cache(out: Path, what: str = "prepare") -> Iterator[None]:
    """Lock `out` for one writer; on failure leave it complete or absent (see the module docstring)."""
    out = Path(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CxrError(f"{out}: cannot write the cache here ({exc.strerror or exc}); choose another --out") from None
    try:
        with hold_lock(out, what="cache"):
            try:
                yield
            except KeyboardInterrupt as exc:
                discard_unfinished(out)
                stop = PrepareInterrupted(
                    f"{what} was {'stopped by SIGTERM' if isinstance(exc, Terminated) else 'interrupted'}; "
                    f"nothing was kept in {out} (its temporary folder is removed): run the same command again"
                )
                if isinstance(exc, Terminated):
                    stop.exit_code = SIGTERM_EXIT
                raise stop from None
            except BaseException:
                discard_unfinished(out)
                raise
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a folder this command made and left empty
        raise


def ready_unwritable(out: Path, settings: dict[str, Any], source: str, problem: FolderNotWritable) -> PreparedData:
    """A cache in a folder that cannot be locked (read-only, no permission, full): used as it is when
    it was prepared with these settings, else `problem` (or check_output's own line) is raised.

    No lock is needed to read where this process cannot write; check_output tells "ready" from
    "other settings" from "not a cache" exactly as it does with the lock held.
    """
    if not (out / MANIFEST).is_file():
        raise problem
    ready = check_output(out, settings, source, overwrite=False)
    if ready is None:
        raise problem
    return ready


def _is_ours(out: Path) -> bool:
    return (out / TMP_DIR).is_dir()


def check_output(out: Path, settings: dict[str, Any], source: str, overwrite: bool) -> PreparedData | None:
    """The existing cache if it was made with these settings; refuse a different one unless overwrite."""
    manifest = out / MANIFEST
    if manifest.is_file():
        previous = read_json(manifest)
        if not isinstance(previous, dict) or ("settings" not in previous and "source" not in previous):
            if not overwrite:
                raise CxrError(
                    f"{out}: holds a {MANIFEST} that is not a cxrtool cache's; pass --overwrite to replace it or choose another --out"
                )
        elif previous.get("settings") == settings and previous.get("source") == source and not overwrite:
            try:
                data = PreparedData(out)
                _ = data.images.shape  # a manifest over missing images is not "ready"
                result(f"{out}: the cache is ready (same settings); nothing to do")
                return data
            except CxrError as exc:
                warn(f"{exc}; preparing it again")
        elif not overwrite:
            before = previous.get("settings") or {}
            changed = sorted(k for k in set(settings) | set(before) if settings.get(k) != before.get(k))
            what = ", ".join(changed[:4]) or "source"
            raise CxrError(
                f"{out}: holds a cache prepared with other settings ({what}); pass --overwrite to replace it or choose another --out"
            )
    elif out.is_dir() and not overwrite:
        allowed = CACHE_FILES if _is_ours(out) else ()
        foreign = sorted(p.name for p in out.iterdir() if p.name not in allowed and not p.name.startswith("."))
        if foreign:
            raise CxrError(
                f"{out}: folder exists and holds files that are not a cxrtool cache (e.g. {foreign[0]}); "
                "pass --overwrite to replace them or choose another --out"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CxrError(f"{out}: cannot write the cache here ({exc.strerror or exc}); choose another --out") from None
    return None
