"""Clips for temporal models: runs of consecutive decoded frames inside one split's block.

The extract stage labels every decoded frame of a video (stride 1) with the same time blocks
as its sampled frames (data.extract.assign_splits, over the sampled frames' time span), picks
clip starts here, and writes each clip as uint8 (length, S, S, 3) under
<paths.frames>/clips/, listed in clips.parquet. A clip lies wholly inside one block: it never
holds a gap frame nor a frame of another split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from denoise.data.video import Frame

CLIPS_DIR = "clips"
CLIPS_MANIFEST = "clips.parquet"


def clip_starts(labels: np.ndarray, length: int, count: int, split: str) -> list[int]:
    """Up to count first-frame positions of runs of `length` frames all labelled split,
    evenly spaced over the possible starts (first and last included)."""
    inside = np.asarray(labels == split, dtype=np.int64)
    if count <= 0 or len(inside) < length:
        return []
    # A start is possible where the next `length` labels are all the split's.
    runs = np.convolve(inside, np.ones(length, dtype=np.int64), mode="valid")
    possible = np.flatnonzero(runs == length)
    if len(possible) <= count:
        return [int(start) for start in possible]
    chosen = np.linspace(0, len(possible) - 1, count).round().astype(int)
    return [int(start) for start in possible[np.unique(chosen)]]


def collect_clips(
    frames: Iterable[Frame], starts: dict[int, str], length: int
) -> Iterator[tuple[str, list[Frame]]]:
    """Read the decoded frames once, to the end, and yield (split, frames) for each clip that
    starts at a frame index of starts ({index: split}) and has all its length frames, in the
    order they end. Holds only the frames of clips still being read."""
    open_clips: list[tuple[str, list[Frame]]] = []
    for frame in frames:
        if frame.index in starts:
            open_clips.append((starts[frame.index], []))
        for _, clip in open_clips:
            clip.append(frame)
        for finished in [entry for entry in open_clips if len(entry[1]) == length]:
            open_clips.remove(finished)
            yield finished
