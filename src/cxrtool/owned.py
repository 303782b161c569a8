"""Output folders own only what they wrote: a record of each file, so `--overwrite` removes only those.

A command that writes into a folder claims it (`claim_folder`, under the folder's lock). From then
on every file written through the atomic-write helpers (`runs.atomic_write` calls `note_written`
before it renames a file into place) is added to the folder's record, `.cxrtool-files.jsonl`, as
its path relative to the folder and the command that wrote it. The record is appended one line
per file as files are written, so the files of a command that was killed halfway are still known
as its own; a line cut short by a crash is ignored (the rename it preceded never happened).

What the record decides:
- a folder holding a file that no record lists (and that is not a temporary of a listed file or
  the lock) is refused with one line naming the file, with or without --overwrite;
- `--overwrite` removes only the listed files (of one command, or all of them when a run is
  replaced whole), then the folders they emptied;
- a single-file `--out` (`claim_file`) never replaces a file of a folder that is a cache's or a
  run's (a record or a manifest.json beside it) unless the record says the same command wrote it,
  and replaces any other existing file only with --overwrite.
A folder entry (a path ending in `/`) owns everything under it: it is used for folders a command
created and filled whole by other means (checkpoint folders, TensorBoard logs, the demo's data).
Folders made before records existed have none: a caller may pass `legacy`, which lists the exact
names the old version wrote there once the folder's own files prove it is cxrtool's (runs.py's
legacy_run_files, evaluate); anything else in such a folder is the user's. docs/run-directory.md has the format.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CxrError
from .locks import LOCK_NAME

RECORD = ".cxrtool-files.jsonl"
FORMAT = "cxrtool-files/1"
MANIFEST_NAME = "manifest.json"  # a cache's and a run's description (runs.MANIFEST, data.cache.MANIFEST)

Legacy = Callable[[Path], dict[str, str]]  # folder -> {relative path (folder: trailing "/"): command}


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (no race with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_record(folder: Path) -> dict[str, str] | None:
    """{relative path: command} of a folder's record, or None when the folder has none."""
    path = Path(folder) / RECORD
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CxrError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    entries: dict[str, str] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a command killed while appending it: its file was never renamed in
        if isinstance(row, dict) and isinstance(row.get("path"), str):
            entries[row["path"]] = str(row.get("by") or "")
    return entries


def _line(row: dict) -> bytes:
    # ensure_ascii: a file name that is not UTF-8 (a surrogate escape) round-trips as \udcXX.
    return (json.dumps(row, ensure_ascii=True) + "\n").encode("ascii")


def _write_record(folder: Path, entries: dict[str, str]) -> None:
    """Replace the record as a whole (temporary file, then rename)."""
    folder = Path(folder)
    lines = [_line({"format": FORMAT})] + [_line({"path": p, "by": b}) for p, b in entries.items()]
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{RECORD}.", suffix=".tmp", dir=folder)
        os.fchmod(fd, 0o666 & ~current_umask())  # the mode open() gives: like every file cxrtool writes
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(lines))
        os.replace(tmp, folder / RECORD)
    except OSError as exc:
        raise CxrError(f"{folder / RECORD}: could not be written ({exc.strerror or exc})") from None


def _append(folder: Path, rel: str, by: str) -> None:
    record = Path(folder) / RECORD
    try:
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, _line({"path": rel, "by": by}))  # one write() of a short line: whole or cut, never mixed
        finally:
            os.close(fd)
    except OSError as exc:
        raise CxrError(f"{record}: could not be written ({exc.strerror or exc})") from None


def _covered(rel: str, entries: dict[str, str]) -> str | None:
    """The command that owns `rel` (a file) by the record, directly or through a folder entry."""
    if rel in entries:
        return entries[rel]
    parts = rel.split("/")
    for i in range(1, len(parts)):
        owner = entries.get("/".join(parts[:i]) + "/")
        if owner is not None:
            return owner
    return None


def _is_temporary(name: str, sub: str, entries: dict[str, str]) -> bool:
    """A temporary of a listed file or folder (`.NAME.XXXX.tmp`, `.NAME.tmp-PID`, `.NAME.old-PID`)."""
    if not (name.startswith(".") and (".tmp" in name or ".old-" in name)):
        return False
    if name.startswith(RECORD + "."):
        return True
    here = {p[len(sub) :].split("/")[0] for p in entries if p.startswith(sub)}
    return any(name[1:].startswith(f"{n}.") for n in here if n)


@dataclass
class _Tree:
    """What a walk of an owned folder found: files nobody listed, temporaries, nested owned folders."""

    foreign: list[str] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)
    nested: list[str] = field(default_factory=list)


