"""The settings of one near-duplicate search, in one object handed whole through its steps.

Every step reads the fields it needs from `SearchOptions`: the fingerprint neighbours
(`max_distance`, `neighbours`, `index`), the window-descriptor neighbours (`neighbours`,
`min_similarity`, `index`) and the confirmation (`min_score`, `batch`). The defaults are those
`prepare`, `prepare combine`, `prepare dedupe` and `evaluate --external` search with; a command
changes only `max_distance` (`--max-distance`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .align import DEFAULT_MIN_SCORE
from .hashing import DEFAULT_MAX_DISTANCE
from .index import IndexSettings

DEFAULT_NEIGHBOURS = 2  # per image, the most similar images (by any window) that become candidates ...
DEFAULT_MIN_SIMILARITY = 0.8  # ... when their descriptors are at least this similar (cosine)


@dataclass(frozen=True)
class SearchOptions:
    """max_distance: fingerprint bits (of 256) a hash candidate may differ by; neighbours: per
    image, the closest fingerprints and the most similar whole images (by any window) that become
    candidates; min_similarity: the cosine a descriptor neighbour needs; min_score: the aligned
    correlation a candidate needs to be confirmed; batch: candidate pairs confirmed together;
    index: when and how the neighbours of a large set come from the inverted-file index."""

    max_distance: int = DEFAULT_MAX_DISTANCE
    neighbours: int = DEFAULT_NEIGHBOURS
    min_similarity: float = DEFAULT_MIN_SIMILARITY
    min_score: float = DEFAULT_MIN_SCORE
    batch: int = 64
    index: IndexSettings = field(default_factory=IndexSettings)
