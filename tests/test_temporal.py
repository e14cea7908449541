"""Temporal windows and the temporal-consistency metric (tPSNR) for multi-frame denoising."""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

from denoise.core.metrics import temporal_psnr
from denoise.core.temporal import temporal_windows


def _clip(frames: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((frames, size, size, 3), dtype=np.float32)


@pytest.mark.parametrize(("frames", "radius"), [(40, 2), (3, 2), (5, 2), (7, 3), (9, 0)])
def test_windows_match_slicing_the_reflect_padded_clip_by_hand(frames: int, radius: int) -> None:
    clip = _clip(frames)
    padded = np.pad(clip, [(radius, radius), (0, 0), (0, 0), (0, 0)], mode="reflect")
    windows = list(temporal_windows(iter(clip), radius))
    assert len(windows) == frames
    for centre, window in enumerate(windows):
        np.testing.assert_array_equal(window, padded[centre : centre + 2 * radius + 1])


def test_a_model_applied_window_by_window_matches_applying_each_window_by_hand() -> None:
    clip = _clip(60, seed=1)
    weights = np.linspace(0.1, 0.3, 5, dtype=np.float32)  # a fixed 5-frame filter

    def model(window: np.ndarray) -> np.ndarray:
        return np.tensordot(weights, window, axes=1)

    streamed = np.stack([model(window) for window in temporal_windows(iter(clip), 2)])
    padded = np.pad(clip, [(2, 2), (0, 0), (0, 0), (0, 0)], mode="reflect")
    by_hand = np.stack([model(padded[t : t + 5]) for t in range(len(clip))])
    np.testing.assert_allclose(streamed, by_hand, rtol=0, atol=0)


def _frames(count: int, size: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(0)
    for _ in range(count):
        yield rng.random((size, size, 3), dtype=np.float32)


def _peak_bytes(count: int) -> int:
    tracemalloc.start()
    try:
        for window in temporal_windows(_frames(count, 64), 2):
            del window
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_window_not_the_clip_length() -> None:
    frame = 64 * 64 * 3 * 4
    short, long = _peak_bytes(20), _peak_bytes(400)
    # A 5-frame window and its stacked copy: about 10 frames, whatever the length.
    assert long < 16 * frame, long / frame
    assert long < 1.25 * short + frame, (short / frame, long / frame)


def test_a_clip_shorter_than_the_window_or_with_mixed_sizes_is_refused() -> None:
    with pytest.raises(ValueError, match="a clip of 2 frames is shorter than the window of 5"):
        list(temporal_windows(iter(_clip(2)), 2))
    mixed = [*_clip(4), np.zeros((9, 8, 3), dtype=np.float32)]
    with pytest.raises(ValueError, match="differ in size"):
        list(temporal_windows(iter(mixed), 1))


def test_temporal_error_is_zero_for_a_perfect_denoiser_and_grows_with_flicker() -> None:
    clean = _clip(10)
    assert temporal_psnr(clean, clean) == math.inf
    # A constant offset is a steady error: no flicker beyond float32 round-off.
    assert temporal_psnr(clean, clean + 0.05) > 120
    rng = np.random.default_rng(3)
    scores = [
        temporal_psnr(clean, clean + rng.normal(0, sigma, clean.shape))
        for sigma in (0.01, 0.03, 0.1)
    ]
    assert scores[0] > scores[1] > scores[2]
    # Independent per-frame error of deviation s: e_t has variance 2 s^2.
    assert scores[1] == pytest.approx(10 * math.log10(1 / (2 * 0.03**2)), abs=0.1)


def test_temporal_psnr_refuses_single_frames_and_mismatched_clips() -> None:
    with pytest.raises(ValueError, match="2 frames or more"):
        temporal_psnr(_clip(1), _clip(1))
    with pytest.raises(ValueError, match="shapes differ"):
        temporal_psnr(_clip(3), _clip(4))
