"""Lineage: the images a run and its ancestors trained and validated on, and the check against them.

Every training run (pretrain, finetune, each fold of `finetune --folds K`) writes
`seen_images.csv` (columns `key`, `role` = train/val, `run` = a position in the manifest's
`lineage.runs`, 0 being the run itself) sorted by key, and names it in its manifest's `lineage`.
A finetune copies its parent's rows in (their `run` shifted by one), so a run stays checkable when
its parent is moved or deleted; an ancestor whose images are not known (a run made before this
record existed, a loose weights file, an imported network) is listed in `lineage.unknown`.

The key of an image is the start of its cache row's `file_hash` (SHA-1 of the file's bytes, from
`prepare`), not a hash of the cached pixels: the cached pixels depend on the cache's `--size`
and crop, so one film prepared at 128 and at 256 px would get two keys, while its bytes name it
in any cache, folder or size (and a loose file given to `predict` can be hashed without decoding).
A re-encoded copy has other bytes; near-duplicates are the job of `prepare dedupe`. Rows without a
`file_hash` (caches written from arrays: tests, old caches) fall back to `px-` + SHA-1 of the
cached pixels, which recognises a copy in a cache of the same size.

`read_lineage` opens a run's record, `scored_rows` gives the rows a command scores (a fold's run
scores its own held-out fold, not the cache's test split, which the folds cover), `check_seen`
refuses (or, with `--allow-seen`, labels in-sample) images the lineage has seen, and
`check_data_hash` compares the cache with the one the run was trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_write_text
from ..errors import CxrError
from ..progress import info, warn
from ..runs import read_manifest, run_of
from .cache import PreparedData

SEEN = "seen_images.csv"
KEY_CHARS = 20  # 80 bits: no collision among millions of images, a third of the file of full SHA-1s
ALLOW_SEEN = "--allow-seen"
KEY_NOTE = "file_hash[:20] (SHA-1 of the image file's bytes); px- + SHA-1 of the cached pixels where a cache has none"


def content_keys(data: PreparedData, rows: np.ndarray | None = None) -> np.ndarray:
    """The lineage key of each row (every row when `rows` is None): see the module docstring."""
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=int)
    if "file_hash" in data.index.columns:
        hashes = data.index["file_hash"].fillna("").astype(str).to_numpy()[rows]
    else:
        hashes = np.full(len(rows), "", dtype=object)
    keys = np.array([h[:KEY_CHARS] for h in hashes], dtype=object)
    for k in np.flatnonzero(keys == ""):
        pixels = np.ascontiguousarray(data.images[rows[k]]).tobytes()
        keys[k] = "px-" + hashlib.sha1(pixels).hexdigest()[:KEY_CHARS]
    return keys


def file_keys(paths: list[Path]) -> np.ndarray:
    """The lineage key of loose image files (predict): their bytes' SHA-1, as prepare hashes them."""
    keys = []
    for path in paths:
        digest = hashlib.sha1()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            keys.append("")
            continue
        keys.append(digest.hexdigest()[:KEY_CHARS])
    return np.array(keys, dtype=object)


# ---------------------------------------------------------------- writing a run's record


def record_training(
    run_dir: Path, data: PreparedData, train_rows: np.ndarray, val_rows: np.ndarray, parent: str | None, weights: str
) -> dict[str, Any]:
    """Write RUN/seen_images.csv (this run's images, then its ancestors'); returns the manifest's `lineage`."""
    own = pd.DataFrame(
        {
            "key": np.concatenate([content_keys(data, train_rows), content_keys(data, val_rows)]),
            "role": ["train"] * len(train_rows) + ["val"] * len(val_rows),
            "run": 0,
        }
    ).drop_duplicates(["key", "role"])
    runs = [{"run": str(Path(run_dir).resolve()), "data": str(data.root.resolve()), "data_hash": data.data_hash}]
    unknown: list[dict[str, str]] = []
    parts = [own]
    if parent:
        parent_run = run_of(parent)
        inherited = read_lineage(parent_run) if parent_run is not None else None
        if inherited is None or not inherited.recorded:
            why = inherited.why_unrecorded if inherited is not None else "a checkpoint folder outside a run"
            unknown.append({"run": str(parent), "reason": f"the parent records no images it trained on ({why})"})
        else:
            parts.append(inherited.table.assign(run=inherited.table["run"] + 1))
            runs += inherited.runs
            unknown += inherited.unknown
    elif weights not in ("imagenet", "none", "", None):
        unknown.append({"run": str(weights), "reason": "a weights file: the images it was trained on are not known"})
    table = pd.concat(parts, ignore_index=True).sort_values(["key", "run", "role"], kind="stable")
    atomic_write_text(Path(run_dir) / SEEN, table.to_csv(index=False))
    return {
        "file": SEEN,
        "key": KEY_NOTE,
        "images": int(own["key"].nunique()),
        "runs": runs,
        "unknown": unknown,
    }


