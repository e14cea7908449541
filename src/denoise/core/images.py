"""Image helpers shared by training (per-epoch samples) and evaluation."""

from __future__ import annotations

import numpy as np


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """Float (H, W, 3) images left to right, clipped to [0, 1], with white gutters: uint8
    (H, n * W + 4 * (n - 1), 3) RGB."""
    gutter = np.ones((images[0].shape[0], 4, 3), np.float32)
    parts = [part for image in images for part in (np.clip(image, 0, 1), gutter)][:-1]
    return np.round(np.concatenate(parts, axis=1) * 255.0).astype(np.uint8)


def triptych(noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """noisy | denoised | clean side by side with white gutters: uint8 (H, 3W + 8, 3) RGB."""
    return side_by_side(noisy, denoised, clean)


def clip_strip(*clips: np.ndarray) -> np.ndarray:
    """The clips' frames side by side (noisy | denoised | clean, or more columns), a row per
    frame top to bottom with white gutters: uint8 (T * (H + 4) - 4, n * W + 4 * (n - 1), 3)
    RGB. clips: float (T, H, W, 3) each."""
    rows = [side_by_side(*frames) for frames in zip(*clips, strict=True)]
    gutter = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gutter)][:-1], axis=0)
