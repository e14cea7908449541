"""Noise-level estimation from a noisy image alone: Donoho's median absolute deviation.

The one definition (`donoho_sigma`) serves NumPy and Keras alike: `xp` is the array module
(`numpy`, or `keras.ops` in models/ffdnet.py's NoiseLevelMap), so the evaluation's classical
methods, extract's per-source estimate and FFDNet's noise-level map read the same estimator.

Donoho & Johnstone (1994): the finest Haar diagonal coefficient of each 2x2 block,
HH = (x00 - x01 - x10 + x11) / 2, has std sigma under white Gaussian noise of std sigma, and
smooth image content barely reaches it; median(|HH|) / 0.6745 is a robust estimate of sigma.
On 8-bit pixels the estimate moves in steps of about 0.74 (0-255 scale).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

MAD_TO_SIGMA = 0.6745  # median |N(0, 1)|
# A model's trained noise range [low, high] (0-255), or null: the key in models/<name>.json
# and in its logged model's metadata.
NOISE_RANGE = "noise_range"


def donoho_sigma(x00: Any, x01: Any, x10: Any, x11: Any, xp: Any = np) -> Any:
    """Per image, median(|HH|) / 0.6745 over every 2x2 block and channel, on the scale of the
    inputs: x00..x11 are the four pixels of each block, arrays (N, h, w, C) of one module xp."""
    diagonal = (x00 - x01 - x10) + x11
    flat = xp.reshape(xp.abs(diagonal) * 0.5, (xp.shape(x00)[0], -1))
    return xp.median(flat, axis=1) / MAD_TO_SIGMA


def _blocks(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four pixels of each 2x2 block of float (N, H, W, C) images (an odd edge dropped)."""
    height, width = images.shape[1] // 2 * 2, images.shape[2] // 2 * 2
    even = images[:, :height, :width]
    return even[:, 0::2, 0::2], even[:, 0::2, 1::2], even[:, 1::2, 0::2], even[:, 1::2, 1::2]


def estimate_sigma(images: np.ndarray) -> np.ndarray:
    """Donoho's estimate of each image's noise std-dev on the 0-255 scale.

    images: float (N, H, W, C) in [0, 1] (or one (H, W, C) image: a 0-d result), H, W >= 2.
    """
    single = images.ndim == 3
    stack = images[None] if single else images
    sigma = donoho_sigma(*_blocks(stack.astype(np.float64))) * 255.0
    return sigma[0] if single else sigma


@dataclasses.dataclass(frozen=True)
class NoiseLevel:
    """One source's noise level, from its frames."""

    sigma: float  # median over its measurable frames of estimate_sigma (0-255); NaN: none
    frames: int  # frames measured
    measurable: int  # frames not flat nor mostly saturated (the others give no estimate)
    curve_intensity: list[float]  # bin centres of block mean intensity, [0, 1]
    curve_sigma: list[float]  # Donoho's estimate within each bin (0-255); NaN: too few blocks


def measurable(frame: np.ndarray, max_saturated: float) -> bool:
    """Whether Donoho's estimate means something on this uint8 or [0, 1] frame: not flat (all
    pixels equal), and at most a share max_saturated of its values at 0 or at full scale (the
    clipped noise there reads as none)."""
    image = frame.astype(np.float64) / (255.0 if frame.dtype == np.uint8 else 1.0)
    if np.ptp(image) == 0:
        return False
    return bool(np.mean((image <= 0.0) | (image >= 1.0)) <= max_saturated)


def measure_noise_level(
    frames: list[np.ndarray], bins: int, min_blocks: int, max_saturated: float
) -> NoiseLevel:
    """A source's noise level from uint8 (H, W, 3) RGB frames at native scale: the median of
    the measurable frames' estimates, and the noise-level curve (std against intensity) over
    their blocks, in `bins` equal bins of the block's mean intensity (a bin with fewer than
    min_blocks coefficients gets NaN). Flat for signal-independent noise; it rises with
    intensity for shot noise, before a tone curve bends it."""
    usable = [frame for frame in frames if measurable(frame, max_saturated)]
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres = [float(value) for value in (edges[:-1] + edges[1:]) / 2]
    if not usable:
        return NoiseLevel(float("nan"), len(frames), 0, centres, [float("nan")] * bins)
    sigmas = [float(estimate_sigma(frame.astype(np.float64) / 255.0)) for frame in usable]
    coefficients, intensities = [], []
    for frame in usable:
        x00, x01, x10, x11 = _blocks(frame[None].astype(np.float64) / 255.0)
        coefficients.append(np.abs((x00 - x01 - x10) + x11).ravel() * 0.5)
        intensities.append(((x00 + x01 + x10 + x11) / 4).ravel())
    coefficient, intensity = np.concatenate(coefficients), np.concatenate(intensities)
    which = np.clip(np.digitize(intensity, edges) - 1, 0, bins - 1)
    curve = []
    for index in range(bins):
        inside = coefficient[which == index]
        enough = inside.size >= min_blocks
        curve.append(float(np.median(inside) / MAD_TO_SIGMA * 255.0) if enough else float("nan"))
    return NoiseLevel(float(np.median(sigmas)), len(frames), len(usable), centres, curve)


def trained_noise_range(noise: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """The noise levels (0-255, as Donoho's estimate reads them) a model trained on, from its
    training noise (TrainNoise as a mapping): sigma for gaussian, [sigma_min, sigma_max] for
    gaussian_blind; None for other kinds, whose level varies with intensity, and for none."""
    if noise is None:
        return None
    if noise.get("kind") == "gaussian":
        return float(noise["sigma"]), float(noise["sigma"])
    if noise.get("kind") == "gaussian_blind":
        return float(noise["sigma_min"]), float(noise["sigma_max"])
    return None


def sources_noise_range(sigmas: Iterable[float]) -> tuple[float, float] | None:
    """The range of the noise levels (0-255) of the noisy sources a model learnt from as they
    are; None when none has an estimate."""
    known = [float(sigma) for sigma in sigmas if np.isfinite(sigma)]
    return (min(known), max(known)) if known else None
