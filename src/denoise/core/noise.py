"""Noise models: pure functions of float32 (N, H, W, C) RGB in [0, 1]; sigma on the 0-255 scale."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import cv2
import numpy as np

from denoise.core.errors import ConfigError

SAVED_SUFFIX = "-saved"


def add_gaussian_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Return clean + N(0, sigma/255), unclipped. sigma: std-dev on the 0-255 scale."""
    if sigma < 0:
        raise ConfigError(f"gaussian sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return clean.astype(np.float32, copy=True)
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return (clean + noise).astype(np.float32)


def as_saved(noisy: np.ndarray) -> np.ndarray:
    """What a noisy image looks like once written to disk: clipped to [0, 1] and rounded to the
    256 levels of 8 bits. float32, same shape."""
    return (np.round(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def add_poisson_noise(clean: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: photon counts ~ Poisson(clean * peak), scaled back by 1 / peak."""
    if peak <= 0:
        raise ConfigError(f"poisson peak must be > 0, got {peak}")
    return (rng.poisson(np.clip(clean, 0.0, None) * peak) / peak).astype(np.float32)


def add_speckle_noise(clean: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise: clean * (1 + n), n ~ N(0, variance)."""
    if variance < 0:
        raise ConfigError(f"speckle variance must be >= 0, got {variance}")
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(np.sqrt(variance))
    return (clean * (1.0 + noise)).astype(np.float32)


def add_salt_pepper_noise(clean: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Set a share `amount` of pixel locations (all channels) to 0 or 1 with equal odds."""
    if not 0.0 <= amount <= 1.0:
        raise ConfigError(f"salt_pepper amount must be in [0, 1], got {amount}")
    noisy = clean.astype(np.float32, copy=True)
    hit = rng.random(clean.shape[:-1]) < amount
    salt = rng.random(clean.shape[:-1]) < 0.5
    noisy[hit & salt] = 1.0
    noisy[hit & ~salt] = 0.0
    return noisy


def channel_gains(rgb_gain: float, red_gain: float, blue_gain: float) -> np.ndarray:
    """The per-channel gains of a camera's processing: brightening times white balance."""
    return np.array([rgb_gain * red_gain, rgb_gain, rgb_gain * blue_gain], np.float32)


def unprocess(srgb: np.ndarray, gains: Sequence[float], gamma: float) -> np.ndarray:
    """sRGB float32 (..., 3) in [0, 1] to the linear light the sensor saw (Brooks et al. 2019,
    without the colour matrix and mosaic): inverse smoothstep tone curve, gamma expansion,
    inverse gains."""
    tone = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * np.clip(srgb, 0.0, 1.0)) / 3.0)
    return (np.maximum(tone, 1e-8) ** gamma / np.asarray(gains, np.float32)).astype(np.float32)


def process(linear: np.ndarray, gains: Sequence[float], gamma: float) -> np.ndarray:
    """unprocess's inverse: gains (clipped to [0, 1], as a sensor saturates), gamma compression,
    smoothstep tone curve. float32 (..., 3) in [0, 1]."""
    lifted = np.clip(linear * np.asarray(gains, np.float32), 0.0, 1.0)
    tone = np.maximum(lifted, 1e-8) ** (1.0 / gamma)
    return (3.0 * tone**2 - 2.0 * tone**3).astype(np.float32)


def add_camera_noise(
    clean: np.ndarray,
    shot: float,
    read: float,
    gains: Sequence[float],
    gamma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Camera noise: unprocess, then in linear light x the Poisson-Gaussian noise of variance
    shot * x + read (add_poisson_noise at peak 1 / shot, plus N(0, read)), then process again.

    clean: float32 (N, H, W, 3) RGB in [0, 1]; shot, read: variances on the [0, 1] linear
    scale (Brooks et al.'s lambda_shot, lambda_read). The result is in [0, 1], as a camera's.
    """
    if shot <= 0 or read < 0:
        raise ConfigError(f"camera shot must be > 0 and read >= 0, got {shot} and {read}")
    linear = unprocess(clean, gains, gamma)
    counted = add_poisson_noise(linear, 1.0 / shot, rng)
    read_noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(np.sqrt(read))
    return process(counted + read_noise, gains, gamma)


def compress_jpeg(noisy: np.ndarray, quality: int) -> np.ndarray:
    """Each image clipped, rounded to 8 bits and JPEG-coded through OpenCV at `quality`
    (cv2.imencode, 4:2:0 chroma as OpenCV's default), then decoded: float32 (..., H, W, 3),
    the shape of noisy (images, or clips of frames)."""
    if not 1 <= quality <= 100:
        raise ConfigError(f"jpeg quality must be in [1, 100], got {quality}")
    decoded = []
    for image in noisy.reshape(-1, *noisy.shape[-3:]):
        pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        ok, coded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError(f"OpenCV could not JPEG-code a {pixels.shape} image")
        decoded_bgr = cv2.imdecode(coded, cv2.IMREAD_COLOR)
        if decoded_bgr is None:
            raise ValueError(f"OpenCV could not decode its own JPEG of a {pixels.shape} image")
        back = cv2.cvtColor(decoded_bgr, cv2.COLOR_BGR2RGB)
        decoded.append(back.astype(np.float32) / 255.0)
    return np.stack(decoded).reshape(noisy.shape) if decoded else noisy.astype(np.float32)


def apply_noise(clean: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    """Add one evaluation noise model: `level` is sigma, peak, variance or amount by `kind`."""
    functions = {
        "gaussian": add_gaussian_noise,
        "poisson": add_poisson_noise,
        "speckle": add_speckle_noise,
        "salt_pepper": add_salt_pepper_noise,
    }
    if kind not in functions:
        raise ConfigError(f"unknown noise kind {kind!r} (known: {', '.join(functions)})")
    return functions[kind](clean, level, rng)


def level_name(kind: str, level: float, saved: bool = False) -> str:
    """File-name form of a noise level: gaussian-25, poisson-30, speckle-0.04; the as-saved
    (clipped, 8-bit) twin of a level gets a -saved suffix: gaussian-25-saved."""
    return f"{kind}-{level:g}{SAVED_SUFFIX if saved else ''}"


def set_rng(seed: int, *names: str) -> np.random.Generator:
    """An rng fixed by the seed and names, so each evaluation set's noise is reproducible."""
    keys = [zlib.crc32(name.encode()) for name in names]
    return np.random.default_rng([seed, *keys])


def empirical_sigma(noisy: np.ndarray, clean: np.ndarray) -> float:
    """Standard deviation of (noisy - clean) on the 0-255 scale."""
    return float(np.std(noisy.astype(np.float64) - clean) * 255.0)
