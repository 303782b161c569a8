"""Near-duplicate radiographs: the perceptual hash, the candidate search and its confirmation.

Public X-ray collections hold the same radiograph more than once: under two patient ids, as a
re-encoded JPEG, at another size, re-windowed, cropped a little differently. A byte hash misses
all of these. The search works in two steps, so that it never compares all pairs of pixels:

1. Candidates, cheaply: each image's closest perceptual hashes (`hashing`) and the whole images
   most similar to one of its crop-robust windows (`descriptors`, `neighbours`); past 20,000
   images both come from an inverted-file index (`index`) instead of every pair.
2. Confirmation on the pixels (`confirm`, with the alignment in `align`): a hash candidate whose
   pixels correlate as they are is a "hash" match; every other candidate is aligned and kept
   when the correlation of the aligned fine detail reaches the threshold.

`search.near_duplicates` runs both; `options.SearchOptions` carries every setting through them.
Users: data/dedup.py (inside `prepare`), data/combine.py (`prepare combine`, `prepare dedupe`)
and evaluate/external.py (`evaluate --external`). Measurements: docs/performance.md.
"""
