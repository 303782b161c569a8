"""The images `cam` maps: image files on disk or a prepared cache's rows, named for their output files.

`file_images` walks the inputs (decoded later, a batch at a time, by the inference engine's
workers); `cache_images` takes a split of a cache (a fold's run: its own held-out fold). Both give
a `CamImages`: ids, file stems that no two inputs share, the display size, the dataset the engine
reads, truths (cache rows only) and the lineage keys the seen-image check reads.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.cache import PreparedData
from ..data.dataset import CacheDataset
from ..data.imageio import IMAGE_SUFFIXES
from ..data.lineage import Lineage, content_keys, file_keys, scored_rows
from ..data.walk import collect_image_files
from ..errors import CxrError
from ..inference import FileDataset


@dataclass
class CamImages:
    """The images cam maps: decoded files or cache rows, with ids, output file stems, display size and truths.

    (embed's `SampledImages` is another job: a stratified sample of cache rows with their metadata.)
    """

    ids: list[str]
    stems: list[str]
    size: int
    dataset: Any  # a FileDataset or CacheDataset the inference engine reads, position by position
    truth: Any = None  # callable (position, class name) -> 1.0 / 0.0 / nan
    skipped: list[tuple[str, str]] = field(default_factory=list)
    keys: Any = None  # lineage keys (data.lineage), position by position
    what: str = ""  # the images, in words (for the lineage check's message)


def stem(name: str) -> str:
    stem = Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else Path(name).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"


def unique_stems(stems: list[str], keys: list[str]) -> list[str]:
    """Distinct file stems: a stem several inputs share gets a short hash of each input's path (or id).

    The hash, unlike a counter, names the same input the same way in every call, so a later call
    never takes an earlier call's map for its own; a name still taken is numbered.
    """
    counts = Counter(stems)
    hashed = [
        s if counts[s] == 1 else f"{s}_{hashlib.sha1(k.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
        for s, k in zip(stems, keys)
    ]
    taken: set[str] = set()
    out = []
    for s in hashed:
        name, n = s, 2
        while name in taken:
            name, n = f"{s}_{n}", n + 1
        taken.add(name)
        out.append(name)
    return out


def file_images(inputs: list[Path], max_images: int | None, size: int) -> CamImages:
    """The image files among `inputs` (folders walked), the first `max_images` of them, decoded at `size`."""
    files, skipped = collect_image_files(inputs)
    if max_images is not None:
        files = files[:max_images]
    if not files:
        first = f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise CxrError(f"none of the {len(inputs)} input(s) holds an X-ray image{first}")

    # Decoded by the engine's loader workers a batch at a time (memory stays flat for any number
    # of files); a file that cannot be read is listed in `skipped` and left out of its batch.
    return CamImages(
        ids=[p.name for p in files],
        stems=unique_stems([stem(p.name) for p in files], [str(p) for p in files]),
        size=size,
        dataset=FileDataset(files, size),
        skipped=skipped,
        keys=file_keys(files),
        what=f"{len(files)} image file(s)",
    )


def cache_images(data: PreparedData, lineage: Lineage, split: str) -> CamImages:
    """The rows of `split` of a cache (a fold's run: its own held-out fold), with their truths."""
    rows, scored = scored_rows(lineage, data, split)
    ids = data.index["id"].astype(str).to_numpy()

    def truth(position: int, label: str) -> float:
        if label not in data.labels:
            return float("nan")
        return float(data.index[label].iloc[rows[position]])

    return CamImages(
        ids=list(ids[rows]),
        stems=unique_stems([stem(i) for i in ids[rows]], [str(i) for i in ids[rows]]),
        size=data.size,
        dataset=CacheDataset(data, rows),
        truth=truth,
        keys=content_keys(data, rows),
        what=f"the {scored} of {data.root}",
    )
