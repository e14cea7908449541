"""Windows of consecutive frames for temporal (multi-frame) denoisers, over a stream.

A temporal model denoises frame t from frames t-k..t+k. At the ends the window is padded by
reflection, as numpy's mode="reflect": frame -i is frame i and frame T-1+i is frame T-1-i.
temporal_windows reads the clip as it goes and holds 2k+1 frames at most, so memory is bounded
by the window, not by the length of the video.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np


def temporal_windows(frames: Iterable[np.ndarray], radius: int) -> Iterator[np.ndarray]:
    """For each frame of the clip, in order, the (2 * radius + 1, ...) stack of the frames
    centred on it, the ends reflected. Raises ValueError for a clip of radius frames or fewer
    (a reflection needs radius + 1)."""
    if radius < 0:
        raise ValueError(f"the window radius must be >= 0, got {radius}")
    stream = iter(frames)
    head = []
    for frame in stream:
        head.append(frame)
        if len(head) == radius + 1:
            break
    if len(head) < radius + 1:
        raise ValueError(
            f"a clip of {len(head)} frames is shorter than the window of {2 * radius + 1} "
            f"needs: at least {radius + 1} frames"
        )
    shapes = {np.shape(frame) for frame in head}
    # Positions -radius..radius: frames radius..1 reflected, then 0..radius.
    window: deque[np.ndarray] = deque(head[radius:0:-1] + head, maxlen=2 * radius + 1)
    yield np.stack(window)
    for frame in stream:
        shapes.add(np.shape(frame))
        if len(shapes) > 1:
            raise ValueError(f"the clip's frames differ in size: {sorted(shapes)}")
        window.append(frame)
        yield np.stack(window)
    # The last radius centres: frames T-2, T-3, ... come back by reflection; the window holds
    # them (the frame at position T-1-j sits at index 2 * radius - j).
    last = list(window)
    for offset in range(1, radius + 1):
        window.append(last[2 * radius - offset])
        yield np.stack(window)


# The value of every pixel of a frame a training window holds by reflection (clean frames lie
# in [0, 1]): training.noise gives it the noisy frame it mirrors, as at inference.
REFLECTED_FRAME = -1.0


def reflected(centre: int, radius: int, length: int) -> list[int]:
    """Positions of the frames of the window of radius around centre in a clip of length
    frames, the ends reflected as temporal_windows does (-i is i, length-1+i is length-1-i)."""
    last = length - 1
    return [abs(last - abs(last - spot)) for spot in range(centre - radius, centre + radius + 1)]


def as_channels(window: np.ndarray) -> np.ndarray:
    """A window (T, H, W, C) as one image (H, W, T * C), its frames stacked on the channel axis
    oldest first: a temporal model's input."""
    height, width = window.shape[1:3]
    return np.moveaxis(window, 0, 2).reshape(height, width, -1)


def channel_windows(frames: Iterable[np.ndarray], window: int) -> Iterator[np.ndarray]:
    """A temporal model's inputs for every frame of a clip, in order: the window of `window`
    frames (odd) around it, the ends reflected, stacked on the channel axis (as_channels).
    Holds one window at a time; raises ValueError as temporal_windows does."""
    for frames_around in temporal_windows(frames, window // 2):
        yield as_channels(frames_around)
