"""Image helpers shared by training (per-epoch samples) and evaluation."""

from __future__ import annotations

import numpy as np


def triptych(noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """noisy | denoised | clean side by side with white gutters: uint8 (H, 3W + 8, 3) RGB."""
    gutter = np.ones((clean.shape[0], 4, 3), np.float32)
    row = np.concatenate([np.clip(noisy, 0, 1), gutter, denoised, gutter, clean], axis=1)
    return np.round(row * 255.0).astype(np.uint8)


def clip_strip(noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """One triptych per frame of a clip, top to bottom with white gutters: uint8
    (T * (H + 4) - 4, 3W + 8, 3) RGB. noisy, denoised, clean: float (T, H, W, 3)."""
    rows = [triptych(*frames) for frames in zip(noisy, denoised, clean, strict=True)]
    gutter = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gutter)][:-1], axis=0)