def unknown_lineage(reason: str) -> dict[str, Any]:
    """The manifest's `lineage` of a run whose training images are not known (an imported network)."""
    return {"file": None, "key": KEY_NOTE, "images": 0, "runs": [], "unknown": [{"run": "", "reason": reason}]}


# ---------------------------------------------------------------- reading and checking


@dataclass
class Lineage:
    """A run's record: its rows (key, role, run), the runs they name, and what is not known."""

    run: Path | None
    recorded: bool
    table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["key", "role", "run"]))
    runs: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, str]] = field(default_factory=list)
    fold: int | None = None
    cv_run: str | None = None
    data_hash: str | None = None
    why_unrecorded: str = ""

    def own(self, role: str | None = None) -> set[str]:
        """This run's own keys (not its ancestors'), of one role or both."""
        part = self.table[self.table["run"] == 0]
        if role is not None:
            part = part[part["role"] == role]
        return set(part["key"])


def read_lineage(run: Path | None) -> Lineage:
    """The record of `run` (None: a loose checkpoint folder, which has none)."""
    if run is None:
        return Lineage(None, False, why_unrecorded="a checkpoint folder outside a run records no training images")
    run = Path(run)
    try:
        manifest = read_manifest(run)
    except CxrError:
        return Lineage(run, False, why_unrecorded=f"{run} has no readable manifest.json")
    record = manifest.get("lineage") or {}
    fold = manifest.get("fold")
    common = dict(
        fold=int(fold) if fold is not None else None, cv_run=manifest.get("cv_run"), data_hash=manifest.get("data_hash")
    )
    file = record.get("file")
    if not file:
        unknown = list(record.get("unknown") or [])
        why = "made before runs recorded their images" if not record else (unknown or [{}])[0].get("reason", "")
        return Lineage(run, False, unknown=unknown, why_unrecorded=why or "its training images are not known", **common)
    path = run / file
    try:
        table = pd.read_csv(path, dtype={"key": str, "role": str}, keep_default_na=False)
        table["run"] = table["run"].astype(int)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise CxrError(
            f"{path}: the run's record of its training images is unreadable ({exc}); train the run again"
        ) from None
    return Lineage(run, True, table, list(record.get("runs") or []), list(record.get("unknown") or []), **common)


def scored_rows(lineage: Lineage, data: PreparedData, split: str, announce: bool = True) -> tuple[np.ndarray, str]:
    """The rows of `data` a command scores for `split`, and their name.

    A fold's run (RUN/fold-k of `finetune --folds K`) on the cache it was cut from: `test` is its
    held-out fold, `val` and `train` its own validation and training parts (the cache's own splits
    mean nothing to it: the folds cover every image). Anything else: the cache's split.
    """
    if lineage.fold is None or data.data_hash != lineage.data_hash or split == "all":
        return data.require_rows(split), f"{split} split"
    k = lineage.fold
    if lineage.recorded:
        keys = content_keys(data)
        if split == "test":
            rows = np.flatnonzero(~pd.Series(keys).isin(lineage.own()).to_numpy())
            name = f"held-out fold {k}"
        else:
            rows = np.flatnonzero(pd.Series(keys).isin(lineage.own(split)).to_numpy())
            name = f"fold {k}'s {split} part"
    elif split == "test" and lineage.cv_run and (Path(lineage.cv_run) / "oof_predictions.csv").is_file():
        # A fold run made before runs recorded their images: its held-out ids are in the OOF table.
        oof = pd.read_csv(Path(lineage.cv_run) / "oof_predictions.csv", dtype={"id": str})
        held = set(oof.loc[oof["fold"] == k, "id"])
        rows = np.flatnonzero(data.index["id"].astype(str).isin(held).to_numpy())
        name = f"held-out fold {k}"
    else:
        raise CxrError(
            f"{lineage.run}: a fold's run that records no training images cannot tell its {split} part; "
            "score its held-out fold (--split test) or train the cross-validation again"
        )
    if len(rows) == 0:
        raise CxrError(f"{lineage.run}: its {name} holds no image of {data.root}")
    if announce:
        info(f"{lineage.run}: scoring its {name} ({len(rows)} images of {data.root}), not the cache's {split} split")
    return rows, name


