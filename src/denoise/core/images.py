"""Image helpers shared by training (per-epoch samples) and evaluation."""

from __future__ import annotations

import numpy as np


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """Float (H, W, 3) images left to right, clipped to [0, 1], with white gutters: uint8
    (H, n * W + 4 * (n - 1), 3) RGB."""
    gutter = np.ones((images[0].shape[0], 4, 3), np.float32)
    parts = [part for image in images for part in (np.clip(image, 0, 1), gutter)][:-1]
    return np.round(np.concatenate(parts, axis=1) * 255.0).astype(np.uint8)


def triptych(
    noisy: np.ndarray,
    denoised: np.ndarray,
    clean: np.ndarray,
    labels: tuple[str, str, str] | None = None,
) -> np.ndarray:
    """noisy | denoised | clean side by side with white gutters: uint8 (H, 3W + 8, 3) RGB, or
    with labels (such as "noisy 20.17 dB", "nlm 29.96 dB", "clean") in a white band above
    each image: uint8 (H + LABEL_HEIGHT, 3W + 8, 3)."""
    images = side_by_side(noisy, denoised, clean)
    if labels is None:
        return images
    return np.concatenate([label_band(labels, noisy.shape[1], 4), images], axis=0)


LABEL_HEIGHT = 18  # pixels of the band labels are written in


def label_band(labels: tuple[str, ...], width: int, gutter: int) -> np.ndarray:
    """A white band with each label written in black over its image's column: uint8
    (LABEL_HEIGHT, n * width + gutter * (n - 1), 3). Text too long for a column is cut."""
    import cv2

    band = np.full((LABEL_HEIGHT, len(labels) * (width + gutter) - gutter, 3), 255, np.uint8)
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    for position, label in enumerate(labels):
        text = label
        while text and cv2.getTextSize(text, font, scale, thickness)[0][0] > width - 4:
            text = text[:-1]
        origin = (position * (width + gutter) + 2, LABEL_HEIGHT - 5)
        cv2.putText(band, text, origin, font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return band


def clip_strip(*clips: np.ndarray) -> np.ndarray:
    """The clips' frames side by side (noisy | denoised | clean, or more columns), a row per
    frame top to bottom with white gutters: uint8 (T * (H + 4) - 4, n * W + 4 * (n - 1), 3)
    RGB. clips: float (T, H, W, 3) each."""
    rows = [side_by_side(*frames) for frames in zip(*clips, strict=True)]
    gutter = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gutter)][:-1], axis=0)
