"""Image helpers shared by training (per-epoch samples) and evaluation."""

from __future__ import annotations

import numpy as np


def triptych(noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """noisy | denoised | clean side by side with white gutters: uint8 (H, 3W + 8, 3) RGB."""
    gutter = np.ones((clean.shape[0], 4, 3), np.float32)
    row = np.concatenate([np.clip(noisy, 0, 1), gutter, denoised, gutter, clean], axis=1)
    return np.round(row * 255.0).astype(np.uint8)