def _nearest_run(lineage: Lineage, keys: np.ndarray) -> pd.Series:
    """Per key, the nearest run of the lineage that saw it (0: the run itself), NaN when none did."""
    first = lineage.table.sort_values("run", kind="stable").drop_duplicates("key").set_index("key")["run"]
    return pd.Series(keys, dtype=object).map(first)


def seen_mask(lineage: Lineage, keys: np.ndarray) -> np.ndarray | None:
    """Which of `keys` the lineage trained or validated on; None when the run records no images."""
    return _nearest_run(lineage, keys).notna().to_numpy() if lineage.recorded else None


def fold_split_names(lineage: Lineage, data: PreparedData) -> np.ndarray:
    """Per cache row, its split as the run sees it: a fold's run on its own cache names its held-out
    fold `test` and its own parts `val` and `train`; any other run, the cache's split column."""
    names = data.index["split"].astype(str).to_numpy().copy()
    if lineage.fold is None or not lineage.recorded or data.data_hash != lineage.data_hash:
        return names
    keys = pd.Series(content_keys(data))
    names[:] = "test"
    names[keys.isin(lineage.own("val")).to_numpy()] = "val"
    names[keys.isin(lineage.own("train")).to_numpy()] = "train"
    return names


_warned: set[str] = set()  # one warning per run and process, however many commands ask


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warn(message)


def check_seen(lineage: Lineage, keys: np.ndarray, allow_seen: bool, what: str) -> tuple[dict[str, Any], np.ndarray]:
    """Refuse scoring images the run or an ancestor trained or validated on, unless `allow_seen`.

    `keys` are the scored images' keys (`content_keys`, `file_keys`); `what` names them in the
    message. Returns (the `lineage` entry an output records: checked, images, seen, in_sample,
    seen_by, unknown) and a boolean mask of the seen images. With `allow_seen`, seen images are
    scored and the entry says in_sample: true; a run without a record is warned about once.
    """
    entry: dict[str, Any] = {
        "checked": lineage.recorded,
        "images": len(keys),
        "seen": 0,
        "in_sample": False,
        "seen_by": {},
        "unknown": lineage.unknown,
    }
    mask = np.zeros(len(keys), dtype=bool)
    if not lineage.recorded:
        entry["note"] = f"not checked: {lineage.why_unrecorded}"
        _warn_once(
            f"unrecorded:{lineage.run}",
            f"{lineage.run or 'this checkpoint'}: lineage unknown ({lineage.why_unrecorded}); "
            "cannot check that the scored images are unseen",
        )
        return entry, mask
    hits = _nearest_run(lineage, keys)
    mask = hits.notna().to_numpy()
    counts = hits.dropna().astype(int).value_counts().sort_index()
    names = {i: (lineage.runs[i]["run"] if i < len(lineage.runs) else f"ancestor {i}") for i in counts.index}
    entry.update(
        seen=int(mask.sum()), in_sample=bool(mask.any()), seen_by={names[i]: int(n) for i, n in counts.items()}
    )
    for item in lineage.unknown:
        _warn_once(
            f"unknown:{lineage.run}:{item.get('run')}",
            f"{lineage.run}: the lineage check cannot cover {item.get('run') or 'an ancestor'} ({item.get('reason')})",
        )
    if mask.any():
        by = ", ".join(f"{n} by {names[i]}" for i, n in counts.items())
        line = f"{what}: {int(mask.sum())} of {len(keys)} images were trained or validated on ({by})"
        if not allow_seen:
            raise CxrError(f"{line}; score unseen images, or pass {ALLOW_SEEN} to score them labelled in-sample")
        warn(f"{line}; scored anyway ({ALLOW_SEEN}) and labelled in-sample")
    return entry, mask


def check_data_hash(run: Path, data: PreparedData, lineage: Lineage) -> bool:
    """Whether the run's recorded cache changed since it was trained (True: changed, warned).

    As `--resume` does, the cache's data hash is compared with the manifest's. A run that records
    its images is checked image by image anyway (`check_seen`), so a change is only warned about
    and labelled; a run without that record cannot be checked, so a change is refused.
    """
    recorded = lineage.data_hash
    if not recorded or data.data_hash == recorded:
        return False
    line = f"{run}: its data {data.root} changed since the run was trained (data hash {data.data_hash} != {recorded})"
    if not lineage.recorded:
        raise CxrError(
            f"{line} and the run records no image list to check against; pass --data with the cache it was trained on"
        )
    warn(f"{line}; its splits may have moved: the scored images are checked one by one against the run's")
    return True
