"""Neighbor2Neighbor's random neighbour sub-sampler (Huang et al. 2021), in NumPy.

Every 2x2 cell of a noisy image gives one pixel to each of two half-size sub-images: two
neighbouring pixels of the cell (sharing a side), drawn at random, in a random order. The
sub-images see the same scene a pixel apart with independent noise, so one is a Noise2Noise
target for the other.
"""

from __future__ import annotations

import numpy as np

from denoise.core.errors import DataError

# The cell's pixels in row-major order (0 1 / 2 3) and the ordered pairs that share a side.
NEIGHBOUR_PAIRS = np.array([[0, 1], [0, 2], [1, 3], [2, 3], [1, 0], [2, 0], [3, 1], [3, 2]])


def neighbour_masks(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Two masks that pick each sub-image's pixel in every 2x2 cell: float32 (H, W, 2) of 0
    and 1, with exactly one 1 per cell in each channel, the two at side-sharing positions.

    height, width: even sides of the image to sub-sample.
    """
    if height % 2 or width % 2:
        raise DataError(f"Neighbor2Neighbor needs even sides, got {height}x{width}")
    cells = (height // 2, width // 2)
    pairs = NEIGHBOUR_PAIRS[rng.integers(len(NEIGHBOUR_PAIRS), size=cells)]  # (h, w, 2)
    chosen = np.arange(4)[None, None, :, None] == pairs[:, :, None, :]  # (h, w, 4, 2)
    cell_grid = chosen.reshape(*cells, 2, 2, 2).transpose(0, 2, 1, 3, 4)
    return cell_grid.reshape(height, width, 2).astype(np.float32)


def subsample(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The half-size sub-image of the pixels `mask` picks, one per 2x2 cell.

    image: float32 (H, W, C). mask: (H, W), one channel of neighbour_masks. Returns float32
    (H / 2, W / 2, C).
    """
    height, width, channels = image.shape
    picked = image * mask[..., None]
    cells = picked.reshape(height // 2, 2, width // 2, 2, channels)
    return cells.sum(axis=(1, 3)).astype(np.float32)