def _walk(root: Path, entries: dict[str, str], sub: str = "", tree: _Tree | None = None) -> _Tree:
    tree = tree if tree is not None else _Tree()
    try:
        listing = sorted(os.scandir(root / sub) if sub else os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return tree
    except OSError as exc:
        raise CxrError(f"{root / sub}: cannot be read ({exc.strerror or exc})") from None
    for entry in listing:
        rel = f"{sub}{entry.name}"
        if entry.name == LOCK_NAME or (not sub and entry.name == RECORD):
            continue
        if entry.is_dir(follow_symlinks=False):
            if _covered(rel + "/x", entries) is not None:
                continue  # a folder entry: all of it is ours
            if (Path(entry.path) / RECORD).is_file():
                tree.nested.append(rel)  # its own record decides (see `_unowned`)
                continue
            if _is_temporary(entry.name, sub, entries):
                tree.temporaries.append(rel)
                continue
            _walk(root, entries, rel + "/", tree)
        elif _covered(rel, entries) is None:
            (tree.temporaries if _is_temporary(entry.name, sub, entries) else tree.foreign).append(rel)
    return tree


def _unowned(root: Path, entries: dict[str, str]) -> Iterator[str]:
    """Files under `root` that no record lists (nested owned folders judged by their own record)."""
    tree = _walk(root, entries)
    yield from tree.foreign
    for sub in tree.nested:
        for rel in _unowned(root / sub, read_record(root / sub) or {}):
            yield f"{sub}/{rel}"


def is_cxrtool_folder(folder: Path) -> bool:
    """A folder some cxrtool command described: it has a record or a manifest (a cache or a run)."""
    return (Path(folder) / RECORD).is_file() or (Path(folder) / MANIFEST_NAME).is_file()


# ---------------------------------------------------------------- claims held by this process


@dataclass
class _Claim:
    root: str  # absolute path of the owned folder
    by: str
    entries: dict[str, str] | None  # None: the folder keeps no record (a file --out in a user's folder)
    only: str | None = None  # a file claim: just this path


_claims: list[_Claim] = []


def claims_mark() -> int:
    return len(_claims)


def release_claims(mark: int = 0) -> None:
    """Stop recording into the folders claimed since `mark` (runs.holds_locks calls this with the locks)."""
    del _claims[mark:]


def note_written(path: Path, folder: bool = False) -> None:
    """Add `path` (about to be renamed into place; `folder`: a folder filled whole) to its folder's record.

    The deepest folder this process claimed that holds `path` records it; a path outside every
    claimed folder is not recorded.
    """
    if not _claims:
        return
    target = os.path.abspath(path)
    for claim in sorted(_claims, key=lambda c: len(c.root), reverse=True):
        if claim.only is not None and claim.only != target:
            continue
        if claim.only is None and not target.startswith(claim.root + os.sep):
            continue
        if claim.entries is None:
            return
        rel = Path(os.path.relpath(target, claim.root)).as_posix() + ("/" if folder else "")
        if _covered(rel, claim.entries) != claim.by:
            claim.entries[rel] = claim.by
            _append(Path(claim.root), rel, claim.by)
        return
    # Outside every claimed folder but beside a record (a file the current command adds to a run it
    # reads, such as evaluate's next to RUN/eval): recorded there too, as the current command's.
    parent = os.path.dirname(target)
    entries = read_record(Path(parent))
    name = os.path.basename(target) + ("/" if folder else "")
    if entries is not None and entries.get(name) != _claims[-1].by:
        _append(Path(parent), name, _claims[-1].by)


@dataclass
class OwnedFolder:
    """A folder this command claimed: what its record lists, and removing those files alone."""

    root: Path
    by: str
    _claim: _Claim

    @property
    def entries(self) -> dict[str, str]:
        return self._claim.entries or {}

    def held(self, by: str | None = None) -> list[str]:
        """Listed paths that exist (those of command `by`, or of any command)."""
        return [p for p, b in self.entries.items() if (by is None or b == by) and (self.root / p.rstrip("/")).exists()]

    def check_replace(self, path: Path, overwrite: bool) -> Path:
        """`path` may be written: it is new, or it is this command's file and `overwrite` is given."""
        path = Path(path)
        if not (path.exists() or path.is_symlink()):
            return path
        rel = Path(os.path.relpath(os.path.abspath(path), self._claim.root)).as_posix()
        owner = _covered(rel, self.entries)
        if owner not in (None, self.by):
            raise CxrError(
                f"{path}: is a file `cxrtool {owner}` wrote; it is never replaced here: choose another --out"
            )
        if not overwrite:
            raise CxrError(f"{path}: exists; pass --overwrite to replace it or choose another --out")
        return path

    def remove_temporaries(self) -> None:
        """Delete temporaries of listed files left by a killed writer (the caller holds the folder's lock)."""
        for rel in _walk(self.root, self.entries).temporaries:
            _remove(self.root / rel)

    def clear(self, by: str | None = None) -> int:
        """Remove the listed files (of command `by`, or all, nested owned folders included); count them."""
        tree = _walk(self.root, self.entries)
        removed = 0
        for rel in [p for p, b in self.entries.items() if by is None or b == by]:
            removed += _remove(self.root / rel.rstrip("/"))
            self.entries.pop(rel)
            _prune(self.root, rel.rstrip("/"))
        for rel in tree.temporaries:
            _remove(self.root / rel)
        if by is None:
            for sub in tree.nested:
                removed += _clear_nested(self.root / sub)
                _prune(self.root, sub + "/x")
        _write_record(self.root, self.entries)
        return removed

    def abandon(self) -> None:
        """Undo this command: remove what it recorded, and the record when nothing else is left."""
        self.clear(self.by)
        if not any(p.name not in (RECORD, LOCK_NAME) for p in self.root.iterdir()):
            (self.root / RECORD).unlink(missing_ok=True)


def owned_folder(folder: Path) -> OwnedFolder | None:
    """The claim this process holds on `folder`, if any."""
    root = os.path.abspath(folder)
    for claim in reversed(_claims):
        if claim.root == root and claim.only is None:
            return OwnedFolder(Path(folder), claim.by, claim)
    return None


def _remove(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return 1
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise CxrError(f"{path}: cannot be removed ({exc.strerror or exc})") from None


def _prune(root: Path, rel: str) -> None:
    """Remove the folders between `root` and `rel` that are now empty (never `root` itself)."""
    parent = (root / rel).parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except FileNotFoundError:
            pass  # already gone (a nested owned folder removes itself)
        except OSError:
            return  # not empty: something else is there
        parent = parent.parent


def _clear_nested(folder: Path) -> int:
    entries = read_record(folder) or {}
    removed = OwnedFolder(folder, "", _Claim(os.path.abspath(folder), "", entries)).clear()
    (folder / RECORD).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # kept when something remains (the lock of a command writing there now)
        folder.rmdir()
    return removed


def refuse_foreign(folder: Path, rel: str) -> CxrError:
    return CxrError(
        f"{folder}: holds {rel}, which no cxrtool command wrote there; "
        "move it away or choose another --out (nothing was changed)"
    )


def claim_folder(folder: Path, by: str, check: bool = True, legacy: Legacy | None = None) -> OwnedFolder:
    """Claim `folder` (created if missing) for command `by` until the calling command returns.

    `check`: refuse a folder holding a file no record lists, naming it (a command that may
    remove or replace files there); without it (resuming a run) the record is only kept up to
    date. `legacy`: for a folder without a record, the files an older cxrtool wrote there.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CxrError(f"{folder}: is a file, not a folder; choose another --out") from None
    except OSError as exc:
        raise CxrError(f"{folder}: cannot create this folder ({exc.strerror or exc})") from None
    entries = read_record(folder)
    fresh = entries is None
    if entries is None:
        entries = legacy(folder) if legacy is not None else {}
    if check:
        for rel in _unowned(folder, entries):
            raise refuse_foreign(folder, rel)
    if fresh:
        _write_record(folder, entries)
    claim = _Claim(os.path.abspath(folder), by, entries)
    _claims.append(claim)
    return OwnedFolder(folder, by, claim)


def claim_file(path: Path, by: str, overwrite: bool, option: str = "--out") -> Path:
    """A single output file: refuse a cache's or a run's own file and (without --overwrite) any existing file."""
    path = Path(path)
    if path.is_dir():
        raise CxrError(f"{option} {path}: is a folder; give a file name")
    folder = path.parent
    entries = read_record(folder)
    if path.exists() or path.is_symlink():
        owner = _covered(path.name, entries) if entries is not None else None
        if owner != by and is_cxrtool_folder(folder):
            what = f"a file `cxrtool {owner}` wrote" if owner else f"a file of the cache or run in {folder}"
            raise CxrError(f"{option} {path}: is {what}; it is never replaced: choose another file name")
        if not overwrite:
            raise CxrError(f"{option} {path}: exists; pass --overwrite to replace it or choose another file name")
    if entries is not None:  # a folder with a record (a run's): the file is recorded there as this command's
        _claims.append(_Claim(os.path.abspath(folder), by, entries, only=os.path.abspath(path)))
    return path
